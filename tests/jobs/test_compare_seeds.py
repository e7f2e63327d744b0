"""``jobs.compare`` over several seeds per strategy: paired statistics and 95 % bands.

The run folders hold what ``jobs.after`` / ``jobs.finetune`` write (``metrics.jsonl`` or ``metrics.json``,
and ``run.json`` with the seed), with known UAs, so the printed numbers can be checked by hand.
"""

from __future__ import annotations

import json

import pytest

from ser_models.runs.compare import expand_names, main

BUDGETS = [(0, 50, 0.05), (1, 100, 0.10), (2, 200, 0.20)]


def _after_run(path, seed: int, uas: list[float]) -> str:
    path.mkdir(parents=True)
    rounds = [{"round": r, "labelled": n, "fraction": f, "selected": 0, "seconds": {"train": 1.0},
               "dev": {"ua": u, "wa": u}, "test": {"ua": u, "wa": u}} for (r, n, f), u in zip(BUDGETS, uas)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    (path / "run.json").write_text(json.dumps({"format": 1, "job": "jobs.after", "config": {"active.seed": seed}}))
    return str(path)


def test_expand_names():
    assert expand_names("AFTER*3,random*2,full") == ["AFTER"] * 3 + ["random"] * 2 + ["full"]


def test_compare_prints_paired_statistics_and_draws_bands(tmp_path, capsys):
    runs, names = [], []
    for seed in range(4):  # margin is +3 points at 100 and 200 labels under every seed; seeds differ a lot
        base = 0.1 * seed
        runs.append(_after_run(tmp_path / f"random_s{seed}", seed, [0.30 + base, 0.40 + base, 0.50 + base]))
        runs.append(_after_run(tmp_path / f"margin_s{seed}", seed, [0.30 + base, 0.43 + base, 0.53 + base]))
        names += ["random", "margin"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "metrics.json").write_text(json.dumps({"train_clips": 1000, "dev": {"ua": 0.8}, "test": {"ua": 0.8}}))
    out = tmp_path / "compare.png"
    main([*runs, str(full), "--names", ",".join(names + ["full"]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"
    # random's mean at 200 labels: 0.50 + mean(0, .1, .2, .3) = 0.65; margin is +0.030 with no spread
    assert "margin                  200 labels    4 seeds  0.680 [" in printed
    assert "+0.030 [+0.030, +0.030]  p=0.000  better" in printed
    # at 50 labels margin is random under every seed: no comparison is printed, not a difference of 0
    fifty = [line for line in printed.splitlines() if line.startswith("  margin                   50 labels")][0]
    assert "same as random under every seed: no comparison" in fifty and "p=" not in fifty
    # AUBC over 50..200 labels: margin gains 0.03 on the last 150 of 150 clips, area-weighted: +0.025
    aubc = [line for line in printed.splitlines() if line.startswith("  margin") and "labels" not in line][0]
    assert "+0.025" in aubc and "better" in aubc
    # random's 0.65 (seed mean) is reached per seed at 100 + 0.07 / 0.10 * 100 = 170 labels: 15 % saved
    # 95 % of all labels (0.76) is reached by seed 3 alone: random at 160 labels, margin at 130
    assert "margin               170 labels (4/4 seeds, saving +15 %)  |  130 labels (1/4 seeds)" in printed
    assert "random               (the baseline)  |  160 labels (1/4 seeds)" in printed


def test_compare_of_single_runs_keeps_the_plain_table(tmp_path, capsys):
    a = _after_run(tmp_path / "a", 0, [0.3, 0.4, 0.5])
    b = _after_run(tmp_path / "b", 0, [0.3, 0.45, 0.5])
    main([a, b, "--out", str(tmp_path / "c.png")])
    printed = capsys.readouterr().out
    assert "AUBC" not in printed and "0.45" in printed


@pytest.mark.parametrize("names", ["x*3", "x,y,z"])
def test_compare_refuses_a_wrong_number_of_names(tmp_path, names):
    a = _after_run(tmp_path / "a", 0, [0.3, 0.4, 0.5])
    with pytest.raises(SystemExit):
        main([a, "--names", names, "--out", str(tmp_path / "c.png")])
