"""A labelling rerun without Ray (``runtime.ray``): a team filling ``to_label.csv`` reruns ``ser-models after``,
and on a small pool with its features cached the rerun imports the labels, trains and scores in one process,
never importing Ray, and writes the same request, scores and metrics as the same rerun on Ray.

The state is real: the session's demo pool, a frozen encoder's feature cache built by a first run on Ray, and
request files filled as a person would. The rerun without Ray runs in a fresh process (``ser-models after``, as
users type it), where ``sys.modules`` tells whether anything imported Ray; the Ray rerun runs in this process on
the session's Ray.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ser_models.config import load_config
from ser_models.data import Pool
from ser_models.exceptions import ConfigError
from ser_models.runs import ray_choice
from ser_models.runs.after import AfterJobConfig, run_after

pytestmark = pytest.mark.usefixtures("ray_local")

REPO = Path(__file__).resolve().parents[2]
#: The recipe with a tiny encoder: a frozen encoder's cached features, a linear head fitted in process, margin
#: picks (they follow the scores, so the same picks need the same scores), people filling request files.
RECIPE = ["model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.featurizer_layer=1",
          "active.initial=random", "active.strategy.name=margin", "active.budget_labels=[6,10,14]",
          "active.oracle=file"]


def _argv(pool_dir, out: Path, cache: Path, *extra: str) -> list[str]:
    return [f"pool_dir={pool_dir}", f"output_dir={out}", f"active.feature_cache_dir={cache}", *RECIPE, *extra]


def _fill(csv: Path, truth: dict[str, str]) -> None:
    """Type the true label into every row of a request file, as a person would."""
    request = pd.read_csv(csv, dtype=str, keep_default_na=False)
    request["label"] = request["utt_id"].map(truth)
    request.to_csv(csv, index=False)


@pytest.fixture(scope="module")
def waiting_run(demo_pool, tmp_path_factory):
    """A run on Ray up to a filled request of round 0: the cache is built, the next rerun imports the labels, trains
    round 1 and writes round 1's request. Returns ``(pool dir, run folder, cache folder)``; copy the run to use it."""
    root = tmp_path_factory.mktemp("label_rerun")
    out, cache = root / "run", root / "feature_cache"
    truth = dict(pd.read_csv(demo_pool.manifest, dtype=str)[["utt_id", "label"]].values)
    argv = _argv(demo_pool.pool_dir, out, cache, "runtime.ray=on")
    assert run_after(load_config(AfterJobConfig, None, argv), verbose=False) is None  # asks for the initial set
    _fill(out / "rounds" / "initial" / "to_label.csv", truth)
    assert run_after(load_config(AfterJobConfig, None, argv), verbose=False) is None  # round 0 asks for its picks
    _fill(out / "rounds" / "round=000" / "to_label.csv", truth)
    return demo_pool.pool_dir, out, cache


