"""The platform as a team installs it: the built wheels, in fresh virtual environments, run from a folder outside
the repository.

- ``ser-models`` (``pip wheel .``): the library alone, its recipes, the key index and two console scripts; the
  heavy packages (torch, Ray, ...) come from the project's ``.venv`` through a ``.pth`` file, so what is
  tested is the wheel's own contents and entry points.
- ``ser-models-serve`` (``pip wheel serving/``): the same package with the serving dependencies only, in an
  environment where torch, Ray and transformers are not installed at all (not merely blocked).

Each test builds wheels and virtual environments (seconds each on 2 cores), so the file runs in ``make test-e2e``
(marker ``slow_e2e``), with the journey from a Lhotse file to a served prediction at its end.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.install import SITE, make_env, serving_site
from bench.install import run_outside as run

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow_e2e


def test_the_wheel_holds_the_library_its_recipes_and_the_commands(wheels):
    names = zipfile.ZipFile(wheels["full"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"ser_models", "ser_models-0.1.0.dist-info"}, tops  # no top-level `jobs` package
    recipes = sorted(p.name for p in (REPO / "ser_models" / "configs").glob("*.yaml"))
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("ser_models/configs/")) == recipes
    assert "ser_models/job_keys.json" in names
    entry_points = zipfile.ZipFile(wheels["full"]).read("ser_models-0.1.0.dist-info/entry_points.txt").decode()
    assert "ser-models = ser_models.cli.command:main" in entry_points
    assert "ser-models-serve = ser_models.cli.serve:main" in entry_points
    metadata = zipfile.ZipFile(wheels["full"]).read("ser_models-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: torch" in metadata
    serve_meta = zipfile.ZipFile(wheels["serve"]).read("ser_models_serve-0.1.0.dist-info/METADATA").decode()
    required = [line.split(":", 1)[1].strip() for line in serve_meta.splitlines() if line.startswith("Requires-Dist")]
    assert required and not [r for r in required if r.lower().startswith(("torch", "ray", "transformers", "peft"))]


def test_the_installed_command_from_a_folder_outside_the_repository(wheels, tmp_path):
    bin_dir = make_env(tmp_path / "env", wheels["full"], SITE)
    work = tmp_path / "work"
    work.mkdir()
    where = run([bin_dir / "python", "-c", "import ser_models; print(ser_models.__file__)"], work)
    assert where.returncode == 0 and str(tmp_path / "env") in where.stdout, where  # the wheel's, not the clone's
    overview = run([bin_dir / "ser-models", "--help"], work)
    assert overview.returncode == 0 and "prepare-pool" in overview.stdout and "after" in overview.stdout
    configs = run([bin_dir / "ser-models", "configs"], work)
    assert configs.returncode == 0 and "demo_after" in configs.stdout
    job_help = run([bin_dir / "ser-models", "after", "--help"], work)
    assert job_help.returncode == 0 and job_help.stdout.startswith("usage: ser-models after")
    printed = run([bin_dir / "ser-models", "plan", "--config", "demo_after", "--print-config"], work)
    assert printed.returncode == 2 and "recipe 'demo_after' is for `after`, not `plan`" in printed.stderr
    plan = run([bin_dir / "ser-models", "plan", "budget=300", "labels=[a,b,c,d]"], work)
    assert plan.returncode == 0 and "Overrides for jobs.after" in plan.stdout
    module_form = run([bin_dir / "python", "-m", "ser_models", "plan", "budget=x"], work)
    assert module_form.returncode == 2 and "config key 'budget'" in module_form.stderr


def _exported(tmp_path: Path) -> Path:
    """A tiny model (random tiny wav2vec2, classes and arousal) exported to ONNX by the export job."""
    import torch

    from ser_models.export.job import main as export_main
    from ser_models.models.model import EmotionModel
    from ser_models.testing import tiny_model_config

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config("tiny-wav2vec2", dimensions=["arousal"]), feature_norm="none")
    EmotionModel(cfg).eval().save_checkpoint(str(tmp_path / "checkpoint"))
    export_main([f"checkpoint={tmp_path / 'checkpoint'}", f"output={tmp_path / 'served' / 'model.onnx'}"])
    return tmp_path / "served"


def test_the_serving_install_predicts_without_torch_ray_or_transformers(wheels, tmp_path):
    import ser_models

    served = _exported(tmp_path)
    rng = np.random.default_rng(0)
    files = []
    for i, rate in enumerate((16000, 22050)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, (0.2 * rng.standard_normal(int(rate * 1.2))).astype(np.float32), rate, subtype="PCM_16")
        files.append(str(path))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    want = [p.to_dict() for p in ser_models.load(served, runtime="onnx").predict(files)]

    bin_dir = make_env(tmp_path / "serve_env", wheels["serve"], serving_site(tmp_path / "serving_site"))
    work = tmp_path / "work"
    work.mkdir()
    absent = run([bin_dir / "python", "-c", "import importlib.util as u; "
                  "print([m for m in ('torch', 'ray', 'transformers', 'peft', 'pandas') if u.find_spec(m)])"], work)
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent  # not installed at all
    cli = run([bin_dir / "ser-models-serve", served, *files, tmp_path / "bad.wav"], work)
    rows = [json.loads(line) for line in cli.stdout.splitlines()]
    assert cli.returncode == 2, cli.stderr  # the bad file is reported, the others are still scored
    assert [r["input"] for r in rows] == [*files, str(tmp_path / "bad.wav")]
    assert "error" in rows[-1] and "bad.wav" in rows[-1]["error"]
    for got, exp in zip(rows[:2], want, strict=True):
        assert got["label"] == exp["label"] and got["seconds"] == exp["seconds"]
        assert max(abs(got["probabilities"][k] - exp["probabilities"][k]) for k in exp["probabilities"]) < 1e-5
    api = run([bin_dir / "python", "-c", "import sys, ser_models; "
               f"p = ser_models.load({str(served)!r}, runtime='onnx').predict({files!r}); "
               "print(p[0].label); "
               "print(sorted(m for m in ('torch', 'ray', 'transformers', 'pandas') if m in sys.modules))"], work)
    assert api.returncode == 0, api.stderr
    assert api.stdout.splitlines() == [want[0]["label"], "[]"]


_FILL = """
import sys
import pandas as pd
from ser_models.data import Pool
truth = Pool.open(sys.argv[1]).metadata(columns=["utt_id", "label"]).set_index("utt_id")["label"]
request = pd.read_csv(sys.argv[2], dtype=str, keep_default_na=False)
request["label"] = request["utt_id"].map(truth)
request.to_csv(sys.argv[2], index=False)
"""


def test_the_journey_from_a_lhotse_file_to_a_served_prediction(wheels, tmp_path):
    """As a team would, from an empty folder: help, the recipes, a pool straight from a Lhotse cuts file, the loop
    to "waiting for labels", the request filled in, the loop again, export, then predictions from the serving
    install (no torch there)."""
    lhotse = pytest.importorskip("lhotse")
    from ser_models.data import generate_corpus

    work = tmp_path / "work"
    corpus = generate_corpus(work / "corpus", n=48, seed=0)
    recs = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(work / "corpus" / p, recording_id=u)
                                                for u, p in zip(corpus["utt_id"], corpus["path"])])
    sups = lhotse.SupervisionSet.from_segments([
        lhotse.SupervisionSegment(f"{r.utt_id}-s", r.utt_id, 0.0, recs[r.utt_id].duration, channel=0,
                                  speaker=r.speaker, custom={"emotion": r.label, "split": r.split})
        for r in corpus.itertuples()])
    lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(work / "cuts.jsonl.gz")

    tool = make_env(tmp_path / "env", wheels["full"], SITE)
    serve = make_env(tmp_path / "serve_env", wheels["serve"], serving_site(tmp_path / "serving_site"))
    assert run([tool / "ser-models", "--help"], work).returncode == 0
    assert "my_data_after" in run([tool / "ser-models", "configs", "after"], work).stdout
    pool = run([tool / "ser-models", "prepare-pool", "manifest=cuts.jsonl.gz", "output_dir=pool"], work)
    assert pool.returncode == 0 and "a Lhotse manifest; importing it" in pool.stdout, pool.stdout + pool.stderr
    assert "kept 48 / 48 clips" in pool.stdout

    after = [tool / "ser-models", "after", "--config", "my_data_after", "pool_dir=pool", "output_dir=run",
             "model.encoder.source=tiny-whisper", "active.budget_labels=[8,14]", "active.feature_cache_dir=fc",
             "scaling.cpus_per_worker=1", "active.scorer.threads=1"]
    first = run(after, work, timeout=600)
    assert first.returncode == 0 and "*** waiting for labels ***" in first.stdout, first.stdout + first.stderr
    request = work / "run" / "rounds" / "initial" / "to_label.csv"
    assert str(request) in first.stdout
    assert run([tool / "python", "-c", _FILL, "pool", request], work).returncode == 0
    second = run(after, work, timeout=600)
    assert second.returncode == 0 and "*** waiting for labels ***" in second.stdout, second.stdout + second.stderr
    assert "rounds/round=000/to_label.csv" in second.stdout  # round 0 trained on the 8 labels, asks for the next
    assert (work / "run" / "rounds" / "round=000" / "train" / "checkpoint" / "model.json").exists()

    exported = run([tool / "ser-models", "export", "checkpoint=run", "output=served/model.onnx"], work)
    assert exported.returncode == 0 and (work / "served" / "model.onnx").exists(), exported.stderr[-2000:]
    clips = [str(work / "corpus" / p) for p in corpus["path"][:3]]
    served = run([serve / "ser-models-serve", work / "served" / "model.onnx", *clips], work)
    assert served.returncode == 0, served.stderr
    rows = [json.loads(line) for line in served.stdout.splitlines()]
    assert [r["input"] for r in rows] == clips
    assert all(r["label"] in ("neutral", "happy", "angry", "sad") and abs(sum(r["probabilities"].values()) - 1) < 1e-4
               for r in rows)
