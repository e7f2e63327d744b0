"""The mutation report (bench.mutation) counts each target's mutants, applies a judgement only while the mutated
line it names still matches, and scores killed / (mutants run - equivalent)."""

from __future__ import annotations

import json
from pathlib import Path

import bench.mutation as mutation
from bench.mutation import draw_sample, load_record, mutated_line, results, tally, wilson

MODULE = '''
def x_safe_child__mutmut_orig(a):
    return a + 1


def x_safe_child__mutmut_1(a):
    return a - 1


def x_safe_child__mutmut_2(a):
    return a + 2


def x_safe_child__mutmut_3(a):
    return a * 1
'''


def _mutants(tmp_path: Path, codes: dict[str, int | None]) -> Path:
    root = tmp_path / "mutants"
    (root / "ser_models").mkdir(parents=True)
    (root / "ser_models" / "names.py").write_text(MODULE)
    (root / "ser_models" / "names.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    return root


def test_a_mutants_line_is_read_from_mutmuts_copy(tmp_path):
    root = _mutants(tmp_path, {})
    assert mutated_line("ser_models.names.x_safe_child__mutmut_2", {}, root) == "- return a + 1 / + return a + 2"


def test_counts_score_and_judgements(tmp_path):
    name = "ser_models.names.x_safe_child__mutmut_{}".format
    root = _mutants(tmp_path, {name(1): 1, name(2): 0, name(3): 0, "ser_models.other.x_g__mutmut_1": 0})
    codes = results(root)
    assert codes[name(1)] == 1 and len(codes) == 4
    judged = {name(2): {"line": "- return a + 1 / + return a + 2", "why": "a test-only example"},
              name(3): {"line": "- return a + 1 / + return a * 2", "why": "written for an older numbering"}}
    t = tally(codes, judged, root)["names"]
    assert t.mutants == 3  # the module outside every target is not counted
    assert t.counts == {"killed": 1, "survived": 2}
    assert [n for n, _, _ in t.equivalent] == [name(2)]
    assert t.open == [(name(3), "- return a + 1 / + return a * 1")] and t.stale == [name(3)]
    assert t.score == 1 / 2  # killed / (mutants run - equivalent): the stale judgement does not count


def test_a_sampled_target_is_scored_on_its_sample_with_a_wilson_interval(tmp_path):
    name = "ser_models.names.x_safe_child__mutmut_{}".format
    root = _mutants(tmp_path, {name(1): 1, name(2): 0, name(3): None})
    t = tally(results(root), {}, root, samples={"names": [name(1), name(2)]})["names"]
    assert t.sampled_from == 3 and t.mutants == 2
    assert t.counts == {"killed": 1, "survived": 1}  # the unsampled, unrun mutant is not counted
    assert t.score == 0.5
    lo, hi = t.interval
    assert (round(lo, 4), round(hi, 4)) == (0.0945, 0.9055)  # Wilson, k=1, n=2
    whole = tally(results(root), {}, root)["names"]
    assert whole.sampled_from is None and whole.interval is None and whole.mutants == 3


def test_the_wilson_interval_stays_inside_zero_and_one_and_narrows_with_the_sample():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert 0.0 < wilson(10, 10)[0] < 1.0  # all killed is not a certainty
    lo, hi = wilson(90, 100)
    assert (round(lo, 3), round(hi, 3)) == (0.826, 0.945)
    assert hi - lo < wilson(9, 10)[1] - wilson(9, 10)[0]


def test_a_sample_is_reproducible_by_its_seed_and_never_larger_than_the_target():
    names = [f"m{i}" for i in range(50)]
    assert draw_sample(names, 10, 0) == draw_sample(list(reversed(names)), 10, 0)
    assert draw_sample(names, 10, 0) != draw_sample(names, 10, 1)
    assert len(set(draw_sample(names, 10, 0))) == 10
    assert draw_sample(names, 80, 0) == sorted(names)


def test_a_record_of_the_older_one_run_form_reads_as_one_full_run(tmp_path):
    path = tmp_path / "bench-run.json"
    path.write_text(json.dumps({"wall_s": 60.0, "targets": ["names"], "machine": "m"}))
    assert load_record(path) == {"runs": [{"wall_s": 60.0, "targets": ["names"], "machine": "m", "kind": "full"}],
                                 "samples": {}, "seeds": {}, "kill_checks": []}
    assert load_record(tmp_path / "none.json") == {"runs": [], "samples": {}, "seeds": {}, "kill_checks": []}


def test_a_run_of_some_targets_keeps_the_other_targets_in_the_report(tmp_path, monkeypatch):
    root = _mutants(tmp_path, {"ser_models.names.x_safe_child__mutmut_1": 1,
                               "ser_models.names.x_safe_child__mutmut_2": 0})
    (root / "ser_models" / "data").mkdir()
    (root / "ser_models" / "data" / "ledger.py").write_text(MODULE)
    (root / "ser_models" / "data" / "ledger.py.meta").write_text(json.dumps({"exit_code_by_key": {
        "ser_models.data.ledger.x_safe_child__mutmut_1": 1}}))
    for name, value in {"MUTANTS": root, "REPORT": tmp_path / "mutation.md", "RESULTS": tmp_path / "mutation.json",
                        "JUDGEMENTS": tmp_path / "none.toml"}.items():
        monkeypatch.setattr(mutation, name, value)
    assert mutation.main(["--report-only", "--targets", "names"]) == 0
    report = (tmp_path / "mutation.md").read_text()
    assert "| names | 2 |" in report and "| ledger | 1 |" in report
    assert set(json.loads((tmp_path / "mutation.json").read_text())) == {"names", "ledger"}


def test_kills_checked_outside_mutmut_are_reported_with_an_interval_and_the_ones_not_repeated():
    lines = mutation._kill_check_lines([{"name": "a", "confirmed": True}] * 19 + [{"name": "m.x_f__mutmut_3",
                                                                                   "confirmed": False}])
    text = "\n".join(lines)
    assert "19 of 20 failed again (95 % [76, 99], 95 % Wilson)" in text
    assert "- not repeated: `m.x_f__mutmut_3`" in text
    assert mutation._kill_check_lines([]) == []
