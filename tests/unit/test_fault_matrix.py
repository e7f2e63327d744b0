"""The fault matrix of ``docs/failure-model.md`` ("What a kill, an error or a second writer leaves"): each writer
of the platform, interrupted by an exception in the middle of its write, SIGKILLed in the middle of it, or met by
a second writer, on a local disk and on a real S3 endpoint (moto's server). No Ray: each test calls the writer's
own library function on a folder of each store.

An interrupted write is made by wrapping :func:`ser_models.io._write_atomic` (every atomic write goes through it)
for one target file: the real writer's bytes are produced, half of them reach the store, then an exception is
raised (or the process SIGKILLs itself). What the store then shows is exactly what a failure there leaves.
"""

from __future__ import annotations

import io as pyio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ser_models import io
from ser_models.exceptions import FeatureCacheMissError, LockHeldError

ROOT = Path(__file__).resolve().parents[2]




def _temporaries(root: str) -> list[str]:
    return [f for f in io.list_files(root) if f.endswith(".tmp")]


def _interrupt(monkeypatch, target: str, error: type[BaseException] = KeyboardInterrupt) -> None:
    """Make the next atomic write of a file named ``target`` stop half-way with ``error``."""
    real = io._write_atomic

    def interrupted(uri, write):
        if not str(uri).endswith("/" + target):
            return real(uri, write)
        buf = pyio.BytesIO()
        write(buf)
        data = buf.getvalue()

        def half(fh):
            fh.write(data[: len(data) // 2])
            raise error(f"interrupted half-way through {uri}")

        monkeypatch.setattr(io, "_write_atomic", real)  # once: the rerun writes normally
        return real(uri, half)

    monkeypatch.setattr(io, "_write_atomic", interrupted)


# Put first in a killed subprocess: the atomic write of ``TARGET`` writes half its bytes, then SIGKILLs the process
# (no finally block, no clean-up: a machine that loses power mid-upload).
KILL_PRELUDE = """
import io as _pyio, os, signal, sys
sys.path.insert(0, {root!r})
from ser_models import io
_real = io._write_atomic
def _killing(uri, write):
    if not str(uri).endswith("/" + {target!r}):
        return _real(uri, write)
    buf = _pyio.BytesIO()
    write(buf)
    data = buf.getvalue()
    def half(fh):
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(uri, half)
io._write_atomic = _killing
"""


def _run_killed(target: str, body: str) -> None:
    """Run ``body`` in a fresh Python process that SIGKILLs itself half-way through writing ``target``."""
    code = KILL_PRELUDE.format(root=str(ROOT), target=target) + body
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


# A second writer: holds ``open_output(folder, kind)`` (the job's first call on its output), says so, and waits
# until the test kills it.
HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from ser_models.ownership import open_output
lock = open_output({folder!r}, {kind!r})
{then}
print("held", flush=True)
time.sleep(300)
"""


class _Holder:
    """A live second process holding an output folder's lock (``with _Holder(folder, kind) as pid:``)."""

    def __init__(self, folder: str, kind: str, then: str = ""):
        self.folder, self.kind, self.then = folder, kind, then

    def __enter__(self) -> int:
        code = HOLDER.format(root=str(ROOT), folder=str(self.folder), kind=self.kind, then=self.then)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "held", self.proc.stderr.read()
        return self.proc.pid

    def __exit__(self, *exc) -> None:
        self.proc.kill()  # SIGKILL: its lock stays behind, and the next writer on this host takes it over
        self.proc.wait()


# --- ledger ---------------------------------------------------------------------------------------------------

def _ledger_ids(path: str) -> set[str]:
    from ser_models.data.ledger import LabelLedger

    return LabelLedger(path).ids(None)


def test_ledger_an_exception_mid_append_keeps_every_committed_row(store, monkeypatch):
    from ser_models.data.ledger import LabelLedger

    path = f"{store}/run/labels/ledger.parquet"
    ledger = LabelLedger(path)
    ledger.append(0, ["a0", "a1"], ["happy", "sad"], oracle="o")
    _interrupt(monkeypatch, "ledger.parquet")
    with pytest.raises(KeyboardInterrupt):
        ledger.append(1, ["b0"], ["angry"], oracle="o")
    assert io.parquet_problem(path) is None and _ledger_ids(path) == {"a0", "a1"}
    assert not _temporaries(store)
    assert LabelLedger(path).append(1, ["b0"], ["angry"], oracle="o") == 1  # the rerun's append goes through
    assert _ledger_ids(path) == {"a0", "a1", "b0"}


def test_ledger_a_sigkill_mid_append_keeps_every_committed_row(store):
    from ser_models.data.ledger import LabelLedger

    path = f"{store}/run/labels/ledger.parquet"
    LabelLedger(path).append(0, ["a0", "a1"], ["happy", "sad"], oracle="o")
    _run_killed("ledger.parquet", f"from ser_models.data.ledger import LabelLedger\n"
                                  f"LabelLedger({path!r}).append(1, ['b0'], ['angry'], oracle='o')\n")
    assert io.parquet_problem(path) is None and _ledger_ids(path) == {"a0", "a1"}
    visible = [f for f in io.list_files(store) if not f.rsplit("/", 1)[-1].startswith(".")]
    assert visible == ["run/labels/ledger.parquet"]  # at most a hidden temporary beside it, and the dead lock
    # The killed appender's lock is left behind; this host sees its pid is gone and takes it over.
    assert LabelLedger(path).append(1, ["b0"], ["angry"], oracle="o") == 1
    assert _ledger_ids(path) == {"a0", "a1", "b0"}


# --- checkpoints (a folder replaced by a swap) -------------------------------------------------------------------

def _version(folder: str, v: int) -> None:
    io.write_bytes_atomic(f"{folder}/model.safetensors", f"weights {v}".encode() * 1000)
    io.write_json_atomic(f"{folder}/model.json", {"version": v})  # the completion marker, last


def _read_version(folder: str) -> int:
    version = io.read_json(f"{folder}/model.json")["version"]
    assert io.read_bytes(f"{folder}/model.safetensors") == f"weights {version}".encode() * 1000  # a matching pair
    return version


def test_checkpoint_an_exception_mid_replacement_keeps_the_old_checkpoint(store, tmp_path, monkeypatch):
    ckpt, new = f"{store}/run/checkpoint", str(tmp_path / "downloaded")  # Ray Train's local download
    _version(ckpt, 1)
    _version(new, 2)
    _interrupt(monkeypatch, "model.safetensors", OSError)  # while the new version is being staged
    with pytest.raises(OSError, match="interrupted"):
        io.replace_dir(new, ckpt, "model.json")
    assert _read_version(io.complete_dir(ckpt, "model.json")) == 1 and _read_version(ckpt) == 1
    assert not _temporaries(store)
    io.replace_dir(new, ckpt, "model.json")  # the next writer finishes the swap it left
    assert _read_version(ckpt) == 2 and io.list_dir(f"{store}/run") == ["checkpoint"]


def test_checkpoint_a_sigkill_mid_replacement_keeps_the_old_checkpoint(store, tmp_path):
    ckpt, new = f"{store}/run/checkpoint", str(tmp_path / "downloaded")
    _version(ckpt, 1)
    _version(new, 2)
    _run_killed("model.safetensors", f"io.replace_dir({new!r}, {ckpt!r}, 'model.json')\n")
    assert _read_version(io.complete_dir(ckpt, "model.json")) == 1
    io.finish_dir_swap(ckpt, "model.json")  # what train_model / train_in_process do first
    assert _read_version(ckpt) == 1 and io.list_dir(f"{store}/run") == ["checkpoint"]
    io.replace_dir(new, ckpt, "model.json")
    assert _read_version(ckpt) == 2


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_first(store):
    """A run folder (``jobs.after``: its checkpoints, evaluation sets and ledger) has one writer: a second
    ``jobs.after`` on it stops at once, naming the first; once the first is gone, a rerun takes over."""
    from ser_models.runs.after import AFTER_RUN_LAYOUT, claim_run_folder

    run = f"{store}/run"
    with _Holder(run, "run") as pid:
        host = re.escape(socket.gethostname())
        with pytest.raises(LockHeldError, match=rf"run folder .*pid {pid}, started .*SER_LOCK_TAKE_OVER={host}:{pid}"):
            claim_run_folder(run, "jobs.after", AFTER_RUN_LAYOUT)
    lines = []
    from ser_models.ownership import open_output, recognise_run

    with open_output(run, "run", recognise=recognise_run("jobs.after", AFTER_RUN_LAYOUT), log=lines.append):
        pass
    assert any("taking over the stale lock" in line and f"pid {pid}" in line for line in lines)


def test_a_second_fine_tuning_of_one_folder_is_refused_naming_the_first(store):
    """``jobs.finetune`` locks its ``output_dir`` before it reads anything: a second one on the same folder stops
    at once, naming the first."""
    from jobs.finetune import main

    run = f"{store}/ft"
    with _Holder(run, "run") as pid:
        with pytest.raises(LockHeldError, match=rf"jobs.finetune output folder .*pid {pid}"):
            main([f"output_dir={run}", f"pool_dir={store}/no-pool", "model.encoder.source=tiny-wav2vec2"])


# --- evaluation sets -----------------------------------------------------------------------------------------

class _PoolClips:
    """The one pool method the draw reads (``metadata``), over a fixed frame of training clips."""

    def __init__(self):
        self.clips = pd.DataFrame([{"utt_id": f"g{g}r{r}c{c}", "duration": 2.0, "group": f"show{g}",
                                    "recording": f"g{g}r{r}", "speaker": f"g{g}r{r}s{c % 2}", "language": "en"}
                                   for g in range(6) for r in range(3) for c in range(4)])

    def metadata(self, columns, split, where=None):
        assert split == "train"
        return self.clips[[c for c in columns if c in self.clips.columns]].copy()


def _draw(folder: str) -> pd.DataFrame:
    from ser_models.planning.evaluation_sets import EvaluationConfig, evaluation_sets

    return evaluation_sets(_PoolClips(), io.storage_path(folder), EvaluationConfig(test_size=24, dev_size=12), seed=0,
                           log=lambda line: None)


def test_evaluation_sets_an_exception_mid_write_leaves_no_draw_and_the_rerun_draws_the_same(store, monkeypatch):
    folder = f"{store}/run/rounds/evaluation"
    _interrupt(monkeypatch, "selection.parquet")
    with pytest.raises(KeyboardInterrupt):
        _draw(folder)
    assert not io.exists(f"{folder}/selection.parquet") and not _temporaries(store)
    drawn = _draw(folder)
    assert len(drawn) == 36 and io.read_parquet(f"{folder}/selection.parquet").to_pandas().equals(drawn)


def test_evaluation_sets_a_sigkill_mid_write_leaves_no_draw_and_the_rerun_draws_the_same(store, tmp_path):
    folder = f"{store}/run/rounds/evaluation"
    _run_killed("selection.parquet", f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                                     f"from test_fault_matrix import _draw\n_draw({folder!r})\n")
    assert not io.exists(f"{folder}/selection.parquet")  # the draw counts as done only once this file is whole
    drawn = _draw(folder)
    assert drawn.equals(_draw(str(tmp_path / "uninterrupted")))  # the same draw as a run never killed


# --- segment frames and segments --------------------------------------------------------------------------------

def _frames(n: int = 3000):
    from ser_models.segment.streams import StreamFrames

    rng = np.random.default_rng(0)
    return [StreamFrames(channel=0, samples=n * 512, probs=rng.random(n, dtype=np.float32),
                         power=rng.random(n, dtype=np.float32), clipped=np.zeros(n, np.int32))]


def test_segment_frames_an_exception_mid_write_is_not_done(store, monkeypatch):
    from ser_models.segment.run import done_recordings, frames_path, write_frames

    frames = f"{store}/seg/frames"
    write_frames(frames_path(frames, "rec1"), _frames(), 16000, 1)
    _interrupt(monkeypatch, "rec2.parquet")
    with pytest.raises(KeyboardInterrupt):
        write_frames(frames_path(frames, "rec2"), _frames(), 16000, 1)
    assert done_recordings(frames) == {"rec1"} and not _temporaries(store)  # rec2 is segmented again
    write_frames(frames_path(frames, "rec2"), _frames(), 16000, 1)
    assert done_recordings(frames) == {"rec1", "rec2"}


def test_segment_frames_a_sigkill_mid_write_is_not_done(store):
    from ser_models.segment.run import done_recordings, frames_path, write_frames

    frames = f"{store}/seg/frames"
    write_frames(frames_path(frames, "rec1"), _frames(), 16000, 1)
    _run_killed("rec2.parquet", f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                                "from test_fault_matrix import _frames\n"
                                "from ser_models.segment.run import frames_path, write_frames\n"
                                f"write_frames(frames_path({frames!r}, 'rec2'), _frames(), 16000, 1)\n")
    assert done_recordings(frames) == {"rec1"}
    assert [f for f in io.list_dir(frames) if not f.startswith(".")] == ["rec1.parquet"]


def test_a_second_segmenter_of_one_output_is_refused_naming_the_first(store):
    from ser_models.segment.config import SegmentConfig
    from ser_models.segment.run import segment_archive

    recordings = f"{store}/recordings.csv"
    io.write_bytes_atomic(recordings, b"recording,path\nrec1,rec1.wav\n")
    out = f"{store}/seg"
    with _Holder(out, "segments") as pid:
        with pytest.raises(LockHeldError, match=rf"segment output .*pid {pid}"):
            segment_archive(SegmentConfig(recordings=recordings, output_dir=out), verbose=False)
    assert io.list_dir(out) == [".ser-lock.json", ".ser-output.json"]  # nothing of the second writer's


# --- feature cache -----------------------------------------------------------------------------------------------

class _Rows:
    """Pool rows in memory with the three dataset methods an in-process cache build calls (Ray Data's dataset
    in the jobs; here no Ray starts)."""

    def __init__(self, table: pa.Table):
        self.table = table

    def select_columns(self, columns):
        return _Rows(self.table.select([c for c in columns if c in self.table.column_names]))

    def iter_batches(self, batch_size=None, batch_format="numpy"):
        step = batch_size or max(self.table.num_rows, 1)
        for a in range(0, self.table.num_rows, step):
            part = self.table.slice(a, step)
            yield part if batch_format == "pyarrow" else {c: part.column(c).to_numpy(zero_copy_only=False)
                                                         for c in part.column_names}

    def map_batches(self, fn, fn_kwargs=None, **_):
        return _Rows(fn(self.table, **(fn_kwargs or {})))


def _rows(ids) -> _Rows:
    return _Rows(pa.table({"utt_id": list(ids), "audio": [b"x"] * len(ids), "audio_format": ["pcm16"] * len(ids),
                           "num_samples": [16000] * len(ids)}))


class _Features:
    """An extractor: [L=1, D=2] float32 features per clip; ``fail_after`` batches in, it fails (``kill``: the
    process SIGKILLs itself, else KeyboardInterrupt), after the earlier batches were written as shards."""

    def __init__(self, fail_after: int | None = None, kill: bool = False):
        self.fail_after, self.kill, self.calls = fail_after, kill, 0

    def __call__(self, batch):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise KeyboardInterrupt("interrupted mid-build")
        ids = [str(u) for u in batch["utt_id"]]
        return {"utt_id": np.array(ids, object),
                "features": np.array([np.full((1, 2), len(u), np.float32).tobytes() for u in ids], object)}


def _build(cache, ids, **extractor):
    from ser_models.scoring.scorer import ScorerConfig

    cache.build_with(_rows(ids), _Features, extractor, 1, ScorerConfig(batch_size=2), verbose=False,
                     in_process=True)


def _cache(store: str):
    from ser_models.scoring.feature_cache import FeatureCache

    return FeatureCache(f"{store}/cache", "ef" * 32)


def _held(cache) -> set[str]:
    return set(cache.clip_ids().to_pylist())


def test_feature_cache_an_exception_mid_extension_keeps_the_ready_cache(store):
    cache = _cache(store)
    _build(cache, ["a", "b"])
    with pytest.raises(KeyboardInterrupt):
        _build(cache, ["a", "b", "c", "d", "e", "f"], fail_after=1)  # one shard of the extension written
    assert _held(cache) == {"a", "b"} and io.read_json(f"{cache.dir}/meta.json")["clips"] == 2
    assert [n for n in io.list_dir(cache.dir) if n.startswith("features-")] == io.read_json(
        f"{cache.dir}/meta.json")["shards"]  # the failed shard folder is gone
    with pytest.raises(FeatureCacheMissError, match="'c'"):  # a reader never skips the clips it lacks
        cache.dataset(ids=["a", "c"])
    _build(cache, ["a", "b", "c", "d", "e", "f"])
    assert _held(cache) == set("abcdef") and cache.last_encoded == 4


def test_feature_cache_a_sigkill_mid_extension_keeps_the_ready_cache(store):
    cache = _cache(store)
    _build(cache, ["a", "b"])
    _run_killed("never", f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                         "from test_fault_matrix import _build, _cache\n"
                         f"_build(_cache({store!r}), list('abcdef'), fail_after=1, kill=True)\n")
    assert _held(cache) == {"a", "b"}
    listed = io.read_json(f"{cache.dir}/meta.json")["shards"]
    assert len([n for n in io.list_dir(cache.dir) if n.startswith("features-")]) == len(listed) + 1  # abandoned
    _build(cache, list("abcdef"))  # takes the dead writer's lock over and removes its recorded folder
    assert _held(cache) == set("abcdef") and cache.last_encoded == 4
    assert [n for n in io.list_dir(cache.dir) if n.startswith("features-")] == sorted(
        io.read_json(f"{cache.dir}/meta.json")["shards"])


def test_feature_cache_a_second_writer_waits_for_the_first_and_never_deletes_its_shards(store, monkeypatch):
    """The second writer waits (here 0.3 s instead of an hour), then is refused naming the first; it never
    touches the first writer's recorded shard folder. Once the first is gone, the folder is the next
    writer's to clean."""
    from ser_models.scoring import feature_cache as fc

    cache = _cache(store)
    live = f"{cache.dir}/features-live/part-000000.parquet"
    started = ("from ser_models import io\nfrom ser_models.ownership import record\n"
               f"record({str(cache.dir)!r}, 'feature_cache', ['features-live'])\n"
               f"io.write_bytes_atomic({live!r}, b'being written')")
    with _Holder(cache.dir, "feature_cache", then=started) as pid:
        monkeypatch.setattr(fc, "CACHE_LOCK_WAIT_S", 0.3)
        with pytest.raises(LockHeldError, match=f"pid {pid}"):
            _build(cache, ["a", "b"])
        assert io.read_bytes(live) == b"being written"
    _build(cache, ["a", "b"])
    assert _held(cache) == {"a", "b"} and not io.exists(f"{cache.dir}/features-live")


# --- the table in docs/failure-model.md --------------------------------------------------------------------------

MATRIX_HEADING = "## What a kill, an error or a second writer leaves"


def _matrix_rows() -> list[str]:
    """The table rows (``| writer | ...``) of the fault matrix section of ``docs/failure-model.md``."""
    doc = (ROOT / "docs" / "failure-model.md").read_text()
    assert MATRIX_HEADING in doc, f"docs/failure-model.md lost its section {MATRIX_HEADING!r}"
    section = doc.split(MATRIX_HEADING, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| writer")]


def _defined_tests(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name.startswith("test_")}


def test_the_fault_matrix_cites_only_tests_that_exist():
    """Each node id the matrix cites names a test function that exists; every writer has all three faults
    answered; and every fault test of this file is cited (the doc cannot drift from the tests either way)."""
    import re

    rows = _matrix_rows()
    writers = [row.split("|")[1].strip() for row in rows]
    assert len(rows) == 6, writers
    cited: set[str] = set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells), f"a cell of the fault matrix is empty: {row[:80]}"
        for fault in cells[1:4]:
            ids = re.findall(r"(tests/[\w/]+\.py)::(\w+)", fault)
            assert ids, f"{cells[0]}: a fault without a test: {fault[:80]}"
            for file, name in ids:
                assert (ROOT / file).is_file(), f"the fault matrix cites {file}, which does not exist"
                assert name in _defined_tests(ROOT / file), f"the fault matrix cites {file}::{name}, not defined there"
                if file == "tests/unit/test_fault_matrix.py":
                    cited.add(name)
    ours = {n for n in _defined_tests(Path(__file__)) if n != "test_the_fault_matrix_cites_only_tests_that_exist"}
    assert ours <= cited, f"fault tests the matrix does not cite: {sorted(ours - cited)}"
