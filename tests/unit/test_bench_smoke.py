"""Smoke runs of the benchmark building blocks (bench.scoring, bench.cache, bench.label_efficiency,
bench.common) on tiny inputs, without Ray, so that the scripts do not rot between benchmark runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import cache as bench_cache  # noqa: E402
from bench import common, scoring  # noqa: E402
from bench import label_efficiency as le  # noqa: E402


def test_batched_and_one_at_a_time_forward_agree(tmp_path):
    from ser_models.data.clips import ClipSet

    ckpt = scoring.make_checkpoint(tmp_path / "ckpt", "tiny-wav2vec2")
    assert (ckpt / "model.json").exists()
    rng = np.random.default_rng(0)
    lengths = [4000, 9000, 5600, 12000, 7000]  # samples at 16 kHz: batches need padding
    clips = ClipSet(ids=[f"c{i}" for i in range(5)], labels=np.full(5, -1),
                    audio=[(rng.standard_normal(n) * 3000).astype(np.int16) for n in lengths])
    batched = scoring.time_forward(ckpt, clips, batch_size=4)
    single = scoring.time_forward(ckpt, clips, batch_size=1)
    assert batched.clips == single.clips == 5 and batched.rate > 0 and single.rate > 0
    assert batched.probs.shape == (5, len(scoring.LABELS))
    np.testing.assert_allclose(batched.probs.sum(1), 1.0, atol=1e-5)
    # padding + attention mask must not change what a clip is scored as: the paths do the same work
    np.testing.assert_allclose(batched.probs, single.probs, atol=1e-4)


def _records():
    recs = []
    for seed, jitter in zip((0, 1, 2), (0.0, 0.01, -0.01)):
        for f in (0.05, 0.1):
            common = {"seed": seed, "fraction": f, "labelled": int(1000 * f), "round_s": 1.0, "run_s": 3.0}
            recs.append({"strategy": "random", "test_ua": 0.5 + (f > 0.06) * 0.05 + jitter, "dev_ua": 0.5, **common})
            recs.append({"strategy": "good", "test_ua": 0.5 + (f > 0.06) * 0.2 + jitter, "dev_ua": 0.6, **common})
            recs.append({"strategy": "noisy", "test_ua": 0.5 + 0.1 * (seed - 1), "dev_ua": 0.5, **common})
    return recs


def test_aggregate_flags_only_strategies_whose_paired_interval_is_above_zero(tmp_path):
    s = le.aggregate(_records()).set_index(["strategy", "fraction"])
    assert s.loc[("good", 0.1), "beats_random"] and s.loc[("good", 0.1), "diff"] == pytest.approx(0.15)
    assert s.loc[("good", 0.1), "p"] == 0.0  # the same gain under every seed
    assert not s.loc[("good", 0.05), "beats_random"]  # same start: no gain
    assert not s.loc[("noisy", 0.1), "beats_random"]  # mean below random, large spread
    assert not s.loc[("random", 0.1), "beats_random"]
    half = 4.3027 * 0.01 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(3)
    assert s.loc[("random", 0.05), "test_high"] - s.loc[("random", 0.05), "test_mean"] == pytest.approx(half, rel=1e-4)
    full = {"test_mean": 0.8, "values": [0.8, 0.79, 0.81], "dev_mean": 0.8, "round_s": 2.0, "run_s": 4.0}
    table = le.format_table(le.aggregate(_records()), full)
    assert "| good | 10% | 0.700 [0.675, 0.725] |" in table and "full data" in table
    assert "+0.150 [+0.150, +0.150] (p=0.000) | **yes**" in table
    png = le.plot(le.aggregate(_records()), full, tmp_path / "le.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size < 100_000
    text = le.efficiency_tables(_records(), {0: 0.6, 1: 0.6, 2: 0.6})
    assert "| good | 0.600 [0.575, 0.625] | +0.075 [" in text  # AUBC: (0.5 + 0.7) / 2, random's (0.5 + 0.55) / 2
    # random's final value (0.55 + the seed's jitter) is reached at 50 + 0.05 / 0.2 * 50 clips
    assert "| good | 63 (3/3 seeds) | +37 % | 67 (3/3 seeds) |" in text
    assert "| random | 100 (3/3 seeds) | +0 % | not reached |" in text
    csv = le.write_runs_csv(_records(), tmp_path / "runs.csv")
    runs = __import__("pandas").read_csv(csv)
    assert {"strategy", "seed", "round", "labelled", "fraction", "test_ua"} <= set(runs.columns)
    assert runs.groupby(["strategy", "seed"])["round"].apply(list).map(lambda r: r == [0, 1]).all()


def test_benchmark_configs_load_and_enable_the_cache(tmp_path):
    from ser_models.scoring.cache_keys import cache_supported

    cfg = bench_cache.job_config(tmp_path / "pool", tmp_path / "run", ["active.feature_cache='on'"])
    assert cache_supported(cfg.model) is None and cfg.active.feature_cache == "on"
    assert cfg.active.targets(500) == [25, 50, 75] and not cfg.tapt_enabled
    bald = bench_cache.job_config(tmp_path / "pool", tmp_path / "run", le.run_overrides("bald", 2, le.FRACTIONS))
    assert bald.active.scorer.mc_samples == 8 and bald.active.seed == bald.train.optim.seed == 2
    assert bald.scaling.backend == "in_process" and bald.active.budget_fractions == le.FRACTIONS
    assert bench_cache.job_config(tmp_path, tmp_path, le.run_overrides("kmeans", 0, [1.0])).active.targets(10) == [10]


def test_common_helpers(tmp_path):
    info = common.machine_info()
    assert {"cpu", "cores", "ram_gib", "torch", "ray", "transformers", "date"} <= set(info)
    load = common.LoadWindow(before=(9.0, 1.0, 1.0)).close()
    assert load.busy and "busy machine" in load.text()
    assert not common.LoadWindow(before=(0.5, 0.5, 0.5), after=(0.4, 0.4, 0.4)).busy
    assert "Machine:" in common.machine_markdown(info, load)
    assert common.md_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    store: dict = {}
    with common.timed(store, "x"):
        pass
    with common.timed(store, "x"):
        pass
    assert store["x"] >= 0
    out = common.write_results(tmp_path / "r" / "x.md", "hi\n\n")
    assert out.read_text() == "hi\n"



def test_scale_peak_sampler_splits_a_child_process_memory():
    """bench.scale's sampler sees a child process, attributes its heap to it, and the breakdown formats."""
    import subprocess

    from bench import scale

    child = subprocess.Popen([sys.executable, "-c",
                              "import sys, time; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]);"
                              " print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with scale.PeakPss(interval=0.05) as mem:
            pass
    finally:
        child.kill()
        child.wait()
    child_kinds = [k for k in mem.by_kind if not k.endswith((" anon", " shmem")) and k != "driver"]
    assert child_kinds and max(mem.by_kind[k + " anon"] for k in child_kinds) > 60 * 2**20
    assert mem.peak >= sum(mem.by_kind[k] for k in ("driver", *child_kinds)) - 2**20
    text = scale.breakdown_md([{"hours": 1.0, "cache_build_peak_mib_by_process": mem.breakdown()}])
    top = max((k for k in mem.by_kind if not k.endswith((" anon", " shmem"))), key=mem.by_kind.get)
    assert text.splitlines()[-1].startswith(f"- 1.0 h, cache_build: {top} {round(mem.by_kind[top] / 2**20)} / ")


def test_peft_bench_configs_are_valid_finetune_jobs_and_rows_show_the_spread(tmp_path):
    from bench import peft
    from ser_models.config import from_dict
    from ser_models.runs.finetune import FinetuneJobConfig

    for method in peft.METHODS:
        cfg = from_dict(FinetuneJobConfig, peft.run_config(tmp_path / "pool", tmp_path / method, method, 1, 2,
                                                           "tiny-wav2vec2"))
        assert cfg.train.optim.seed == 1 and cfg.train.optim.epochs == 2 and cfg.scaling.backend == "in_process"
        assert cfg.model.adapter.kind == peft.METHODS[method]["kind"]
    full = from_dict(FinetuneJobConfig, peft.run_config(tmp_path, tmp_path, "full", 0, 1, "tiny-wav2vec2"))
    assert full.train.optim.lr == pytest.approx(5e-5)
    assert full.model.dimensions == ["arousal", "valence", "dominance"] and full.train.select_metric == "ua_plus_ccc"
    ccc = {"test_ccc_arousal": 0.5, "test_ccc_valence": 0.1, "test_ccc_dominance": 0.3}
    runs = {"lora": [{"trainable": 10, "total": 1000, "dev_ua": 0.5, "test_ua": 0.4, "epoch_s": 2.0, **ccc},
                     {"trainable": 10, "total": 1000, "dev_ua": 0.7, "test_ua": 0.6, "epoch_s": 4.0, **ccc}]}
    (row,) = peft.summarise(runs)
    assert row == ["lora", "10", "1.00 %", "0.600 +- 0.141", "0.500 +- 0.141", "0.400 / 0.600", "0.500 +- 0.000",
                   "0.100 +- 0.000", "0.300 +- 0.000", "3.0"]


def test_adapt_bench_config_is_a_valid_adapt_job_and_rows_show_the_spread(tmp_path):
    from bench import adapt
    from ser_models.config import from_dict
    from ser_models.runs.adapt import AdaptJobConfig

    cfg = from_dict(AdaptJobConfig, adapt.job_config(tmp_path / "a", tmp_path / "n", tmp_path / "o", 3, 2,
                                                     "tiny-wav2vec2"))
    assert cfg.train.optim.seed == cfg.target_train.optim.seed == 3 and cfg.model.adapter.kind == "frozen"
    assert cfg.names == ["acted", "natural"] and cfg.model.dimensions == ["arousal", "valence", "dominance"]
    one = {m: {"acted": {"ua": 0.5, "ccc": 0.2}, "natural": {"ua": 0.3, "ccc": 0.1}} for m in adapt.MODELS}
    two = {m: {"acted": {"ua": 0.7, "ccc": 0.2}, "natural": {"ua": 0.5, "ccc": 0.1}} for m in adapt.MODELS}
    rows = adapt.summarise([one, two])
    assert rows[0] == ["acted only", "0.400 +- 0.141", "0.100 +- 0.000", "0.600 +- 0.141", "0.200 +- 0.000"]


def test_asha_replay_rates_over_orders_and_the_sweep_seed_reaches_every_trial():
    from bench import asha_replay, sweep
    from ser_models.tune.replay import TrialCurve

    def curve(tid, values):
        n = len(values)
        return TrialCurve(tid, tuple(range(1, n + 1)), tuple(10.0 * e for e in range(1, n + 1)), tuple(values),
                          tuple(values), 10.0 * n)

    # "best" starts worst: ASHA keeps it only in orders where it reaches the rung first
    curves = [curve("best", [0.1, 0.9, 0.9, 0.9])] + [curve(f"t{i}", [0.2 + 0.01 * i] * 4) for i in range(5)]
    r = asha_replay.replay_setting(curves, [1], 3.0, "max", 1, orders=200, seed=0, target=0.9)
    # grid order starts "best" first: alone at the rung it goes on, and then every later trial beats the cutoff
    assert r["ratio"].shape == (200,) and r["grid_same"] and r["grid_ratio"] == pytest.approx(1.0)
    assert 0.0 < r["same"].mean() < 1.0 and (r["meet"] <= r["same"]).all()
    cfg = sweep.sweep_config(Path("/out"), Path("/pool"), 4, "asha", seed=3)
    assert cfg.seed == 3 and cfg.config["train"]["optim"]["seed"] == 3


def test_the_benchmarks_shipped_recipe_is_read_from_the_demo_config(tmp_path):
    from ser_models.config import load_config, to_dict
    from ser_models.provenance import flatten
    from ser_models.runs.after import AfterJobConfig

    demo = flatten(to_dict(load_config(AfterJobConfig, le.DEMO_CONFIG)))
    bench = flatten(to_dict(bench_cache.job_config(tmp_path / "pool", tmp_path / "run", le.RECIPES["small-label"])))
    keys = [o.split("=", 1)[0] for o in le.RECIPES["small-label"]]
    assert {"model.featurizer_layer", "model.feature_norm", "train.solver", "train.l2_c"} <= set(keys)
    assert not any(k.startswith("model.encoder.") for k in keys)  # the benchmark picks its encoder
    assert {k: bench[k] for k in keys} == {k: demo[k] for k in keys}


def test_features_bench_blocks_learner_and_report():
    from bench import features

    rng = np.random.default_rng(0)
    speakers = ["a"] * 30 + ["b"] * 30
    offset = np.where(np.array(speakers) == "a", 5.0, -5.0)[:, None]
    rows = {"whisper": rng.standard_normal((60, 3)) + offset, "egemaps": rng.standard_normal((60, 2))}
    train = np.arange(60) < 40
    blocks = features.standardised_blocks(rows, speakers, train)
    assert set(blocks) == {"whisper/pool", "whisper/speaker", "egemaps/pool", "egemaps/speaker"}
    np.testing.assert_allclose(blocks["whisper/pool"][train].mean(0), 0.0, atol=1e-9)
    # speaker statistics (30 clips each, shrunk with k = 10: 3/4 the speaker's own) take most of the gap
    # between the two speakers out: about 2.0 pool standard deviations apart before, 0.7 after
    def gap(b):
        return abs(blocks[b][:30].mean() - blocks[b][30:].mean())

    assert gap("whisper/pool") > 1.5 and gap("whisper/speaker") < 0.5 * gap("whisper/pool")
    y = np.array(["x", "y"] * 30)
    x = np.c_[np.where(y == "x", 1.0, -1.0), rng.standard_normal(60)]
    model, cv = features.fit_cv(x, y, seed=0)
    assert cv > 0.9 and (model.predict(x) == y).mean() > 0.9
    runs = []
    for seed in (0, 1):
        for f in (0.1, 0.2):
            for k, name in enumerate([f"{s}/{n}" for s in features.SETS for n in features.NORMS]):
                runs.append({"strategy": name, "seed": seed, "fraction": f, "labelled": int(100 * f),
                             "test_ua": 0.5 + 0.01 * k + f + 0.001 * seed})
            runs.append({**runs[-1], "strategy": "auto", "picked": "whisper+egemaps/speaker"})
    runs += [{**r, "fraction": 1.0, "seed": 0} for r in runs[-7:]]
    text = features.report(__import__("pandas").DataFrame(runs), {"egemaps_s": 60.0, "pool_hours": 1.0,
                                                                   "whisper_cache_s": 1.0, "fits_s": 1.0},
                           "a test pool", [0, 1], common.LoadWindow().close())
    assert "| auto |" in text and "60 s per pool hour" in text and "| all labels |" in text


def test_onnx_bench_accuracy_is_unweighted_and_weighted_recall():
    from bench.onnx_throughput import accuracy

    truth = {"a": "x", "b": "x", "c": "x", "d": "y"}
    ua, wa = accuracy(truth, ["a", "b", "c", "d"], ["x", "x", "y", "y"])
    assert ua == pytest.approx((2 / 3 + 1) / 2) and wa == pytest.approx(3 / 4)


def test_demo_console_bench_sorts_rays_lines_from_ours():
    from bench.demo_console import sort_lines

    out = sort_lines(".venv/bin/python -m jobs.evidence x\n[ 3/40] seed 2 auto test UA 0.61\n"
                     "(simulate_run pid=123) scorer: cpu\n",
                     "[2026-11-27 03:38:32,180 E 26006 26006] core_worker.cc:2465: Actor\n")
    assert [len(out[k]) for k in ("make", "ours", "ray")] == [1, 1, 2]


def test_verdict_width_bench_reads_every_auto_runs_verdicts(tmp_path):
    """bench.verdict_width: one verdict per auto run and labelled count, from each run's metrics.jsonl; the mean
    half-width in points and the labels it extrapolates to for +-2 points."""
    import json

    from bench.verdict_width import verdicts, width_rows

    def verdict(labelled, low, high):
        return {"strategy": "margin", "gain": (low + high) / 2, "low": low, "high": high, "labelled": labelled}

    for seed, widths in ((0, (0.06, 0.04)), (1, (0.04, 0.02))):
        run = tmp_path / "runs" / f"auto_s{seed}"
        run.mkdir(parents=True)
        lines = [{"round": 0, "strategy": None},
                 {"round": 1, "strategy": {"chosen": "random", "verdict": verdict(100, -widths[0], widths[0])}},
                 {"round": 2, "strategy": {"chosen": "random", "verdict": verdict(200, -widths[1], widths[1])}}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "runs" / "random_s0").mkdir()  # not an auto run: never read
    found = verdicts(tmp_path)
    assert sorted(found) == [100, 200] and [len(v) for v in found.values()] == [2, 2]
    rows = width_rows(found)
    # 100 labels: half-widths 6 and 4 points, mean 5 -> 100 * (5 / 2)^2 = 625 labels for +-2.
    assert rows[0] == [100, 2, "+0.0", "5.00", "4.0", "6.0", 625]
    assert rows[1] == [200, 2, "+0.0", "3.00", "2.0", "4.0", 450]


def test_two_round_objectives_equal_their_brute_force_definitions():
    """The k-means cost and BADGE's potential, computed without building gradient embeddings, equal the
    definitions computed the long way."""
    from bench.two_round_objectives import badge_potential, kmeans_cost

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    emb = rng.normal(size=(50, 6)).astype(np.float32)
    picks = np.array([3, 17, 40])
    d = ((emb[:, None, :] - emb[None, picks, :]) ** 2).sum(-1)
    assert kmeans_cost(emb, picks) == pytest.approx(d.min(1).mean(), rel=1e-5)
    a = probs.copy()
    a[np.arange(50), a.argmax(1)] -= 1.0
    g = (a[:, :, None] * emb[:, None, :].astype(np.float64)).reshape(50, -1)
    brute = ((g[:, None, :] - g[None, picks, :]) ** 2).sum(-1).min(1).mean()
    assert badge_potential(probs, emb, picks) == pytest.approx(brute, rel=1e-9)


def test_write_score_pass_commits_a_pass_the_selection_reads(tmp_path):
    """The benchmarks' pass writer: one shard per part, committed by a manifest, read back whole."""
    from bench.common import write_score_pass
    from ser_models.scoring.score_shards import read_shard
    from ser_models.scoring.scorer import Scores

    rng = np.random.default_rng(0)
    parts = [Scores(np.array([f"c{i}{j}" for j in range(5)], object), rng.dirichlet(np.ones(3), 5).astype(np.float32),
                    rng.normal(size=(5, 4)).astype(np.float32), np.zeros((5, 0), np.float32)) for i in range(3)]
    shards = write_score_pass(parts, tmp_path / "scores")
    assert shards.rows == (5, 5, 5)
    back = read_shard(shards.paths[1])
    np.testing.assert_array_equal(back.embedding, parts[1].sorted_by_id().embedding)
