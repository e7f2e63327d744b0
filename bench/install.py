"""The installed tool: how fast help starts, and what the serving install saves against the full one.

    .venv/bin/python -m bench.install                    # writes bench/results/install.md (about 3 minutes)
    .venv/bin/python -m bench.install --out /tmp/i.md --repeats 1

Both wheels are built from this checkout (``pip wheel .`` and ``pip wheel serving/``) and installed into fresh
virtual environments under ``--workdir``, as ``tests/integration/test_installed.py`` installs them: the full
one reaches this venv's packages through a ``.pth`` file; the serving one gets links to this venv's packages
less torch, Ray, transformers, pandas and the rest the serving install does not declare, so none of those can be
imported there.

- **Help**: wall time of a cold start (a new interpreter each time, the median of ``--repeats``) of
  ``ser-models --help``, ``ser-models after --help`` (read from the committed key index) and ``python -m
  jobs.after --help`` (the clone's shell, which imports the job and with it torch).
- **Installed size**: the bytes on disk of each distribution and every package it requires, transitively (read
  from the installed packages' records in this venv: the same versions a fresh ``pip install`` would take here).
- **Import to first prediction** and **peak RSS**: a new interpreter imports ``ser_models``, loads the ONNX graph
  (``runtime="onnx"``) and predicts ``--clips`` generated clips of 1.5-5 s, in each environment; and, for
  reference, the torch checkpoint the graph came from in the full one. The model is the bundled Whisper-tiny
  encoder (Smart Turn v3.2) with an untrained linear head: the numbers are about the install, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

from bench.common import LoadWindow, claim_workdir, machine_info, machine_markdown, md_table, write_results

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sysconfig.get_paths()["purelib"])
#: What the serving environment leaves out of this venv's packages (top-level names, prefixes).
NOT_SERVED = ("torch", "ray", "transformers", "peft", "faiss", "triton", "nvidia", "functorch", "__editable__",
              "ser_models", "ser-models", "lhotse", "datasets", "pandas", "sklearn", "scikit_learn", "scipy")

_PREDICT = """
import json, sys, time
t0 = time.perf_counter()
import ser_models
runtime, model, files = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
predictor = ser_models.load(model, runtime=runtime)
out = predictor.predict(files)
seconds = time.perf_counter() - t0
heavy = sorted(m for m in ("torch", "ray", "transformers") if m in sys.modules)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across fork and exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss_mib": hwm / 1024, "predictions": len(out), "imported": heavy}))
"""


def build_wheel(project: Path, out: Path) -> Path:
    """``pip wheel`` of ``project`` (no dependencies, no build isolation); a rebuild overwrites the wheel of the
    same name."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(project)], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = out.glob("*.whl")
    return wheel


def make_env(root: Path, wheel: Path, site_from: Path | None) -> Path:
    """A virtual environment holding ``wheel`` (``site_from`` reached through a ``.pth`` file); its ``bin``."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=600)
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    if site_from is not None:
        Path(purelib, "_heavy_packages.pth").write_text(f"{site_from}\n")
    return root / "bin"


def run_outside(cmd: list, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``cmd`` run as a team runs the installed tool: in ``cwd``, without this checkout's ``PYTHONPATH`` or virtual
    environment (``env``: variables set on top); its output captured as text."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def serving_site(root: Path) -> Path:
    """Links to this venv's packages less :data:`NOT_SERVED`."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in SITE.iterdir():
        if not entry.name.lower().startswith(NOT_SERVED) and entry.suffix != ".pth" and not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry)
    return root


