"""The Label Studio oracle against a real Label Studio server (the ``label-studio`` package, SQLite, 127.0.0.1),
started by this module. Annotators sign up through the invite link and annotate through the REST API, as the
browser does: the oracle's tasks, audio, several annotators, the disagreement policies, bad annotations, and
a whole ``jobs.after`` run killed while it waited and resumed.

The server lives in ``.venv-labelstudio`` (``make labelstudio``; ``make test`` builds it). Without it these
tests skip, unless ``SER_REQUIRE_LABEL_STUDIO=1`` (set by ``make test``) turns the skip into a failure.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.active.training_clips import TrainingClips
from ser_models.config import load_config
from ser_models.exceptions import ConfigError, LabelImportError, LabellingPending
from ser_models.labelling.config import LabelStudioConfig
from ser_models.labelling.label_studio_client import LabelStudioClient, LabelStudioError
from ser_models.labelling.label_studio_oracle import LabelStudioOracle
from ser_models.names import safe_file_name
from ser_models.runs.after import AfterJobConfig, run_after
from ser_models.testing import TRAINED_HEAD_AFTER, kill_when
from ser_models.testing.label_studio import find_label_studio, start_label_studio

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.label_studio, pytest.mark.slow]
LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ls_docroot")


@pytest.fixture(scope="module")
def server(clips_root, tmp_path_factory):
    exe = find_label_studio()
    if exe is None:
        message = "label-studio is not installed: run `make labelstudio` (creates .venv-labelstudio)"
        if os.environ.get("SER_REQUIRE_LABEL_STUDIO") == "1":
            pytest.fail(message)
        pytest.skip(message)
    srv = start_label_studio(tmp_path_factory.mktemp("ls_data"), exe, document_root=clips_root)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def clips(clips_root):
    """Six short WAV clips under the server's document root (a subfolder, as Label Studio requires)."""
    folder = clips_root / "pool" / "audio"
    folder.mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for k in range(6):
        path = folder / f"clip_{k}.wav"
        sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        rows.append({"utt_id": f"u{k}", "path": str(path), "duration": 0.5})
    return pd.DataFrame(rows)


def _oracle(server, clips, tmp_path, project, labels=LABELS, dimensions=(), **cfg):
    cfg = LabelStudioConfig(url=server.url, project=project, **cfg)
    client = LabelStudioClient(server.url, server.token)
    return LabelStudioOracle(cfg, labels, list(dimensions), (1.0, 5.0), clips, tmp_path / "round", run_name="t",
                             client=client, log=lambda m: None)


def _task_of(server, project):
    return {t["data"]["utt_id"]: t for t in server.tasks(project)}


