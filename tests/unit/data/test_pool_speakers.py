"""The speaker a clip is grouped under: its own, or for a segment without one its stream (recording + channel)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from ser_models.data.speakers import fill_speaker_keys, speaker_key, speaker_sources
from ser_models.encoders.speaker_norm import SpeakerStatistics
from ser_models.encoders.speaker_norm import speaker_key as norm_speaker_key


@pytest.mark.parametrize(
    ("speaker", "recording", "channel", "key"),
    [
        ("spk1", "call7", 0, "spk1"),  # a named speaker wins
        (" spk1 ", None, -1, "spk1"),
        (7, None, None, "7"),
        (None, "call7", 0, "call7#ch0"),  # one stream of a split call = one speaker
        (None, "call7", 1, "call7#ch1"),
        ("", "call7", 1, "call7#ch1"),
        (math.nan, "call7", -1, "call7#ch-1"),  # channels averaged: the mixed stream
        (None, "call7", None, "call7#ch-1"),
        (None, "call7", math.nan, "call7#ch-1"),
        (None, None, 0, None),  # a plain clip without a speaker: unknown (pool statistics)
        (None, "  ", 0, None),
        (math.nan, math.nan, math.nan, None),
    ],
)
def test_speaker_key(speaker, recording, channel, key):
    assert speaker_key(speaker, recording, channel) == key


def test_speaker_norm_uses_the_same_definition():
    assert norm_speaker_key is speaker_key
    stats = SpeakerStatistics(speakers=["call7#ch0", "spk1"], counts=None, mean=None, std=None, pool_mean=None,
                              pool_std=None, pool_clips=0, shrink_clips=0.0)
    assert stats.index(["spk1", "call7#ch0", "call7#ch1", None]).tolist() == [1, 0, -1, -1]


def test_fill_speaker_keys_changes_only_streams_without_a_speaker():
    table = pa.table({"utt_id": ["a", "b", "c", "d"], "speaker": ["s1", None, None, " "],
                      "recording": ["r1", "r1", None, "r2"], "channel": pa.array([0, 1, -1, -1], pa.int32())})
    out = fill_speaker_keys(table)
    assert out.column("speaker").to_pylist() == ["s1", "r1#ch1", None, "r2#ch-1"]
    assert out.column_names == table.column_names and out.column("utt_id").equals(table.column("utt_id"))
    without = table.drop_columns(["recording"])
    assert fill_speaker_keys(without) is without  # nothing to derive from
    assert speaker_sources(["utt_id", "speaker"]) == ["recording", "channel"] and speaker_sources(["utt_id"]) == []
