"""Hostile ids through the whole path people see: manifest -> pool -> annotator clips -> to_label.csv -> import.

Each id is either refused when the manifest is read (with its row named) or carried through so that no file is
written outside the run folder, no two ids share a clip, a planted ``.wav`` is never taken as a clip, and every
label comes back on its own id.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.active.handover import LabelHandover
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.training_clips import TrainingClips
from ser_models.data import Pool, PoolConfig, decode_pool_audio, prepare_pool, read_manifest
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LabellingPending, ManifestError
from ser_models.formats.spreadsheet import FORMULA_STARTS, NEUTRALISED
from ser_models.io import storage_path

pytestmark = [pytest.mark.ray]
LABELS = ["happy", "sad"]
#: Valid ids (printable, at most 200 characters) that are dangerous as file names or spreadsheet cells.
KEPT = ["../x", "../../../../x", "/etc/x", "/", "..", "a/b", "Abc", "abc", "=cmd|' /C calc'!A0", "'=x", "+1",
        "@x", "-x", "%2e%2e", "%2e%2e%2fx", "a\u2215b", "a\uff0eb", "\uff0e\uff0e", "x" * 200]
#: Ids that cannot be ids: refused at ingest, each row named.
REFUSED = ["nul\x00x", "new\nline", "y" * 300, "tab\tx"]


def _outside_run(root) -> dict[str, bytes]:
    """Every file under ``root`` but outside the run folder ``root/a/b/run``: relative path -> bytes."""
    run = os.path.join(root, "a", "b", "run") + os.sep
    files = [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]
    return {os.path.relpath(p, root): open(p, "rb").read() for p in files if not p.startswith(run)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One 24-second recording; one 1-second segment per hostile id: ``all.jsonl`` (every id) and
    ``kept.jsonl`` (the valid ones)."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    t = np.arange(24 * 16000) / 16000
    sf.write(root / "ep.wav", (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)
                               ).astype(np.float32), 16000, subtype="PCM_16")
    rows = [{"utt_id": u, "path": "ep.wav", "start": float(k), "end": k + 1.0, "recording": "=rec",
             "group": "../g", "speaker": "a/b", "label": LABELS[k % 2], "split": "train"}
            for k, u in enumerate(KEPT + REFUSED)]
    (root / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:len(KEPT)]))
    return root


@pytest.fixture(scope="module")
def pool(corpus, ray_local):
    prepare_pool(PoolConfig(manifest=str(corpus / "kept.jsonl"), output_dir=str(corpus / "pool"), labels=LABELS,
                            max_duration=8.0, batch_size=8, num_workers=1))
    return Pool.open(corpus / "pool")


def test_unusable_ids_are_refused_at_ingest_with_their_rows(corpus):
    root = corpus
    with pytest.raises(ManifestError) as info:
        read_manifest(root / "all.jsonl")
    msg = str(info.value)
    assert f"column 'utt_id': {len(REFUSED)} value(s) cannot be ids" in msg
    for k in range(len(KEPT), len(KEPT) + len(REFUSED)):
        assert f"row {k + 1} " in msg
    assert f"row {len(KEPT)} " not in msg


def _handover(pool, out):
    return LabelHandover(pool, storage_path(out), LabelLedger(out / "labels" / "ledger.parquet"),
                         ActiveConfig(oracle="file"), LABELS, [], (1.0, 5.0), TrainingClips.read(pool),
                         log=lambda m: None)


def test_hostile_ids_stay_in_their_folder_and_come_back_on_their_own_clips(pool, tmp_path):
    assert sorted(pool.metadata(columns=["utt_id"])["utt_id"]) == sorted(KEPT)
    out = tmp_path / "a" / "b" / "run"
    clips = out / "rounds" / "round=000" / "clips"
    # What "../../../../x" joined onto the clips folder names: a .wav someone else left there.
    planted = tmp_path / "a" / "b" / "x.wav"
    planted.parent.mkdir(parents=True)
    sf.write(planted, np.zeros(8000, np.float32), 16000)
    before = _outside_run(tmp_path)

    handover = _handover(pool, out)
    with pytest.raises(LabellingPending, match="to_label.csv"):
        handover.label(KEPT, 0, 0)

    assert _outside_run(tmp_path) == before  # nothing outside the run folder was written or changed
    sheet_path = out / "rounds" / "round=000" / "to_label.csv"
    with open(sheet_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    # no text cell of the sheet reaches a spreadsheet as a formula (numbers such as channel -1 are numbers)
    assert not [c for r in rows[1:] for c in r if c.startswith(FORMULA_STARTS) and not _is_number(c)]
    assert {r[0] for r in rows[1:] if r[0].startswith("'")} == {"'" + u for u in KEPT if u.startswith(NEUTRALISED)}
    assert {r[head.index("recording")] for r in rows[1:]} == {"'=rec"}
    sheet = pd.read_csv(sheet_path, dtype=str, keep_default_na=False)
    paths = sheet["path"].tolist()
    # every clip is a distinct file, directly in the clips folder, distinct even ignoring case
    assert all(os.path.dirname(p) == str(clips) for p in paths)
    assert len({p.casefold() for p in paths}) == len(KEPT) == len(os.listdir(clips))
    assert str(planted) not in paths
    # each row's clip is its own segment's audio (the tone's phase differs from one second to the next)
    meta = pool.metadata(columns=["utt_id", "start", "audio", "audio_format"]).set_index("utt_id")
    for k, row in enumerate(rows[1:]):
        uid = _restored(row[0])
        clip, sr = sf.read(sheet.at[k, "path"], dtype="float32")
        assert sr == 16000 and float(sheet.at[k, "start"]) == meta.at[uid, "start"]
        np.testing.assert_allclose(clip, decode_pool_audio(meta.at[uid, "audio"], meta.at[uid, "audio_format"]),
                                   atol=1 / 32768)
    truth = meta["start"]

    # people label each clip by what they hear (its start second), save, and the run imports the sheet
    answer = {u: LABELS[int(truth[u]) % 2] for u in KEPT}
    label_col = head.index("label")
    for row in rows[1:]:
        row[label_col] = answer[_restored(row[0])]
    with open(sheet_path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    _handover(pool, out).label(KEPT, 0, 0)
    assert LabelLedger(out / "labels" / "ledger.parquet").labels() == answer
    assert _outside_run(tmp_path) == before  # nor by the import


def _restored(cell: str) -> str:
    """The id a neutralised cell stands for (the test's own reading of the documented rule)."""
    return cell[1:] if len(cell) > 1 and cell[0] == "'" and cell[1] in NEUTRALISED else cell


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