def test_tasks_audio_annotators_and_majority(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "majority test", annotators=2, dimensions=["arousal"])
    got = oracle.collect(["u0", "u1", "u2"], round=1)
    assert got.pending == ["u0", "u1", "u2"] and got.frame.empty
    tasks = _task_of(server, "majority test")
    assert sorted(tasks) == ["u0", "u1", "u2"] and all(t["data"]["ser_round"] == 1 for t in tasks.values())
    assert all(t["overlap"] == 2 for t in tasks.values())
    # the uploaded audio is the clip's own bytes, served by Label Studio
    audio = server.admin().get(server.url + tasks["u0"]["data"]["audio"], timeout=30)
    assert audio.status_code == 200 and audio.content == Path(clips.path[0]).read_bytes()
    # pages: every task, whatever page size the server grants
    assert sorted(t["data"]["utt_id"] for t in oracle.client.tasks(oracle.project()["id"], page_size=2)) == \
        ["u0", "u1", "u2"]
    # a second read (a rerun) creates nothing new
    oracle.collect(["u0", "u1", "u2"], round=1)
    assert len(server.tasks("majority test")) == 3
    with pytest.raises(LabellingPending, match="3 clips still need annotations.*majority test"):
        oracle.label(["u0", "u1", "u2"], round=1)

    server.annotate("a1@example.com", tasks["u0"]["id"], "hap", {"arousal": 4.0})
    server.annotate("a2@example.com", tasks["u0"]["id"], "hap", {"arousal": 3.0})
    server.annotate("a1@example.com", tasks["u1"]["id"], "ang", {"arousal": 5.0})
    got = oracle.collect(["u0", "u1", "u2"], round=1)
    assert list(got.frame.index) == ["u0"] and sorted(got.pending) == ["u1", "u2"]  # u1 has one of two
    row = got.frame.loc["u0"]
    assert row["label"] == "hap" and row["arousal"] == 3.5 and row["soft_label"] is None
    assert row["annotator"] == "a1@example.com,a2@example.com"
    assert row["time"] == max(pd.Timestamp(a["updated_at"]) for a in _task_of(server, "majority test")["u0"]["annotations"])

    server.annotate("a2@example.com", tasks["u1"]["id"], "ang", {"arousal": 4.0})
    server.annotate("a1@example.com", tasks["u2"]["id"], "sad", {"arousal": 1.5})
    server.annotate("a2@example.com", tasks["u2"]["id"], "sad", {"arousal": 2.5})
    # a decided clip (already in the ledger) is not read again
    got = oracle.collect(["u0", "u1", "u2"], round=1, decided={"u0"})
    assert "u0" not in got.frame.index and "u0" not in got.pending and len(server.tasks("majority test")) == 3
    frame = oracle.label(["u0", "u1", "u2"], round=1)
    assert frame["label"].tolist() == ["hap", "ang", "sad"] and frame["arousal"].tolist() == [3.5, 4.5, 2.0]
    got = oracle.collect(["u0", "u1", "u2"], round=1)
    assert got.agreement["multi_annotated"] == 3 and got.agreement["pairwise"] == 1.0
    assert got.agreement["dimensions"]["arousal"]["mean_sd"] == pytest.approx(0.5)  # every pair 1 apart
    assert 0 < got.agreement["dimensions"]["arousal"]["alpha"] < 1
    first = oracle.save(oracle.collect(["u0", "u1", "u2"], round=1, decided={"u1", "u2"}))
    assert first["multi_annotated"] == 1
    merged = oracle.save(oracle.collect(["u0", "u1", "u2"], round=1, decided={"u0"}))  # a later read: merged
    saved = pd.read_parquet(tmp_path / "round" / "label_studio" / "annotations.parquet")
    assert len(saved) == 6 and set(saved["annotator"]) == {"a1@example.com", "a2@example.com"}
    assert saved["annotation"].is_unique and merged["multi_annotated"] == 3  # u0 from the first read, u1, u2
    assert json.loads((tmp_path / "round" / "label_studio" / "agreement.json").read_text())["pairwise"] == 1.0


def test_pre_annotations_carry_the_model_guess_and_annotators_see_it(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "pre-annotation test", dimensions=["arousal"])
    guesses = pd.DataFrame({"label": ["hap", "sad"], "score": [0.7, 0.55], "arousal": [3.94, 9.0]},
                           index=pd.Index(["u0", "u1"], name="utt_id"))
    oracle.collect(["u0", "u1", "u2"], round=1, guesses=guesses, model_version="run 1a2b round 0")
    tasks = _task_of(server, "pre-annotation test")
    project = LabelStudioClient(server.url, server.token).find_project("pre-annotation test")
    assert project["model_version"] == "run 1a2b round 0"
    (p0,), (p1,) = tasks["u0"]["predictions"], tasks["u1"]["predictions"]
    assert p0["model_version"] == "run 1a2b round 0" and p0["score"] == pytest.approx(0.7)
    by_name = {r["from_name"]: r["value"] for r in p0["result"]}
    assert by_name == {"emotion": {"choices": ["hap"]}, "arousal": {"number": 3.9}}  # the slider's step
    assert {r["from_name"]: r["value"] for r in p1["result"]}["arousal"] == {"number": 5.0}  # clipped to range
    assert tasks["u2"]["predictions"] == []  # no guess, no prediction
    # what an annotator's "Label" button opens carries the guess
    served = server.next_task("pre@example.com", project["id"])
    assert served is not None and served["data"]["utt_id"] in {"u0", "u1", "u2"}
    want = {"u0": ["hap"], "u1": ["sad"], "u2": None}[served["data"]["utt_id"]]
    got = [r["value"]["choices"] for p in served.get("predictions") or [] for r in p["result"]
           if r["from_name"] == "emotion"]
    assert got == ([want] if want else [])
    # A rerun finds the tasks and adds nothing; the annotations still count as people's, not the model's.
    server.annotate("pre@example.com", tasks["u0"]["id"], "neu", numbers={"arousal": 2.0})
    got = oracle.collect(["u0", "u1", "u2"], round=1, guesses=guesses, model_version="run 1a2b round 0")
    assert len(server.tasks("pre-annotation test")) == 3
    assert got.frame.loc["u0", "label"] == "neu" and set(got.pending) == {"u1", "u2"}