def _rerun_in_a_fresh_process(argv: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    """``ser-models after ARGV`` in a new Python process; returns it and which heavy modules it imported."""
    script = ("import json, sys\nfrom ser_models.cli.command import main\n"
              f"sys.argv = ['ser-models', 'after', *{argv!r}]\n"
              "try:\n    main()\nfinally:\n"
              "    print('IMPORTED ' + json.dumps({m: m in sys.modules for m in ('ray', 'ray.data', 'ray.train')}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("IMPORTED ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(lines[-1][len("IMPORTED "):])


def _without_times(value):
    """A metrics record without its wall times (the one thing two runs of the same work may differ in)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "seconds" and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_a_small_pool_reruns_without_ray_and_writes_what_the_ray_rerun_writes(waiting_run, tmp_path):
    pool_dir, state, cache = waiting_run
    local, on_ray = tmp_path / "local", tmp_path / "on_ray"
    shutil.copytree(state, local)
    shutil.copytree(state, on_ray)

    done, imported = _rerun_in_a_fresh_process(_argv(pool_dir, local, cache))  # runtime.ray=auto, the default
    assert "runtime: this process, no Ray" in done.stdout
    assert imported == {"ray": False, "ray.data": False, "ray.train": False}, done.stdout[-2000:]
    assert run_after(load_config(AfterJobConfig, None, _argv(pool_dir, on_ray, cache, "runtime.ray=on")),
                     verbose=False) is None

    request = Path("rounds") / "round=001" / "to_label.csv"
    assert (local / request).exists()
    # the same request, byte for byte: the same clips in the same order, with the same guesses and scores
    assert (local / request).read_bytes() == (on_ray / request).read_bytes()
    for name in ("selection.parquet", "scores.parquet"):
        path = Path("rounds") / "round=001" / name
        assert pq.read_table(local / path).equals(pq.read_table(on_ray / path)), name
    # the same round metrics: round 0 finished on its imported labels, round 1 trained on them
    for path in (Path("metrics.jsonl"), Path("rounds") / "round=000" / "metrics.json",
                 Path("rounds") / "round=001" / "train" / "metrics.json"):
        records = [[json.loads(x) for x in (run / path).read_text().splitlines()] if path.suffix == ".jsonl"
                   else json.loads((run / path).read_text()) for run in (local, on_ray)]
        assert _without_times(records[0]) == _without_times(records[1]), path
    assert len((local / "metrics.jsonl").read_text().splitlines()) == 1  # round 0; round 1 waits for labels


def _cfg(pool_dir, out, cache, *extra) -> AfterJobConfig:
    return load_config(AfterJobConfig, None, _argv(pool_dir, out, cache, *extra))


def test_auto_keeps_ray_on_a_large_pool_and_on_a_cluster(waiting_run, tmp_path, monkeypatch):
    pool_dir, state, cache = waiting_run
    pool = Pool.open(pool_dir)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache), pool) == []  # small, cached: this process
    train = pool.summary["splits"]["train"]["clips"]
    monkeypatch.setattr(ray_choice, "LOCAL_MAX_TRAIN_CLIPS", train - 1)  # the same pool, one clip above the limit
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache), pool) == [
        f"{train:,} training clips, above the {train - 1:,} that runtime.ray=auto runs in this process"]
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache, "runtime.ray=off"), pool) == []  # off: only the work
    monkeypatch.setattr(ray_choice, "LOCAL_MAX_TRAIN_CLIPS", train)
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:10001")
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache), pool) == ["RAY_ADDRESS names a Ray cluster to run on"]


def test_auto_keeps_ray_for_work_only_ray_does(waiting_run, tmp_path, monkeypatch):
    pool_dir, state, cache = waiting_run
    pool = Pool.open(pool_dir)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    needs = ray_choice.ray_needs(_cfg(pool_dir, state, tmp_path / "empty_cache"), pool)
    assert len(needs) == 1 and needs[0].startswith(f"{pool.summary['kept']} clips of the pool are not in the feature "
                                                   f"cache {tmp_path / 'empty_cache'}")
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache, "scaling.backend=ray_train"), pool) == [
        "scaling.backend=ray_train fits on Ray Train workers"]
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache, "tapt_enabled=true"), pool)[0].startswith("TAPT")
    assert ray_choice.ray_needs(_cfg(pool_dir, state, cache, "scaling.stream_above_clips=10"), pool) == [
        "up to 14 training clips a round, above scaling.stream_above_clips=10: the fit streams them from Ray Data"]


def test_off_refuses_a_run_that_must_encode_and_leaves_no_trace(waiting_run, tmp_path):
    pool_dir, _, _ = waiting_run
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"runtime\.ray=off, but this run needs Ray: \d+ clips of the pool are not "
                                          r"in the feature cache .* yet: encoding them runs on Ray Data\. Set "
                                          r"runtime\.ray=auto \(or on\)"):
        run_after(_cfg(pool_dir, out, tmp_path / "new_cache", "runtime.ray=off"), verbose=False)
    assert not out.exists()


def test_runtime_ray_takes_yaml_on_and_off():
    assert ray_choice.RuntimeConfig(ray="False").ray == "off" and ray_choice.RuntimeConfig(ray="True").ray == "on"
    with pytest.raises(ConfigError, match="runtime.ray must be one of auto, on, off, got 'sometimes'"):
        ray_choice.RuntimeConfig(ray="sometimes")
