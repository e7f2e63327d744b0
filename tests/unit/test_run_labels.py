"""What a replay on a run's labels refuses before any work: budgets it cannot answer with, a labelled pool whose
labels or sets changed (other metadata may change), and evaluation sets that share a unit with training where the
run kept them apart (sets the run drew clip by clip may share recordings, as the run allowed)."""

from __future__ import annotations

import pandas as pd
import pytest

import ser_models.data.prepare as prepare
from ser_models.active.loop_config import ActiveConfig
from ser_models.exceptions import ConfigError, PoolError
from ser_models.runs.run_labels import (
    RunLabels,
    _changed_targets,
    _drawn_disjoint_by,
    check_replay_budgets,
    labelled_pool_from_run,
)


def test_budgets_within_half_the_labels_pass_and_the_others_name_the_override():
    check_replay_budgets(ActiveConfig(budget_labels=[25, 50, 100]), 200)
    with pytest.raises(ConfigError, match=r"gathered 200 .* largest budget is 150: set e\.g\. "
                                          r"active\.budget_labels=\[25,50,100\]"):
        check_replay_budgets(ActiveConfig(budget_labels=[50, 150]), 200)
    with pytest.raises(ConfigError, match=r"largest budget is 200"):  # fractions of the labels: up to all of them
        check_replay_budgets(ActiveConfig(budget_fractions=[0.5, 1.0]), 200)
    with pytest.raises(ConfigError, match=r"set active\.budget_hours=\[\] and active\.budget_labels=\[25,50,100\]"):
        check_replay_budgets(ActiveConfig(budget_hours=[0.1, 0.2]), 200)
    with pytest.raises(ConfigError, match="gathered 12 training labels; replaying strategies needs a few dozen"):
        check_replay_budgets(ActiveConfig(budget_labels=[2, 4]), 12)


def test_suggested_replay_budgets_never_all_sit_below_autos_minimum():
    # 31 labels: the old suggestion [3,7,15] lies wholly under the 40 labels auto needs to leave random
    with pytest.raises(ConfigError, match=r"auto_min_labelled=40 .* Gather at least 82") as refused:
        check_replay_budgets(ActiveConfig(budget_labels=[5, 30]), 31, min_labelled=40)
    assert "[3,7,15]" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"set e\.g\. active\.budget_labels=\[40,50\]"):
        check_replay_budgets(ActiveConfig(budget_labels=[50, 150]), 100, min_labelled=40)


def test_only_labels_and_sets_count_as_a_change():
    old = pd.DataFrame({"utt_id": ["a", "b", "007"], "label": ["sad", "happy", None], "arousal": [0.5, 0.1, 0.7],
                        "split": ["train", "train", "test"], "speaker": ["s1", "s2", "s3"]})
    moved = old.assign(speaker=["s9", "s2", "s3"], path=["x", "y", "z"])  # metadata only
    assert _changed_targets(old, moved) == []
    relabelled = old.assign(label=["sad", "angry", None])
    assert _changed_targets(old, relabelled) == ["b"]
    resplit = old.assign(split=["train", "dev", "test"])
    assert _changed_targets(old, resplit) == ["b"]
    assert _changed_targets(old, old.assign(arousal=[0.5, 0.1, 0.8])) == ["007"]
    assert _changed_targets(old, old.iloc[:2]) == ["007"]  # a clip gone
    # As read back from the CSV the pool's manifest was written to: the same labels.
    import io

    back = pd.read_csv(io.StringIO(old.to_csv(index=False)), dtype={"utt_id": str}, keep_default_na=False,
                       na_values=[""])
    assert _changed_targets(back, old) == []


class _Decoding(Exception):
    """The build started: the labelled pool passed its checks."""


def _run_labels(tmp_path, disjoint_by: str | None, evaluation: str = "run") -> RunLabels:
    """A run's labels whose test clip ``c`` is a segment of recording ``ep1``, which also has training clips
    (as a draw with ``disjoint_by=none`` may give), and whose dev clip is from a group that also trains."""
    manifest = pd.DataFrame({
        "utt_id": ["a", "b", "c", "d", "e"], "label": ["sad", "happy", "sad", "angry", "neutral"],
        "split": ["train", "train", "test", "dev", "train"],
        "path": [str(tmp_path / f"{r}.wav") for r in ("ep1", "ep1", "ep1", "ep2", "ep3")],
        "recording": ["ep1", "ep1", "ep1", "ep2", "ep3"], "channel": pd.array([pd.NA] * 5, dtype="Int64"),
        "start": [0.0, 1.0, 2.0, 0.0, 0.0], "end": [1.0, 2.0, 3.0, 1.0, 1.0],
        "speaker": ["s1", "s1", "s2", "s3", "s4"], "group": ["show", "show", "show", "news", "news"]})
    return RunLabels(str(tmp_path / "run"), str(tmp_path / "pool"), manifest, evaluation, [], {}, disjoint_by)


def _prepare(labels: RunLabels, out, monkeypatch):
    def decoding(*args, **kwargs):
        raise _Decoding

    monkeypatch.setattr(prepare, "_build", decoding)
    return labelled_pool_from_run(labels, str(out), log=lambda _: None)


def test_a_run_that_drew_its_sets_clip_by_clip_gets_a_pool_that_shares_recordings_as_it_did(tmp_path, monkeypatch):
    labels = _run_labels(tmp_path, "none")
    assert labels.split_keys() == ()
    with pytest.raises(_Decoding):  # past the leak check: the test clip's recording also trains
        _prepare(labels, tmp_path / "ev", monkeypatch)


@pytest.mark.parametrize(("disjoint_by", "evaluation", "refused"), [
    ("recording", "run", r"recording 'ep1' in test, train"),  # the run kept recordings apart: so does its pool
    ("group", "run", r"group 'news' in dev, train"),
    (None, "pool", r"recording 'ep1' in test, train"),  # the pool's splits: the pool's own rule
    (None, "run", r"recording 'ep1' in test, train"),  # a draw that left no record: the strict rule
])
def test_a_run_that_kept_its_sets_apart_gets_a_pool_that_refuses_a_shared_unit(tmp_path, monkeypatch, disjoint_by,
                                                                              evaluation, refused):
    with pytest.raises(PoolError, match=refused):
        _prepare(_run_labels(tmp_path, disjoint_by, evaluation), tmp_path / "ev", monkeypatch)


def test_the_pool_checks_the_runs_unit_only(tmp_path, monkeypatch):
    """Sets drawn by whole speakers: no speaker is in two splits, and a recording the test speaker shares with a
    training speaker is what the run accepted."""
    speakers = _run_labels(tmp_path, "speaker")
    assert speakers.split_keys() == ("speaker",)
    with pytest.raises(_Decoding):
        _prepare(speakers, tmp_path / "ev", monkeypatch)
    shared = speakers.manifest.assign(speaker=["s1", "s1", "s1", "s3", "s4"])  # the test clip's speaker trains
    with pytest.raises(PoolError, match=r"speaker 's1' in test, train"):
        _prepare(RunLabels(speakers.run_dir, speakers.pool_dir, shared, "run", [], {}, "speaker"), tmp_path / "ev2",
                 monkeypatch)


def test_the_unit_is_read_from_the_runs_draw(tmp_path):
    from ser_models.io import storage_path, write_json_atomic

    run = storage_path(tmp_path / "run")
    assert _drawn_disjoint_by(run) is None  # no draw recorded
    write_json_atomic(run / "rounds" / "evaluation" / "evaluation.json", {"disjoint_by": "none", "stratify": "none"})
    assert _drawn_disjoint_by(run) == "none"