def test_pre_annotate_off_sends_bare_clips(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "no pre-annotation test", pre_annotate=False)
    guesses = pd.DataFrame({"label": ["hap"], "score": [0.9]}, index=pd.Index(["u0"], name="utt_id"))
    oracle.collect(["u0", "u1"], round=1, guesses=guesses, model_version="run round 0")
    assert all(t["predictions"] == [] for t in server.tasks("no pre-annotation test"))
    assert not LabelStudioClient(server.url, server.token).find_project("no pre-annotation test").get("model_version")


def test_disagreement_requeue_then_drop_and_skips(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "requeue test", annotators=2, max_annotations=3)
    ids = ["u0", "u1", "u2"]
    oracle.collect(ids, round=0)
    tasks = _task_of(server, "requeue test")
    for uid, (first, second) in {"u0": ("ang", "hap"), "u1": ("neu", "neu")}.items():
        server.annotate("a1@example.com", tasks[uid]["id"], first)
        server.annotate("a2@example.com", tasks[uid]["id"], second)
    server.annotate("a1@example.com", tasks["u2"]["id"], skip=True)
    server.annotate("a2@example.com", tasks["u2"]["id"], skip=True)
    got = oracle.collect(ids, round=0)
    # u0 ties: one more annotation is asked for (the task goes back into the queue)
    assert got.pending == ["u0"] and list(got.frame.index) == ["u1"]
    assert got.dropped == {"u2": "skipped by every annotator (2)"}
    assert _task_of(server, "requeue test")["u0"]["overlap"] == 3
    # ... and the server's queue serves it to the next annotator (u1 is finished, u2's skips count as done)
    nxt = server.next_task("a3@example.com", oracle.project()["id"])
    assert nxt is not None and nxt["id"] == tasks["u0"]["id"]
    server.annotate("a3@example.com", tasks["u0"]["id"], "sad")
    got = oracle.collect(ids, round=0)  # still a three-way tie at the cap: dropped
    assert not got.pending and "annotators disagree (ang 33%, hap 33%, sad 33%)" in got.dropped["u0"]

    drop = _oracle(server, clips, tmp_path, "drop test", annotators=2, on_disagreement="drop")
    drop.collect(["u3"], round=0)
    task = _task_of(server, "drop test")["u3"]["id"]
    server.annotate("a1@example.com", task, "ang")
    server.annotate("a2@example.com", task, "sad")
    assert "annotators disagree" in drop.collect(["u3"], round=0).dropped["u3"]

    soft = _oracle(server, clips, tmp_path, "soft test", annotators=3, aggregate="soft", min_agreement=0.7,
                   on_disagreement="soft")
    soft.collect(["u4"], round=0)
    task = _task_of(server, "soft test")["u4"]["id"]
    for who, choice in (("a1@example.com", "sad"), ("a2@example.com", "ang"), ("a3@example.com", "sad")):
        server.annotate(who, task, choice)
    row = soft.collect(["u4"], round=0).frame.loc["u4"]
    assert row["label"] == "sad" and json.loads(row["soft_label"]) == pytest.approx({"ang": 1 / 3, "sad": 2 / 3})


