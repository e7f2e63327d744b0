"""Helpers shared by the active-learning benchmarks (``bench.scoring``, ``bench.cache``,
``bench.label_efficiency``): machine description, load average, timing, the demo pool, markdown tables.

``bench.ingest`` and ``bench.selection`` keep their own machine-info code: their results files list
different library versions (soxr, faiss), and switching them to this module would change their outputs.
"""

from __future__ import annotations

import datetime as dt
import os
import platform as _platform  # stdlib (the repo's platform/ folder holds no Python)
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_WORKDIR = Path("/tmp/ser_bench")
#: Load average (1 min) above which the 2-core machine counts as busy in the results text.
BUSY_LOAD = 3.0


#: Locks of the scratch folders this process claimed (held until it exits).
_SCRATCH: list = []


def claim_workdir(path: str | os.PathLike, inputs: dict | None = None) -> Path:
    """A benchmark's ``--workdir``: new, empty, or marked as a benchmark's by an earlier run (what it holds is
    kept: pools and caches are reused). A folder no benchmark marked is refused and left as it is, and so is one
    that is, contains or lies inside one of the benchmark's ``inputs`` (the check every job makes).

    Args:
        path: the work folder.
        inputs: ``{option: path}`` of what the benchmark reads (``{"--pool-dir": ...}``).

    Raises:
        OutputOverlapError: the work folder overlaps an input; nothing is written or deleted.
        ForeignFolderError: the folder holds things no benchmark made.
        LockHeldError: another run of a benchmark uses it.
    """
    from ser_models.ownership import check_apart, open_output

    folder = Path(path).absolute()
    check_apart(folder, inputs or {}, key="--workdir")
    _SCRATCH.append(open_output(folder, "bench", what="benchmark work folder"))  # held until the process exits
    return folder


def fresh_workdir(path: str | os.PathLike, inputs: dict | None = None) -> Path:
    """A work folder the benchmark empties on each run: :func:`claim_workdir` (``inputs`` checked against it),
    then its contents deleted (:func:`ser_models.ownership.clear`: only inside a folder marked as a benchmark's;
    another output inside it, such as a pool, is kept unless the benchmark recorded it with :func:`scratch`)."""
    from ser_models.ownership import clear

    folder = claim_workdir(path, inputs)
    clear(folder, "bench")
    return folder


def scratch(path: str | os.PathLike) -> Path:
    """Make way for an output a job of the benchmark writes (and claims) afresh on each run: ``path``'s parent is
    claimed as a benchmark's folder (:func:`claim_workdir`), ``path`` is recorded there as the benchmark's own
    and deleted if an earlier run left it. Returns ``path``, which no longer exists.

    Raises:
        ForeignFolderError: the parent holds things no benchmark made.
        LockHeldError: another run of a benchmark uses the parent.
    """
    from ser_models.ownership import record, remove

    folder = Path(path).absolute()
    parent = claim_workdir(folder.parent)
    record(parent, "bench", [folder.name])
    remove(parent, "bench", folder.name, recorded_only=True)
    return folder


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or "unknown"


