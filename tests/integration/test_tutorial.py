"""docs/tutorial.md, run word for word from an empty folder outside any clone, with the wheel installed, on a
CREMA-D-shaped tree of generated clips (``AudioWAV/1001_IEO_ANG_XX.wav``, ...; :func:`ser_models.testing.crema_d_tree`).

The tutorial's shell commands are read from its code blocks (as ``tests/jobs/test_readme_commands.py`` reads
them) and run in bash, in order, with the installed environment's ``bin`` first on ``PATH`` (as an activated
environment has it). Only the tutorial's placeholders are replaced (:data:`PLACEHOLDERS`): the manifest of step 2,
the classes, the audio files of step 8. Where the tutorial has a person fill ``to_label.csv``, its own Python
block fills it, run by the installed Python, with the people's ``answers`` taken from the file names (the tree's
truth): the evaluation request in part first (a ``skip`` with a note, a typo, two blanks), as its section "Fill a
request file in part" describes. The commands it does not run are in :data:`NOT_RUN`, each with its reason; a
command the tutorial gains or loses fails the test until it is placed in one or the other.

Every outcome the tutorial promises is checked: the pool, the plan and its overrides, the copied template, each
request and what each rerun says it took, the round lines, the verdict of "does selection pay", the report
files, the model loaded from the run, the ONNX export and a prediction served by ``ser-models-serve`` from the
serving install (no torch there). The encoder is the one the recipe names (``smart-turn``, Whisper-tiny of Smart
Turn v3.2), found in the checkout's encoder cache through ``$SER_ENCODER_CACHE``, which the recipe documents:
the import the tutorial's ``import-encoder`` line makes, without its download.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.install import SITE, make_env, serving_site
from bench.install import run_outside as run
from ser_models.testing import crema_d_tree
from tests.jobs.test_readme_commands import shell_commands

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"
pytestmark = [pytest.mark.slow_e2e, pytest.mark.slow]

#: The generated tree: 16 actors, 9 clips each, the four classes evenly. Small, so that the whole journey (five
#: runs of the loop, each starting Ray) stays within minutes on 2 cores.
CLIPS, ACTORS = 144, 16
CLASSES = ["angry", "happy", "neutral", "sad"]

#: The tutorial's commands this test does not run, and why.
NOT_RUN = {
    "make demo": "a clone's make target; this folder is outside any clone",
    "make test": "a clone's make target; this folder is outside any clone",
    "ser-models import-encoder smart-turn .cache/encoders/smart-turn-v3.2-whisper-tiny":
        "downloads the pipecat-ai wheel and tests never download: $SER_ENCODER_CACHE names the checkout's import, "
        "the folder this command writes",
    "ser-models make-demo-pool outputs/demo/corpus --n 2880 --seed 0":
        "the demo (about 5 minutes of its own, run by `make demo`); the CREMA-D tree is this journey's audio",
    "ser-models prepare-pool --config prepare_pool_demo": "the demo's pool",
    "ser-models evidence --config demo_evidence": "the demo's 10-seed comparison (3.7 minutes on 2 cores)",
    "ser-models segment --config segment_demo recordings=data/recordings.csv output_dir=data/segments":
        "long recordings; a CREMA-D tree holds clips, the tutorial's other branch (a manifest of clips)",
    "ser-models predict --config predict_demo checkpoint=data/runs/after-1 pool_dir='' "
    "recordings=data/recordings.csv output_dir=data/timeline":
        "whole recordings; a CREMA-D tree holds clips (the run's model predicts clips in step 8's Python)",
    "pip install 'ser-models[onnx]'":
        "no package index here: the wheel's `onnx` extra is checked instead; its packages come with the .venv",
}
#: What each Python block of the tutorial is for, in the page's order.
PY_FILL, PY_LOAD, PY_ONNX = range(3)
EVAL_REQUEST = "data/runs/after-1/rounds/evaluation/to_label.csv"


def _commands() -> list[str]:
    return [" ".join(c.split()) for c in shell_commands(TUTORIAL.read_text())]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)


def _substitute(text: str, placeholders: dict[str, str]) -> str:
    for old, new in placeholders.items():
        text = text.replace(old, new)
    return text


def _truth(tree: pd.DataFrame) -> dict[str, str]:
    return dict(zip(tree["utt_id"], tree["label"]))


class Journey:
    """The empty folder, the installed tools and the tutorial's text, run step by step."""

    def __init__(self, work: Path, tool: Path, serve: Path, env: dict[str, str], placeholders: dict[str, str]):
        self.work, self.tool, self.serve, self.env, self.placeholders = work, tool, serve, env, placeholders
        self.log: list[str] = []
        self.seconds: list[tuple[str, float]] = []  # each command's wall time, printed at the end

    def shell(self, command: str, timeout: int = 600, bin_dir: Path | None = None):
        """One of the tutorial's commands, placeholders replaced, in bash; must exit 0."""
        line = _substitute(command, self.placeholders)
        path = f"{bin_dir or self.tool}{os.pathsep}{os.environ.get('PATH', '')}"
        started = time.perf_counter()
        proc = run(["bash", "-c", line], self.work, timeout=timeout, env={**self.env, "PATH": path})
        self.seconds.append((line, time.perf_counter() - started))
        self.log.append(f"$ {line}   ({self.seconds[-1][1]:.1f} s)\n{proc.stdout}{proc.stderr}")
        assert proc.returncode == 0, f"$ {line}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def python(self, code: str, prelude: str = ""):
        """One of the tutorial's Python blocks, placeholders replaced, run by the installed Python."""
        script = prelude + _substitute(code, self.placeholders)
        proc = run([self.tool / "python", "-c", script], self.work, timeout=300, env=self.env)
        assert proc.returncode == 0, f"{script}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc

    def fill(self, request: str, answers: list[str]) -> None:
        """The tutorial's block for filling a request, on ``request``, with the people's ``answers``."""
        block = _python_blocks()[PY_FILL]
        assert EVAL_REQUEST in block and 'request["label"] = answers' in block, block
        self.python(block.replace(EVAL_REQUEST, request), prelude=f"answers = {json.dumps(answers)}\n")

    def request(self, rel: str) -> pd.DataFrame:
        return pd.read_csv(self.work / rel, dtype=str, keep_default_na=False)