def test_bad_annotations_are_refused_naming_the_task(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "bad test", dimensions=["valence"])
    ids = ["u0", "u1", "u2", "u3"]
    oracle.collect(ids, round=2)
    tasks = _task_of(server, "bad test")
    server.annotate("a1@example.com", tasks["u0"]["id"], "fear", {"valence": 3.0})  # unknown choice
    server.annotate("a1@example.com", tasks["u1"]["id"], None, {"valence": 3.0})  # empty choice
    server.annotate("a1@example.com", tasks["u2"]["id"], "hap", {"valence": 9.0})  # out of range
    server.annotate("a1@example.com", tasks["u3"]["id"], "hap", {"valence": 2.0})  # fine
    with pytest.raises(LabelImportError) as err:
        oracle.collect(ids, round=2)
    text = str(err.value)
    assert f"task {tasks['u0']['id']} (clip 'u0'" in text and "unknown choice 'fear'" in text
    assert f"task {tasks['u1']['id']} (clip 'u1'" in text and "no emotion chosen" in text
    assert "valence 9 outside [1, 5]" in text and "'u3'" not in text
    # a duplicated task: the same clip imported twice for one round
    project = oracle.project()["id"]
    oracle.client.import_tasks(project, [{"data": {**tasks["u3"]["data"]}}])
    with pytest.raises(LabelImportError, match="clip 'u3' has 2 tasks in round 2"):
        oracle.collect(ids, round=2)


def test_local_files_audio_and_personal_access_token(server, clips, tmp_path, clips_root):
    import requests

    pat = requests.post(f"{server.url}/api/token/", headers={"Authorization": f"Token {server.token}"},
                        timeout=30).json()["token"]
    client = LabelStudioClient(server.url, pat)  # a JWT: exchanged for a Bearer access token
    assert client.whoami()["email"] == "admin@example.com"
    cfg = LabelStudioConfig(url=server.url, project="local files test", audio="local_files",
                            local_files_root=str(clips_root))
    oracle = LabelStudioOracle(cfg, LABELS, [], (1.0, 5.0), clips, tmp_path, "t", client=client, log=lambda m: None)
    oracle.collect(["u5"], round=0)
    task = _task_of(server, "local files test")["u5"]
    assert task["data"]["audio"] == "/data/local-files/?d=pool/audio/clip_5.wav"
    audio = server.admin().get(server.url + task["data"]["audio"], timeout=30)
    assert audio.status_code == 200 and audio.content == Path(clips.path[5]).read_bytes()
    with pytest.raises(LabelStudioError, match="HTTP 401"):
        LabelStudioClient(server.url, "not-a-token").whoami()


def test_missing_token_names_the_variable(clips, tmp_path, monkeypatch):
    monkeypatch.delenv("SER_TEST_LS_TOKEN", raising=False)
    cfg = LabelStudioConfig(url="http://127.0.0.1:9", api_key_env="SER_TEST_LS_TOKEN")
    oracle = LabelStudioOracle(cfg, LABELS, [], (1.0, 5.0), clips, tmp_path, "t", log=lambda m: None)
    with pytest.raises(ConfigError, match="SER_TEST_LS_TOKEN"):
        oracle.project()


# ------------------------------------------------------------------------------ the whole loop, killed and resumed
def _after_args(pool_dir, out, server):
    return [sys.executable, "-m", "jobs.after", f"pool_dir={pool_dir}", f"output_dir={out}",
            *TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
            "model.adapter.r=4", "model.adapter.alpha=8", "model.head_hidden=16", "train.optim.epochs=1",
            "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0", "train.early_stopping_patience=0",
            "active.budget_fractions=[0.25,0.5]", "active.initial=random", "active.oracle=label_studio",
            f"active.label_studio.url={server.url}", "active.label_studio.project=loop test",
            "active.label_studio.annotators=2", "active.label_studio.aggregate=soft", "active.label_studio.wait=true",
            "active.label_studio.poll_seconds=1"]


def _annotate_round(server, truth, round_, skip=()):
    done = 0
    for task in server.tasks("loop test"):
        uid = task["data"]["utt_id"]
        if task["data"]["ser_round"] != round_ or task["annotations"]:
            continue
        for who in ("a1@example.com", "a2@example.com"):
            server.annotate(who, task["id"], None if uid in skip else truth[uid], skip=uid in skip)
        done += 1
    return done


