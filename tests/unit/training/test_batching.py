import numpy as np
import pytest

from ser_models.data.clips import ClipSet, collect_clips
from ser_models.exceptions import TrainingError
from ser_models.training.batching import iterate_batches, plan_batches

LABELS = ["neutral", "happy", "angry", "sad"]


def _pcm(n, value=1000):
    return (np.full(n, value, dtype="<i2")).tobytes()


def _batch(ids, lengths, labels):
    return {"utt_id": np.asarray(ids, dtype=object), "audio": np.asarray([_pcm(n) for n in lengths], dtype=object),
            "audio_format": np.asarray(["pcm16"] * len(ids), dtype=object),
            "num_samples": np.asarray(lengths), "label": np.asarray(labels, dtype=object)}


def test_collect_clips_maps_labels_and_decodes_pcm():
    clips = collect_clips([_batch(["b", "a"], [1600, 3200], ["sad", "happy"])], LABELS)
    assert clips.ids == ["b", "a"]
    assert clips.labels.tolist() == [3, 1]
    assert [len(a) for a in clips.audio] == [1600, 3200]
    s = clips.sorted_by_id()
    assert s.ids == ["a", "b"] and s.labels.tolist() == [1, 3] and len(s.audio[0]) == 3200


def test_collect_clips_rejects_unknown_and_missing_labels():
    with pytest.raises(TrainingError, match="'x1'.*'bored'"):
        collect_clips([_batch(["x1"], [800], ["bored"])], LABELS)
    with pytest.raises(TrainingError, match="no label"):
        collect_clips([_batch(["x1"], [800], [None])], LABELS)
    clips = collect_clips([_batch(["x1"], [800], [None])], LABELS, require_labels=False)
    assert clips.labels.tolist() == [-1]


def test_plan_batches_covers_every_clip_once_and_buckets_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1000, 100000, size=203)
    batches = plan_batches(lengths, 8, np.random.default_rng(1), bucket_window=4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(203))
    assert max(len(b) for b in batches) == 8
    # bucketing: padding waste far below that of random batches
    waste = sum((lengths[b].max() - lengths[b]).sum() for b in batches)
    random_batches = np.array_split(np.random.default_rng(2).permutation(203), 26)
    random_waste = sum((lengths[b].max() - lengths[b]).sum() for b in random_batches)
    assert waste < 0.5 * random_waste
    # eval plan is sorted and deterministic
    ev = plan_batches(lengths, 8, None)
    assert np.all(np.diff(lengths[np.concatenate(ev)]) >= 0)


def test_iterate_batches_crops_and_pads():
    clips = ClipSet(ids=["a", "b"], labels=np.array([0, 1]),
                    audio=[np.ones(16000 * 5, np.int16), np.ones(8000, np.int16)])
    batches = list(iterate_batches(clips, 2, max_seconds=1.0, rng=np.random.default_rng(0)))
    assert len(batches) == 1
    b = batches[0]
    assert b.wavs.shape == (2, 16000)
    assert sorted(b.lengths.tolist()) == [8000, 16000]
    short = b.ids.index("b")
    assert float(b.wavs[short, 8000:].abs().sum()) == 0.0  # padding is zeros


def test_seeded_batches_repeat_exactly():
    clips = ClipSet(ids=[str(i) for i in range(20)], labels=np.zeros(20, int),
                    audio=[np.arange(1000 + 500 * i, dtype=np.int16) for i in range(20)])
    a = [b.ids for b in iterate_batches(clips, 4, 0.05, np.random.default_rng([0, 3]))]
    b = [b.ids for b in iterate_batches(clips, 4, 0.05, np.random.default_rng([0, 3]))]
    assert a == b


def test_collect_clips_reads_dimensions_and_names_a_clip_without_one():
    from ser_models.data.clips import collect_clips
    from ser_models.exceptions import TrainingError
    from ser_models.training.batching import make_batch

    pcm = (np.zeros(800, np.int16)).tobytes()
    batch = {"utt_id": np.array(["a", "b"], dtype=object), "audio": np.array([pcm, pcm], dtype=object),
             "audio_format": np.array(["pcm16"] * 2, dtype=object), "label": np.array([None, None], dtype=object),
             "arousal": np.array([2.5, 4.0]), "valence": np.array([3.0, None], dtype=object)}
    clips = collect_clips([batch], [], dimensions=["arousal"])
    assert clips.targets.tolist() == [[2.5], [4.0]] and clips.labels.tolist() == [-1, -1]
    b = make_batch(clips, np.array([1, 0]), None, None)
    assert b.targets.tolist() == [[4.0], [2.5]]
    with pytest.raises(TrainingError, match=r"clip 'b' has no valence value"):
        collect_clips([batch], [], dimensions=["arousal", "valence"])
    unlabelled = collect_clips([batch], [], dimensions=["arousal", "valence"], require_labels=False)
    assert np.isnan(unlabelled.targets[1, 1]) and unlabelled.subset([1]).ids == ["b"]