def test_the_tutorial_word_for_word_on_a_crema_d_tree(wheels, smart_turn_dir, tmp_path):
    commands = _commands()
    for skipped in NOT_RUN:
        assert skipped in commands, f"NOT_RUN names a command the tutorial no longer has: {skipped}"
    prepare, plan, copy, after, export, serve = [c for c in commands if c not in NOT_RUN]  # in the page's order
    assert prepare.startswith("ser-models prepare-pool ") and plan.startswith("ser-models plan ")
    assert copy.startswith("ser-models configs --copy ") and after.startswith("xargs ser-models after ")
    assert export.startswith("ser-models export ") and serve.startswith("ser-models-serve ")

    # The team's audio: CREMA-D as released, in a folder of its own; an empty working folder beside nothing else.
    work = tmp_path / "work"
    tree = crema_d_tree(work / "corpora" / "CREMA-D", n=CLIPS, seed=0, n_actors=ACTORS)
    assert not [p for p in work.iterdir() if p.name != "corpora"]
    truth = _truth(tree)
    clips = [f"corpora/CREMA-D/AudioWAV/{u}.wav" for u in tree["utt_id"][:2]]
    # Step 2, clips already cut: a manifest of `utt_id, path` (relative to the manifest's folder) and the speaker;
    # no label, no split. The rest of the placeholders: the classes, and step 8's audio files.
    (work / "data").mkdir()
    pd.DataFrame({"utt_id": tree["utt_id"], "path": [f"../corpora/CREMA-D/AudioWAV/{u}.wav" for u in tree["utt_id"]],
                  "speaker": tree["speaker"]}).to_csv(work / "data" / "clips.csv", index=False)
    placeholders = {"manifest=data/segments/segments.parquet": "manifest=data/clips.csv",
                    "[frustrated,satisfied,neutral]": f"[{','.join(CLASSES)}]",
                    "call_0001_turn_12.wav": clips[0], "call_0001_turn_13.wav": clips[1]}
    assert all(old in TUTORIAL.read_text() for old in placeholders), "a placeholder left the tutorial"

    tool = make_env(tmp_path / "env", wheels["full"], SITE)
    serving = make_env(tmp_path / "serve_env", wheels["serve"], serving_site(tmp_path / "serving_site"))
    env = {"SER_ENCODER_CACHE": str(Path(smart_turn_dir).parent), "HF_HUB_OFFLINE": "1"}
    journey = Journey(work, tool, serving, env, placeholders)
    try:
        _follow(journey, truth, prepare, plan, copy, after, export, serve)
    finally:
        (tmp_path / "console.log").write_text("\n".join(journey.log))  # what a person would have read
        print("\n".join(f"{seconds:6.1f} s  {line[:100]}" for line, seconds in journey.seconds))