@pytest.mark.failure_model
def test_after_job_waits_is_killed_and_resumes(server, ray_local, demo_pool, tmp_path, monkeypatch, capsys,
                                               caplog):
    """jobs.after with active.oracle=label_studio and wait=true: killed while it polls, rerun, finished."""
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    out = tmp_path / "run"
    # Each driver starts a Ray of its own: a killed driver leaves nothing behind on the tests' shared Ray.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), LABEL_STUDIO_API_KEY=server.token)
    first = tmp_path / "first.log"
    # killed while it waits for the initial set's annotations
    kill_when(_after_args(demo_pool.pool_dir, out, server), lambda: "waiting for" in first.read_text(), cwd=REPO,
              env=env, log_file=first)
    n_initial = len(server.tasks("loop test"))
    assert n_initial > 0
    # the people annotate; one clip is skipped by both annotators and is dropped
    skipped = sorted(t["data"]["utt_id"] for t in server.tasks("loop test"))[:1]
    assert _annotate_round(server, truth, 0, skip=skipped) == n_initial
    # The rerun, in this process on the session's Ray (it is not killed), while "people" annotate round 1's
    # tasks as the job creates them.
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    done = threading.Event()

    def annotators():
        while not done.is_set():
            _annotate_round(server, truth, 1)
            done.wait(1.0)

    helper = threading.Thread(target=annotators, daemon=True)
    helper.start()
    try:
        cfg = load_config(AfterJobConfig, None, _after_args(demo_pool.pool_dir, out, server)[3:])
        reports = run_after(cfg)
    finally:
        done.set()
        helper.join(30)
    text = capsys.readouterr().out
    assert reports is not None and [r.round for r in reports] == [0, 1], text[-3000:]
    assert server.token not in text + (tmp_path / "first.log").read_text()
    _assert_token_nowhere(server.token, out, text, caplog.text, (tmp_path / "first.log").read_text())
    tasks = server.tasks("loop test")
    keys = [(t["data"]["utt_id"], t["data"]["ser_round"]) for t in tasks]
    assert len(keys) == len(set(keys)), "a task was created twice"
    assert sum(k[1] == 0 for k in keys) == n_initial  # the rerun made no new initial tasks
    # Pre-annotations: round 1's tasks carry round 0's model guess, stamped with the run and round, and that
    # version is the project's (so annotators see it); the initial set had no model to guess with.
    versions = {p["model_version"] for t in tasks if t["data"]["ser_round"] == 1 for p in t["predictions"]}
    assert len(versions) == 1 and next(iter(versions)).endswith(" round 0")
    assert all(len(t["predictions"]) == (t["data"]["ser_round"] == 1) for t in tasks)
    assert LabelStudioClient(server.url, server.token).find_project("loop test")["model_version"] in versions
    ledger = pd.read_parquet(out / "labels" / "ledger.parquet")
    assert set(ledger["oracle"]) == {"label_studio"} and set(ledger["round"]) == {0, 1}
    assert (ledger["label"] == ledger["utt_id"].map(truth)).all()
    assert set(ledger["annotator"]) == {"a1@example.com,a2@example.com"}
    # aggregate=soft: every clip carries its vote shares (unanimous here), and the rounds trained on them
    assert [json.loads(s) for s in ledger["soft_label"]] == [{t: 1.0} for t in ledger["label"]]
    assert "training on soft labels" in text
    assert not set(skipped) & set(ledger["utt_id"])
    dropped = pd.read_parquet(out / "labels" / "dropped.parquet")
    assert dropped["utt_id"].tolist() == skipped and dropped["round"].tolist() == [0]
    # the budget counts the dropped clip: 25 % then 50 % of the training clips were sent to annotators
    train_n = int((manifest["split"] == "train").sum())
    assert len(ledger) + 1 == round(0.5 * train_n)
    assert json.loads((out / "rounds" / "initial" / "label_studio" / "agreement.json").read_text())["pairwise"] == 1.0
    with pytest.raises(ConfigError):  # a typo in the policy is refused before anything runs
        LabelStudioConfig(on_disagreement="vote")


