"""A Lhotse manifest imported by ``jobs.convert`` goes through ``jobs.prepare_pool`` on a real local Ray: each
supervision is a pool row with its recording, channel, times, speaker and label, and its audio is that span."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

lhotse = pytest.importorskip("lhotse")

SR = 16000


@pytest.mark.ray
def test_an_imported_lhotse_manifest_builds_a_pool_of_its_supervisions(ray_local, tmp_path):
    from jobs.convert import main as convert_main
    from ser_models.data import Pool, PoolConfig, decode_pool_audio, prepare_pool

    t = np.arange(3 * SR) / SR
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 440 * t)], 1).astype(np.float32)
    sf.write(tmp_path / "call.wav", stereo, SR, subtype="FLOAT")
    recs = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(tmp_path / "call.wav", recording_id="call")])
    S = lhotse.SupervisionSegment
    lhotse.SupervisionSet.from_segments([
        S("agent-1", "call", 0.5, 1.0, channel=0, speaker="agent", custom={"emotion": "happy", "split": "train"}),
        S("caller-1", "call", 1.0, 1.5, channel=1, speaker="caller", custom={"emotion": "angry", "split": "train"}),
    ]).to_file(tmp_path / "call_supervisions.jsonl.gz")
    recs.to_file(tmp_path / "call_recordings.jsonl.gz")
    convert_main([f"input={tmp_path / 'call_supervisions.jsonl.gz'}", f"output={tmp_path / 'manifest.parquet'}"])
    cfg = PoolConfig(manifest=str(tmp_path / "manifest.parquet"), output_dir=str(tmp_path / "pool"), labels=[],
                     batch_size=2, num_workers=1, audio_format="pcm16")
    summary = prepare_pool(cfg)
    assert summary.kept == 2 and summary.quarantined == 0
    rows = Pool.open(cfg.output_dir).metadata(columns=["utt_id", "recording", "channel", "start", "end", "label",
                                                       "audio", "audio_format"]).set_index("utt_id")
    caller = rows.loc["caller-1"]
    assert (caller.recording, caller.channel, caller.start, caller.end, caller.label) == ("call", 1, 1.0, 2.5, "angry")
    wav = decode_pool_audio(caller.audio, caller.audio_format)
    assert len(wav) == int(1.5 * SR)
    # the caller's channel (440 Hz), not the agent's: the span was cut from channel 1
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * SR / len(wav) - 440) < 5


@pytest.mark.ray
def test_a_labelled_ledger_exports_to_lhotse_nemo_and_hf_and_imports_back(ray_local, tmp_path):
    """Labels given in the ledger (not in the manifest) go out with each clip's file, channel and times, and an
    import of each export gives those rows back."""
    import pandas as pd

    from jobs.convert import main as convert_main
    from ser_models.data import PoolConfig, prepare_pool
    from ser_models.data.ledger import LabelLedger
    from ser_models.data.manifest import read_manifest

    t = np.arange(3 * SR) / SR
    sf.write(tmp_path / "call.wav", np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1)
             .astype(np.float32) * 0.3, SR, subtype="PCM_16")
    pd.DataFrame({"utt_id": ["u1", "u2", "u3"], "path": [str(tmp_path / "call.wav")] * 3,
                  "recording": ["call"] * 3, "channel": [0, 1, -1], "start": [0.0, 1.0, 1.5],
                  "end": [1.0, 2.0, 2.75], "speaker": ["a", "b", None]}).to_parquet(tmp_path / "m.parquet")
    prepare_pool(PoolConfig(manifest=str(tmp_path / "m.parquet"), output_dir=str(tmp_path / "pool"), labels=[],
                            batch_size=3, num_workers=1, audio_format="pcm16"))
    run = tmp_path / "run"
    LabelLedger(run / "labels" / "ledger.parquet").append(0, ["u1", "u3"], ["happy", "sad"], "file:labels.csv")
    LabelLedger(run / "labels" / "ledger.parquet").append(0, ["u2"], ["angry"], "file:labels.csv", purpose="test")
    cols = ["utt_id", "path", "recording", "channel", "start", "end", "label"]
    want = read_manifest(tmp_path / "m.parquet").set_index("utt_id")
    want["label"] = pd.Series({"u1": "happy", "u2": "angry", "u3": "sad"}, dtype=object)
    want = want.reset_index()[cols]
    for to, out, extra in (("lhotse", "lh", []), ("nemo", "n.jsonl", []), ("hf", "hf", ["id_field=utt_id"])):
        convert_main([f"input={run}", f"pool_dir={tmp_path / 'pool'}", f"output={tmp_path / out}", f"to={to}"])
        source = tmp_path / out / "supervisions.jsonl" if to == "lhotse" else tmp_path / out
        convert_main([f"input={source}", f"output={tmp_path / (to + '_back.parquet')}", *extra])
        back = read_manifest(tmp_path / (to + "_back.parquet"))
        got = back[cols].sort_values("utt_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=f"{to} round trip")
        purpose = back.set_index("utt_id")["purpose"].to_dict()
        assert purpose == {"u1": "train", "u2": "test", "u3": "train"}, to