def _follow(j: Journey, truth: dict[str, str], prepare, plan, copy, after, export, serve) -> None:
    work = j.work
    assert run(["bash", "-c", "command -v ser-models"], work, env={"PATH": f"{j.tool}:{os.environ['PATH']}"}
               ).stdout.strip() == str(j.tool / "ser-models")  # the installed command, not a clone's

    # 3. Prepare the pool and name the classes.
    out = j.shell(prepare).stdout
    assert f"kept {CLIPS} / {CLIPS} clips" in out, out

    # 4. Plan the budget: sizes, precision, the overrides (also in data/plan/overrides.txt, one a line).
    out = j.shell(plan).stdout
    assert "Test-set size vs the 95 % interval of UA" in out and "Does selection pay?" in out, out
    overrides = (work / "data" / "plan" / "overrides.txt").read_text().split()
    keys = [shlex.split(o)[0].split("=")[0] for o in overrides]
    assert keys == ["active.evaluation.test_size", "active.evaluation.dev_size", "active.budget_labels"], overrides
    budget = json.loads(shlex.split(overrides[2])[0].split("=", 1)[1])
    planned = dict(re.findall(r"^  (test|dev): (\d+) clips from", out, re.M))  # what the loop's draw will hold
    assert set(planned) == {"test", "dev"}, out

    # 5. The template, copied next to the data: its paths are the tutorial's as shipped.
    j.shell(copy)
    recipe = yaml.safe_load((work / "data" / "after.yaml").read_text())
    assert (recipe["pool_dir"], recipe["output_dir"], recipe["active"]["feature_cache_dir"]) == (
        "data/pool", "data/runs/after-1", "data/feature_cache")
    assert recipe["model"]["encoder"]["source"] == "smart-turn"

    # 5.1 The evaluation sets: drawn as planned, asked for first.
    out = j.shell(after).stdout
    assert "*** waiting for labels ***" in out and str(work / EVAL_REQUEST) in out, out
    for split, n in planned.items():
        assert re.search(rf"^  {split}: {n} clips from .* speakers.*design effect", out, re.M), (split, n, out)
    request = j.request(EVAL_REQUEST)
    assert len(request) == sum(map(int, planned.values()))

    # In part: a clip nobody can label (skip, with a note), a typo, two blanks; the rest answered.
    answers = [truth[u] for u in request["utt_id"]]
    skipped, typo, blank = request["utt_id"][0], request["utt_id"][1], list(request["utt_id"][2:4])
    answers[0], answers[1], answers[2], answers[3] = "skip: two voices at once", "angyr", "", ""
    j.fill(EVAL_REQUEST, answers)
    out = j.shell(after).stdout
    assert f"{work / EVAL_REQUEST}: {len(request) - 4} rows imported, 2 left blank, 1 skipped, 1 refused" in out, out
    assert (f"refused: line 3 ('{typo}'): unknown label 'angyr' (allowed: {', '.join(CLASSES)}, or skip)"
            in out), out
    assert re.search(r"3 clips still need labels in .*evaluation/to_label\.csv \(2 left blank, 1 refused", out), out
    dropped = pd.read_parquet(work / "data" / "runs" / "after-1" / "labels" / "dropped.parquet")
    assert list(dropped["utt_id"]) == [skipped] and "two voices at once" in dropped["reason"][0]
    still = j.request(EVAL_REQUEST)
    assert {typo, *blank} <= set(still["utt_id"]), still  # asked again in the same file

    # The rest answered. Imported and skipped rows are final: the skipped clip's answer now, and an imported
    # row changed to another class, are ignored (the ledger below holds the first answers).
    edited = request["utt_id"][4]
    assert edited in set(still["utt_id"]), still  # a spreadsheet keeps the rows already imported
    j.fill(EVAL_REQUEST, [next(c for c in CLASSES if c != truth[u]) if u == edited else truth[u]
                          for u in still["utt_id"]])
    out = j.shell(after).stdout
    n_eval = len(request) - 1
    sizes = re.search(r"evaluation sets labelled: test (\d+), dev (\d+) clips", out)
    assert sizes and int(sizes[1]) + int(sizes[2]) == n_eval, out
    assert "1 clips skipped or dropped in labelling" in out and "cannot be labelled by the oracle" not in out, out
    ledger = pd.read_parquet(work / "data" / "runs" / "after-1" / "labels" / "ledger.parquet")
    assert len(ledger) == n_eval and skipped not in set(ledger["utt_id"])
    assert set(ledger["purpose"]) == {"test", "dev"}
    assert dict(zip(ledger["utt_id"], ledger["label"])) == {u: truth[u] for u in ledger["utt_id"]}

    # 5.2 The initial set, then round 0: its line, and its picks asked in rounds/round=000 ("round 0").
    initial = "data/runs/after-1/rounds/initial/to_label.csv"
    assert str(work / initial) in out and "*** waiting for labels ***" in out, out
    assert len(j.request(initial)) == budget[0]
    j.fill(initial, [truth[u] for u in j.request(initial)["utt_id"]])
    out = j.shell(after).stdout
    line = _round_line(out, 0)
    assert f"round 0 | {budget[0]} labels (" in line and "| dev UA " in line and "| test UA " in line, line
    first = "data/runs/after-1/rounds/round=000/to_label.csv"
    assert re.search(rf"round 0: \d+ clips need labels\. .*{re.escape(str(work / first))}", out), out
    run_dir = work / "data" / "runs" / "after-1"
    assert (run_dir / "rounds" / "round=000" / "train" / "checkpoint").is_dir()
    assert not (run_dir / "metrics.jsonl").exists()  # one line per finished round: round 0 waits for its picks

    # 6. Round 1 trains on round 0's picks: its line carries auto's verdict, the log the labels to resolve it.
    picks = j.request(first)
    j.fill(first, [truth[u] for u in picks["utt_id"]])
    out = j.shell(after).stdout
    line = _round_line(out, 1)
    labelled = budget[0] + len(picks)
    assert f"round 1 | {labelled} labels (" in line, line
    assert re.search(r"\| auto [a-z_]+(, margin)? [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", line), line
    assert re.search(r"about \d+ more labels to resolve \+-2", out), out
    selection = json.loads((run_dir / "report" / "selection.json").read_text())
    assert selection["round"] == 1 and selection["verdict"]["labelled"] == labelled
    assert [json.loads(x)["round"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [0]
    paid = json.loads((run_dir / "report" / "labels.json").read_text())
    assert (paid["train"]["clips"], paid["test"]["clips"] + paid["dev"]["clips"]) == (labelled, n_eval), paid
    assert (run_dir / "report" / "learning_curve.png").is_file()

    # 8. The run's model from Python, its ONNX export, the graph from Python and served from the shell.
    blocks = _python_blocks()
    torch_label = j.python(blocks[PY_LOAD]).stdout.strip()
    assert torch_label in CLASSES
    wheel_extras = run([j.tool / "python", "-c", "from importlib.metadata import metadata; "
                        "print(metadata('ser-models').get_all('Provides-Extra'))"], work).stdout
    assert "'onnx'" in wheel_extras, wheel_extras  # what `pip install 'ser-models[onnx]'` names
    j.shell(export)
    assert (work / "data" / "model.onnx").is_file()
    assert j.python(blocks[PY_ONNX], prelude="import ser_models\n").stdout.strip() == torch_label
    rows = [json.loads(x) for x in j.shell(serve, bin_dir=j.serve).stdout.splitlines()]
    assert [r["input"] for r in rows] == [j.placeholders["call_0001_turn_12.wav"],
                                          j.placeholders["call_0001_turn_13.wav"]]
    assert rows[0]["label"] == torch_label
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)


def _round_line(out: str, r: int) -> str:
    """Round ``r``'s line in a run's console: printed once, at most 160 characters."""
    lines = [x for x in out.splitlines() if x.startswith(f"round {r} | ")]
    assert len(lines) == 1, out
    assert len(lines[0]) <= 160, lines[0]
    return lines[0]
