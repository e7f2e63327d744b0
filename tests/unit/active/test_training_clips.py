"""TrainingClips: the run's training split as sorted Arrow ids and float seconds; lookups by the few ids asked
about, draws equal to the list-based ones they replace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ser_models.active.stopping import stop_set_ids
from ser_models.active.training_clips import TrainingClips


def _clips(n=500, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"utt{i:05d}" for i in rng.permutation(n)]
    return ids, rng.uniform(1.0, 9.0, n)


def test_ids_are_sorted_with_their_seconds_and_duplicates_are_refused():
    ids, secs = _clips()
    clips = TrainingClips(ids, secs)
    assert clips.ids.to_pylist() == sorted(ids) and len(clips) == 500
    by = dict(zip(ids, secs))
    assert np.allclose(clips.seconds, [by[i] for i in sorted(ids)])
    assert clips.total_seconds == pytest.approx(sum(secs))
    with pytest.raises(ValueError, match="'b' appears more than once"):
        TrainingClips(["b", "a", "b"], [1, 2, 3])
    with pytest.raises(ValueError, match="3 clip ids but 2 durations"):
        TrainingClips(["a", "b", "c"], [1, 2])


def test_lookups_by_id_answer_in_the_order_asked_with_unknowns_marked():
    ids, secs = _clips()
    clips = TrainingClips(pa.array(ids), secs)
    by = dict(zip(ids, secs))
    asked = ["utt00007", "nope", "utt00003", "utt00007", "utt00499"]
    pos = clips.positions(asked)
    assert pos[1] == -1 and pos[0] == pos[3] and [clips.ids[int(p)].as_py() for p in pos[[0, 2, 4]]] == \
        ["utt00007", "utt00003", "utt00499"]
    got = clips.seconds_of(asked)
    assert np.isnan(got[1]) and np.allclose(got[[0, 2, 3, 4]], [by[a] for a in np.array(asked)[[0, 2, 3, 4]]])
    assert len(clips.positions([])) == 0 and len(TrainingClips([], []).positions(["a"])) == 1


def test_without_and_mask_drop_exactly_the_named_clips():
    ids, secs = _clips(50)
    clips = TrainingClips(ids, secs)
    held = {"utt00001", "utt00010", "not-a-clip"}
    rest = clips.without(held)
    assert rest.ids.to_pylist() == sorted(set(ids) - held) and len(rest.seconds) == 48
    assert clips.mask_without(set()).all() and clips.mask_without(held).sum() == 48


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_draws_equal_the_list_draws_they_replace(seed):
    ids, secs = _clips(2000, seed)
    clips = TrainingClips(ids, secs)
    skip = {i for i in ids if i.endswith("3")}
    listed = [i for i in sorted(ids) if i not in skip]
    want = np.random.default_rng([seed, 0]).choice(listed, size=40, replace=False).tolist()
    assert clips.sample(40, np.random.default_rng([seed, 0]), skip) == want
    # the stop set: the object-array draw of the list of training ids
    old = sorted(np.random.default_rng([seed, 7919]).choice(np.asarray(sorted(ids), dtype=object), size=64,
                                                            replace=False).tolist())
    assert stop_set_ids(clips.ids, 64, seed) == old == stop_set_ids(sorted(ids), 64, seed)


def test_dictionary_encoded_ids_are_decoded_and_null_ids_refused():
    clips = TrainingClips(pa.array(["b", "a", "c"]).dictionary_encode(), [2.0, 1.0, 3.0])
    assert clips.ids.type == pa.string() and clips.ids.to_pylist() == ["a", "b", "c"]
    assert list(clips.seconds_of(pa.chunked_array([pa.array(["c", "a"]).dictionary_encode()]))) == [3.0, 1.0]
    with pytest.raises(ValueError, match="1 clip ids are null"):
        TrainingClips(pa.array(["a", None]), [1.0, 2.0])