@pytest.mark.ray
def test_annotators_of_a_segment_pool_get_the_segment_not_the_recording(server, tmp_path, ray_local, monkeypatch):
    """A pool of segments of long recordings: each task's audio is the segment's own clip (written from the pool's
    audio), and the task shows the recording, channel and times; the annotation goes to the ledger."""
    from ser_models.active.handover import LabelHandover
    from ser_models.active.loop_config import ActiveConfig
    from ser_models.data import Pool, decode_pool_audio
    from ser_models.data.ledger import LabelLedger
    from ser_models.io import storage_path
    from ser_models.testing import build_segment_pool

    pool = Pool.open(build_segment_pool(tmp_path / "segpool"))
    meta = pool.metadata(columns=["utt_id", "path", "duration"], split="train")
    ids = sorted(meta["utt_id"])[:3]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    active = ActiveConfig(oracle="label_studio",
                          label_studio=LabelStudioConfig(url=server.url, project="segments test"))
    out = tmp_path / "run"
    labels = ["neutral", "happy", "angry", "sad"]
    handover = LabelHandover(pool, storage_path(out), LabelLedger(out / "labels" / "ledger.parquet"), active, labels,
                             [], (1.0, 5.0), TrainingClips.read(pool), log=lambda m: None)
    with pytest.raises(LabellingPending):
        handover.label(ids, 0, 0)
    tasks = _task_of(server, "segments test")
    assert sorted(tasks) == ids
    rows = pool.metadata(columns=["utt_id", "path", "recording", "channel", "start", "end", "audio", "audio_format"],
                         where={"utt_id": ids}).set_index("utt_id")
    for uid, task in tasks.items():
        data = task["data"]
        assert (data["recording"], data["channel"]) == (rows.at[uid, "recording"], rows.at[uid, "channel"])
        assert (data["start"], data["end"]) == pytest.approx((rows.at[uid, "start"], rows.at[uid, "end"]))
        assert data["source_path"] == rows.at[uid, "path"]
        assert data["path"].endswith(f"clips/{safe_file_name(uid, '.wav')}")
        served = server.admin().get(server.url + data["audio"], timeout=30)
        assert served.status_code == 200
        wav, sr = sf.read(io.BytesIO(served.content), dtype="float32")
        assert sr == 16000
        np.testing.assert_allclose(wav, decode_pool_audio(rows.at[uid, "audio"], rows.at[uid, "audio_format"]),
                                   atol=1 / 32768)
    for task in tasks.values():
        server.annotate("a1@example.com", task["id"], "sad")
    handover.label(ids, 0, 0)
    assert handover.ledger.labels() == {uid: "sad" for uid in ids}


# ---------------------------------------------------------------- a pool with no labels: evaluation sets first
ZERO = [*TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
        "model.adapter.kind=frozen", "model.pooling=mean", "model.head_hidden=0", "model.featurizer_layer=1",
        "train.solver=lbfgs", "active.feature_cache=on", "active.initial=random", "active.budget_labels=[8,14]",
        "model.labels=[neutral,happy,angry,sad]", "active.evaluation.test_size=10", "active.evaluation.dev_size=5",
        "active.oracle=label_studio", "active.label_studio.project=zero"]