def _name(requirement: str) -> str | None:
    """The distribution a requirement names, or None when its marker does not apply here (an extra, another
    platform or Python)."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return req.name.lower().replace("_", "-")


def installed_size(requirements: list[str]) -> tuple[float, int, list[str], list[tuple[str, float]]]:
    """MiB on disk of the distributions ``requirements`` name and all they require (this venv's versions), their
    count, any that is not installed here, and the five largest ``(name, MiB)``."""
    seen, missing, todo, sizes = set(), [], [n for r in requirements if (n := _name(r))], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        sizes[name] = sum(f.size or 0 for f in dist.files or []) / 2**20
        todo += [n for r in dist.requires or [] if (n := _name(r))]
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    return sum(sizes.values()), len(sizes), sorted(missing), largest


def _pyproject_requirements(path: Path) -> list[str]:
    import tomllib

    return tomllib.loads(path.read_text())["project"]["dependencies"]


def cold(cmd: list, cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, check=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_and_clips(work: Path, n: int) -> tuple[Path, Path, list[str]]:
    """The bundled encoder with an untrained head, saved and exported; ``n`` generated clips."""
    import numpy as np
    import soundfile as sf
    import torch

    from ser_models.encoders.config import EncoderConfig
    from ser_models.encoders.smart_turn import cached_encoder
    from ser_models.export.job import main as export_main
    from ser_models.models.model import EmotionModel
    from ser_models.models.model_config import ModelConfig

    checkpoint, graph = work / "checkpoint", work / "served" / "model.onnx"
    if not graph.exists():
        torch.manual_seed(0)
        cfg = ModelConfig(encoder=EncoderConfig(source=str(cached_encoder(ROOT / ".cache", quiet=True))),
                          featurizer_layer=1, feature_norm="none")
        EmotionModel(cfg).eval().save_checkpoint(str(checkpoint))
        export_main([f"checkpoint={checkpoint}", f"output={graph}"])
    rng = np.random.default_rng(0)
    clips = []
    for i in range(n):
        path = work / "clips" / f"clip{i:03d}.wav"
        path.parent.mkdir(exist_ok=True)
        seconds = rng.uniform(1.5, 5.0)
        sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000, subtype="PCM_16")
        clips.append(str(path))
    return checkpoint, graph, clips


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="outputs/bench_install")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "install.md"))
    args = ap.parse_args(argv)
    work = claim_workdir(args.workdir)
    load = LoadWindow()
    started = time.perf_counter()
    full = make_env(work / "full_env", build_wheel(ROOT, work / "wheels_full"), SITE)
    serve = make_env(work / "serve_env", build_wheel(ROOT / "serving", work / "wheels_serve"),
                     serving_site(work / "serving_site"))
    empty = work / "empty"
    empty.mkdir(exist_ok=True)

    help_rows = [
        ["`ser-models --help`", f"{cold([full / 'ser-models', '--help'], empty, args.repeats):.2f}"],
        ["`ser-models after --help`", f"{cold([full / 'ser-models', 'after', '--help'], empty, args.repeats):.2f}"],
        ["`python -m jobs.after --help` (a clone's shell)",
         f"{cold([sys.executable, '-m', 'jobs.after', '--help'], ROOT, args.repeats):.2f}"],
    ]
    sizes = {"ser-models (full)": installed_size(_pyproject_requirements(ROOT / "pyproject.toml")),
             "ser-models-serve": installed_size(_pyproject_requirements(ROOT / "serving" / "pyproject.toml"))}
    checkpoint, graph, clips = model_and_clips(work, args.clips)
    runs = []
    for label, env, runtime, model in (("ser-models-serve", serve, "onnx", graph),
                                       ("ser-models (full)", full, "onnx", graph),
                                       ("ser-models (full)", full, "torch", checkpoint)):
        best = None
        for _ in range(args.repeats):
            proc = subprocess.run([str(env / "python"), "-c", _PREDICT, runtime, str(model), json.dumps(clips)],
                                  capture_output=True, text=True, cwd=empty, timeout=600)
            if proc.returncode:
                raise SystemExit(f"{label} {runtime}: {proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            best = got if best is None or got["seconds"] < best["seconds"] else best
        runs.append((label, runtime, best))
    load.close()

    size_rows = [[name, f"{mib:.0f}", count, ", ".join(f"{n} {m:.0f}" for n, m in largest), ", ".join(missing) or "-"]
                 for name, (mib, count, missing, largest) in sizes.items()]
    run_rows = [[label, runtime, f"{r['seconds']:.2f}", f"{r['peak_rss_mib']:.0f}", ", ".join(r["imported"]) or "none"]
                for label, runtime, r in runs]
    ratio = sizes["ser-models (full)"][0] / sizes["ser-models-serve"][0]
    text = (f"# The installed tool\n\nMade by `python -m bench.install` in {time.perf_counter() - started:.0f} s.\n"
            f"{machine_markdown(machine_info(), load)}\n\n"
            f"## Help, cold start (median of {args.repeats}, a new interpreter each)\n\n"
            + md_table(["command", "seconds"], help_rows)
            + "\n\n## Installed size (the distribution and everything it requires, this venv's versions)\n\n"
            + md_table(["install", "MiB", "distributions", "largest (MiB)", "not installed here"], size_rows)
            + f"\n\nThe full install is {ratio:.1f}x the serving one.\n\n"
            f"## Import to first prediction, {args.clips} clips of 1.5-5 s (the fastest of {args.repeats}, a new "
            "interpreter each)\n\nWhisper-tiny (Smart Turn v3.2) with an untrained linear head, exported by "
            "`ser-models export` (fp32). `imported` lists the heavy packages the process loaded.\n\n"
            + md_table(["install", "runtime", "seconds", "peak RSS (MiB)", "imported"], run_rows) + "\n")
    print(text)
    write_results(args.out, text)


if __name__ == "__main__":
    main()
