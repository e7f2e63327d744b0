"""Clip-id keys from Arrow buffers: fixed values (random picks and samples must not move between releases),
the same key whatever container or slice holds the id, and set membership at 8 bytes a clip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ser_models.data.id_keys import KeySet, id_keys


def _reference(ids, seed):
    """FNV-1a over the UTF-8 bytes, offset basis mixed with the seed, then splitmix64: in plain Python ints."""
    mask = (1 << 64) - 1

    def mix(h):
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
        return h ^ (h >> 31)

    out = []
    for i in ids:
        h = 0xCBF29CE484222325 ^ mix(seed & mask)
        for b in i.encode("utf-8"):
            h = ((h ^ b) * 0x100000001B3) & mask
        out.append(mix(h))
    return out


def test_keys_are_fixed_values():
    assert [hex(int(k)) for k in id_keys(["rec0000001_ch0_000030000", "", "é-ü"], 0)] == [
        "0xdd7cec20e0a3947f", "0xf52a15e9a9b5e89b", "0x1d2c603c022c1659"]
    assert hex(int(id_keys(["clip-1"], 7)[0])) == "0x17ef8c4019387261"


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3])
def test_keys_match_the_plain_definition_for_any_container_and_slice(seed):
    rng = np.random.default_rng(seed)
    ids = [f"rec{rng.integers(10**6)}_{'x' * int(rng.integers(0, 40))}" for _ in range(300)]
    ids += ["", "日本語_clip", "a" * 90, "trailing space "]
    want = np.array(_reference(ids, seed), np.uint64)
    assert (id_keys(ids, seed) == want).all()
    assert (id_keys(np.asarray(ids, dtype=object), seed) == want).all()
    assert (id_keys(pa.array(ids).slice(7), seed) == want[7:]).all()  # an Arrow slice keeps its offset
    chunked = pa.chunked_array([pa.array(ids[:100]), pa.array(ids[100:])])
    assert (id_keys(chunked, seed) == want).all()
    assert (id_keys(pa.array(ids, pa.large_string()), seed) == want).all()
    assert not (id_keys(ids, seed + 1) == want).any()


def test_keys_refuse_non_strings_and_nulls():
    with pytest.raises(TypeError, match="strings"):
        id_keys(pa.array([1, 2]))
    with pytest.raises(ValueError, match="1 clip ids are null"):
        id_keys(pa.array(["a", None]))
    assert id_keys([]).dtype == np.uint64 and len(id_keys([])) == 0


def test_a_key_set_built_in_parts_holds_exactly_its_ids():
    ids = [f"utt{i:06d}" for i in range(5000)]
    keys = KeySet([ids[:10], pa.array(ids[10:3000]), pa.chunked_array([pa.array(ids[3000:])])])
    assert len(keys) == 5000
    assert keys.contains(ids).all()
    assert not keys.contains([f"utt{i:06d}" for i in range(5000, 6000)] + ["", "utt"]).any()
    assert not KeySet().contains(["a"]).any()
    assert list(keys.contains(["utt000004", "nope", "utt004999"])) == [True, False, True]


def test_keys_past_a_block_boundary_equal_those_of_the_ids_alone():
    from ser_models.data import id_keys as module

    n = module._BLOCK + 3
    ids = pa.array([f"c{i}" + "x" * (i % 5) for i in range(n)])
    keys = id_keys(ids, 2)
    edge = list(range(module._BLOCK - 3, n))
    assert (keys[edge] == np.array(_reference([ids[i].as_py() for i in edge], 2), np.uint64)).all()


def test_keys_of_large_dictionary_and_many_chunked_strings_equal_the_plain_ones():
    ids = [f"clip-{i}-" + "y" * (i % 7) for i in range(1000)]
    want = id_keys(ids, 3)
    assert (id_keys(pa.array(ids, pa.large_string()).slice(10), 3) == want[10:]).all()
    assert (id_keys(pa.array(ids).dictionary_encode(), 3) == want).all()
    chunks = pa.chunked_array([pa.array(ids[:400], pa.large_string()), pa.array(ids[400:], pa.large_string())])
    assert (id_keys(chunks, 3) == want).all()
    assert len(id_keys(pa.chunked_array([], pa.string()))) == 0