@pytest.fixture(scope="module")
def bare_pool(demo_pool, tmp_path_factory):
    """The demo corpus prepared with no label and no split column; returns (pool dir, truth)."""
    from ser_models.data import PoolConfig, prepare_pool

    root = tmp_path_factory.mktemp("ls_zero_labels")
    manifest = pd.read_csv(demo_pool.manifest)
    bare = manifest.drop(columns=["label", "split"])
    bare["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in bare["path"]]
    bare.to_csv(root / "manifest.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(root / "manifest.csv"), output_dir=str(root / "pool"), labels=[]))
    return root / "pool", dict(zip(manifest["utt_id"], manifest["label"]))


def _annotate(server, project, truth, skip=()) -> int:
    done = 0
    for task in server.tasks(project):
        if task["annotations"]:
            continue
        uid = task["data"]["utt_id"]
        server.annotate("a1@example.com", task["id"], None if uid in skip else truth[uid], skip=uid in skip)
        done += 1
    return done


def test_evaluation_sets_get_their_own_project_and_the_loop_resumes_after_they_are_annotated(
        server, bare_pool, tmp_path, monkeypatch, ray_local):
    from ser_models.active.loop import ActiveLearningLoop
    from ser_models.data import Pool
    from ser_models.data.ledger import LabelLedger

    pool_dir, truth = bare_pool
    out = tmp_path / "run"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    cfg = load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *ZERO,
                                             f"active.label_studio.url={server.url}"])

    def run():
        return ActiveLearningLoop(Pool.open(pool_dir), out, cfg.model, cfg.train, cfg.scaling, cfg.active,
                                  verbose=False).run()

    with pytest.raises(LabellingPending, match=r"the evaluation sets: 1\d clips still need annotations in Label "
                                               r"Studio project 'zero \(evaluation\)'"):
        run()
    drawn = pd.read_parquet(out / "rounds" / "evaluation" / "selection.parquet")
    tasks = server.tasks("zero (evaluation)")
    assert sorted(t["data"]["utt_id"] for t in tasks) == sorted(drawn["utt_id"])
    assert all(t["data"]["ser_purpose"] == "evaluation" and not t["predictions"] for t in tasks)
    assert LabelStudioClient(server.url, server.token).find_project("zero") is None  # no round asked yet
    # the annotators finish the evaluation sets, skipping one test clip: it leaves the test set
    skipped = drawn.loc[drawn.purpose == "test", "utt_id"].iloc[0]
    assert _annotate(server, "zero (evaluation)", truth, skip={skipped}) == len(drawn)
    with pytest.raises(LabellingPending, match="round 0: 8 clips still need annotations.*'zero'"):
        run()
    ledger = LabelLedger(out / "labels" / "ledger.parquet")
    assert ledger.counts() == {"train": 0, "test": int((drawn.purpose == "test").sum()) - 1,
                               "dev": int((drawn.purpose == "dev").sum())}
    assert not set(t["data"]["utt_id"] for t in server.tasks("zero")) & set(drawn["utt_id"])
    _annotate(server, "zero", truth)
    with pytest.raises(LabellingPending, match="round 1: 6 clips"):
        run()  # trains round 0 on the 8 training labels, measured on the labelled evaluation clips
    # round 1's tasks carry round 0's guess; the evaluation project's never do
    assert all(t["predictions"] for t in server.tasks("zero") if t["data"]["ser_round"] == 1)
    _annotate(server, "zero", truth)
    reports = run()
    counts = LabelLedger(out / "labels" / "ledger.parquet").counts()
    assert [r.labelled for r in reports] == [8, 14] and counts["train"] == 14
    assert all(r.test["n"] == counts["test"] and r.dev["n"] == counts["dev"] for r in reports)
    dropped = pd.read_parquet(out / "labels" / "dropped.parquet")
    assert dropped["utt_id"].tolist() == [skipped]  # spent no training budget: the rounds labelled 8 and 14
    rows = LabelLedger(out / "labels" / "ledger.parquet").labelled()
    assert (rows["label"] == rows["utt_id"].map(truth)).all() and set(rows["oracle"]) == {"label_studio"}
    assert len(server.tasks("zero (evaluation)")) == len(drawn)  # nothing asked twice


@pytest.mark.failure_model
def test_after_job_killed_while_waiting_for_evaluation_labels_resumes(server, bare_pool, tmp_path, monkeypatch,
                                                                      capsys):
    """jobs.after (wait=true) killed while it polls for the evaluation sets' annotations; the rerun finds the
    tasks it made, takes the annotations people gave meanwhile, and goes on to ask for the initial set."""
    pool_dir, truth = bare_pool
    out = tmp_path / "run"
    args = [f"pool_dir={pool_dir}", f"output_dir={out}", *ZERO, f"active.label_studio.url={server.url}",
            "active.label_studio.project=zero kill", "active.label_studio.wait=true",
            "active.label_studio.poll_seconds=1", "active.label_studio.wait_timeout_s=5"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), LABEL_STUDIO_API_KEY=server.token)
    log = tmp_path / "first.log"
    kill_when([sys.executable, "-m", "jobs.after", *args], lambda: "waiting for" in log.read_text(), cwd=REPO,
              env=env, log_file=log)
    drawn = pd.read_parquet(out / "rounds" / "evaluation" / "selection.parquet")
    assert "evaluation sets drawn from the training split" in log.read_text()
    assert len(server.tasks("zero kill (evaluation)")) == len(drawn)
    assert not (out / "labels" / "ledger.parquet").exists()
    _annotate(server, "zero kill (evaluation)", truth)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    # polls 5 s for the initial set's annotations, then stops
    assert run_after(load_config(AfterJobConfig, None, args)) is None
    assert "round 0: 8 clips still need annotations" in capsys.readouterr().out
    rows = pd.read_parquet(out / "labels" / "ledger.parquet")
    assert dict(zip(rows["utt_id"], rows["purpose"])) == dict(zip(drawn["utt_id"], drawn["purpose"]))
    assert len(server.tasks("zero kill (evaluation)")) == len(drawn) and len(server.tasks("zero kill")) == 8


