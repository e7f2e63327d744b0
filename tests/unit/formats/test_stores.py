"""Imports and exports on each store: a local folder and a real S3 endpoint (moto's server on 127.0.0.1)."""

from __future__ import annotations

import json

from ser_models import io
from ser_models.data.manifest import read_manifest
from ser_models.formats.convert import ConvertConfig, convert

QUIET = {"log": lambda s: None}


def test_nemo_in_and_lhotse_out_with_manifests_and_audio_on_the_store(store, audio):
    with open(audio["stereo"], "rb") as fh:
        io.write_bytes_atomic(io.join(store, "wavs", "call.wav"), fh.read())
    lines = [{"audio_filepath": "wavs/call.wav", "offset": 0.5, "duration": 1.0, "label": "happy", "channel": 1},
             {"audio_filepath": "wavs/gone.wav", "offset": 0.0, "duration": 1.0, "label": "sad"}]
    io.write_bytes_atomic(io.join(store, "nemo.jsonl"), "".join(json.dumps(x) + "\n" for x in lines).encode())
    frame, report = convert(ConvertConfig(input=io.join(store, "nemo.jsonl"), output=io.join(store, "m.parquet")),
                            **QUIET)
    assert report.taken == 1 and report.reasons() == {"missing_file": 1}
    m = read_manifest(io.join(store, "m.parquet"))
    assert m.loc[0, "path"] == io.join(store, "wavs", "call.wav") and m.loc[0, "channel"] == 1
    convert(ConvertConfig(input=io.join(store, "m.parquet"), output=io.join(store, "lh"), to="lhotse"), **QUIET)
    recs = [json.loads(x) for x in io.read_bytes(io.join(store, "lh", "recordings.jsonl")).decode().splitlines()]
    assert recs[0]["num_samples"] == 48000 and recs[0]["channel_ids"] == [0, 1]  # from the file's header
    sups = [json.loads(x) for x in io.read_bytes(io.join(store, "lh", "supervisions.jsonl")).decode().splitlines()]
    assert (sups[0]["channel"], sups[0]["start"], sups[0]["duration"]) == (1, 0.5, 1.0)
    assert io.exists(io.join(store, "m.refused.csv"))