def ram_gib() -> float:
    """Total RAM in GiB from ``/proc/meminfo`` (-1 when unreadable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return -1.0


def machine_info() -> dict:
    """CPU, cores, RAM, Python and library versions, UTC date: what a reader needs to compare runs."""
    import numpy
    import ray
    import torch
    import transformers

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": ram_gib(),
            "python": _platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__,
            "torch_threads": torch.get_num_threads(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def loadavg() -> tuple[float, float, float]:
    """1 / 5 / 15-minute load average ((-1, -1, -1) where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (-1.0, -1.0, -1.0)


@dataclass
class LoadWindow:
    """Load average before and after a measurement (the machine is shared)."""

    before: tuple[float, float, float] = field(default_factory=loadavg)
    after: tuple[float, float, float] | None = None

    def close(self) -> LoadWindow:
        self.after = loadavg()
        return self

    @property
    def busy(self) -> bool:
        """True when the 1-minute load before the run exceeded :data:`BUSY_LOAD` (the load after includes
        the benchmark's own threads and Ray processes, so it does not decide)."""
        return self.before[0] > BUSY_LOAD

    def text(self) -> str:
        def fmt(x):
            return "/".join(f"{v:.1f}" for v in x)

        after = fmt(self.after) if self.after else "-"
        note = (f" -- **busy machine** (1-min load before > {BUSY_LOAD:g} on {os.cpu_count()} cores): absolute rates "
                "are pessimistic; ratios come from the same run and are less affected" if self.busy else "")
        return (f"Load average (1/5/15 min) before: {fmt(self.before)}, after: {after} (after includes this "
                f"benchmark's own load){note}.")


def machine_markdown(info: dict, load: LoadWindow) -> str:
    """Two markdown lines describing the machine and its load during the run."""
    return (f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM; Python {info['python']}, "
            f"torch {info['torch']}, ray {info['ray']}, transformers {info['transformers']}, "
            f"numpy {info['numpy']}; {info['date']}.\n{load.text()}")


@contextmanager
def timed(store: dict, key: str) -> Iterator[None]:
    """Add the wall time (s) of the ``with`` body to ``store[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0


def ensure_pool(pool_dir: str | Path, n: int = 720, seed: int = 0, workers: int = 2, style: str = "mixed",
                corpus_name: str = "synth") -> Path:
    """The demo pool at ``pool_dir``, built (corpus next to it, then ``jobs.prepare_pool``) when missing.

    Runs the two documented commands in subprocesses so the pool is exactly the one a user gets:
    ``jobs.make_demo_pool <parent>/corpus --n 720 [--style acted --corpus acted]`` and ``jobs.prepare_pool
    jobs/configs/prepare_pool_demo.yaml``.

    Returns:
        The pool folder (holding ``summary.json``).
    """
    from ser_models.data import Pool
    from ser_models.exceptions import PoolError

    pool_dir = Path(pool_dir).absolute()
    if (pool_dir / "summary.json").exists():
        try:
            Pool.open(pool_dir)
            return pool_dir
        except PoolError as exc:  # an older layout: prepare it again (the corpus is reused)
            print(f"rebuilding {pool_dir}: {exc}")
    corpus = pool_dir.parent / "corpus"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not (corpus / "manifest.csv").exists():
        subprocess.run([sys.executable, "-m", "jobs.make_demo_pool", str(corpus), "--n", str(n), "--seed",
                        str(seed), "--workers", str(workers), "--style", style, "--corpus", corpus_name],
                       cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, "-m", "jobs.prepare_pool", "jobs/configs/prepare_pool_demo.yaml",
                    f"manifest={corpus / 'manifest.csv'}", f"output_dir={pool_dir}"], cwd=REPO, env=env, check=True)
    return pool_dir


def encoder_overrides(name: str) -> list[str]:
    """Dotted overrides selecting the benchmark's encoder: ``smart-turn`` is the imported pretrained Whisper-tiny
    (fetched, imported and cached on first use; ``normalize_waveform=auto`` reads its preprocessing from its own
    files: none), anything else is passed as ``model.encoder.source``."""
    if name == "smart-turn":
        from ser_models.encoders.smart_turn import cached_encoder

        return [f"model.encoder.source={cached_encoder()}"]
    return [f"model.encoder.source={name}"]


def init_ray(num_cpus: int = 2) -> None:
    """A quiet local Ray instance with ``num_cpus`` CPUs (no dashboard, no Ray Data progress bars)."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    from ser_models.runtime import configure_ray_data

    configure_ray_data()  # what connect_ray does for every job
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def mean_sd(values: Sequence[float]) -> str:
    """``"mean +- sd"`` over seeds (sample standard deviation; 0 for one value), 3 decimals."""
    import statistics

    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def proc_status(key: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes (0 where there is none)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_in_fresh_process(module: str, case: dict, cwd: Path) -> dict:
    """``python -m module --case <json>`` in a fresh process (its own peak memory); returns the dict its last
    ``RESULT <json>`` line prints.

    Raises:
        SystemExit: the case failed, with the end of its output.
    """
    import json
    import subprocess
    import sys

    text = json.dumps(case)
    proc = subprocess.run([sys.executable, "-m", module, "--case", text], cwd=cwd, capture_output=True, text=True)
    found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not found:
        raise SystemExit(f"case {text} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(found[-1][7:])


def md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table (cells formatted with ``str``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_score_pass(parts, folder: str | Path, say: bool = False):
    """A committed scoring pass under ``folder`` (``attempt=bench/`` and its manifest) of ``parts``, an iterable
    of :class:`~ser_models.scoring.scorer.Scores` written one shard each, as ``score_to_shards`` writes them;
    ``say``: a line every 20 shards. Returns the :class:`~ser_models.scoring.score_shards.ScoreShards`."""
    from ser_models.io import write_json_atomic
    from ser_models.scoring.score_shards import MANIFEST, ScoreShards, write_shard

    files, rows, t0 = [], [], time.perf_counter()
    for i, s in enumerate(parts):
        batch = {"utt_id": s.ids, "probs": s.probs, "embedding": s.embedding}
        if s.mc_probs is not None:
            batch["mc_probs"] = s.mc_probs
        out = write_shard(batch, str(Path(folder) / "attempt=bench"), keep_pooled=False)
        files += [f"attempt=bench/{f}" for f in out["file"]]
        rows += out["rows"].tolist()
        if say and i % 20 == 0:
            print(f"  wrote {i + 1} shards, {time.perf_counter() - t0:.0f}s", flush=True)
    write_json_atomic(str(Path(folder) / MANIFEST), {"files": files, "rows": rows})
    return ScoreShards.open(str(folder))


def write_results(path: str | Path, text: str) -> Path:
    """Write a results markdown file atomically (creating its folder) and return its path; a folder at ``path``
    is refused (:func:`ser_models.ownership.claim_file`)."""
    from ser_models.io import write_bytes_atomic
    from ser_models.ownership import claim_file

    path = Path(path)
    claim_file(path, key="--out")
    write_bytes_atomic(path, (text.rstrip() + "\n").encode())
    return path