# ------------------------------------------------------------------------------------------- safety of the oracle
def _assert_token_nowhere(token: str, output_dir: Path, *logs: str) -> None:
    """The token's bytes are in no file under ``output_dir`` (Parquet, JSON, logs, checkpoints alike) and in no
    captured log text; the run must have written files for this to mean anything."""
    files = [p for p in output_dir.rglob("*") if p.is_file()]
    assert len(files) > 5, f"the run wrote almost nothing under {output_dir}: {files}"
    leaked = [str(p) for p in files if token.encode() in p.read_bytes()]
    assert not leaked, f"the Label Studio token is written in {leaked}"
    assert all(token not in text for text in logs), "the Label Studio token is in the run's log"


def test_annotations_per_task_come_from_the_config_not_the_server(server, clips, tmp_path):
    oracle = _oracle(server, clips, tmp_path, "overlap test", annotators=2, max_annotations=3)
    oracle.collect(["u0", "u1"], round=0)
    project = oracle.project()["id"]
    # Someone lowers "Annotations per task" in the project's settings, and edits one task by hand.
    admin = server.admin()
    admin.patch(f"{server.url}/api/projects/{project}/", json={"maximum_annotations": 1}, timeout=30).raise_for_status()
    tasks = _task_of(server, "overlap test")
    admin.patch(f"{server.url}/api/tasks/{tasks['u1']['id']}", json={"overlap": 1}, timeout=30).raise_for_status()
    assert _task_of(server, "overlap test")["u1"]["overlap"] == 1
    server.annotate("a1@example.com", tasks["u0"]["id"], "hap")
    server.annotate("a1@example.com", tasks["u1"]["id"], "sad")
    # One annotation is not enough for annotators=2: both stay pending, and the server asks for 2 again.
    got = oracle.collect(["u0", "u1"], round=0)
    assert sorted(got.pending) == ["u0", "u1"] and got.frame.empty
    assert {uid: t["overlap"] for uid, t in _task_of(server, "overlap test").items()} == {"u0": 2, "u1": 2}
    # ... so the server's queue serves them to a second annotator
    assert server.next_task("a2@example.com", project) is not None
    server.annotate("a2@example.com", tasks["u0"]["id"], "hap")
    server.annotate("a2@example.com", tasks["u1"]["id"], "ang")
    got = oracle.collect(["u0", "u1"], round=0)
    assert list(got.frame.index) == ["u0"] and got.pending == ["u1"]  # u1 tied: requeued for a third
    task = _task_of(server, "overlap test")["u1"]
    assert task["overlap"] == 3 and task["data"]["ser_annotations"] == 3 and task["data"]["utt_id"] == "u1"
    # A server that raised the overlap on its own does not make the oracle wait for more than it asked.
    admin.patch(f"{server.url}/api/tasks/{tasks['u0']['id']}", json={"overlap": 5}, timeout=30).raise_for_status()
    server.annotate("a3@example.com", tasks["u1"]["id"], "ang")
    got = oracle.collect(["u0", "u1"], round=0)
    assert sorted(got.frame.index) == ["u0", "u1"] and not got.pending and got.frame.loc["u1", "label"] == "ang"
    assert _task_of(server, "overlap test")["u0"]["overlap"] == 2

