"""The mutation report (bench.mutation) counts each target's mutants, applies a judgement only while the mutated
line it names still matches, and scores killed / (mutants run - equivalent)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.mutation import mutated_line, results, tally

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
