"""A score shard's embeddings live in a file of fixed-size rows beside it, read by offset: the rows asked for come
back exactly, on a local disk and on S3, however the reads are coalesced; a damaged file is named; shards
written with their embeddings as a Parquet column (a round scored by an earlier version) still read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_models.exceptions import PoolError
from ser_models.io import filesystem, join, read_bytes, write_bytes_atomic, write_parquet_atomic
from ser_models.scoring import score_shards
from ser_models.scoring.score_shards import ScoreShards, embedding_file, read_shard, shard_rows, write_shard
from ser_models.scoring.scorer import Scores

E = 24


def _batch(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), size=n).astype(np.float32)
    return {"utt_id": np.array([f"clip{i:05d}" for i in rng.permutation(n)], dtype=object), "probs": probs,
            "embedding": rng.normal(size=(n, E)).astype(np.float32)}


def _by_id(batch: dict) -> dict[str, np.ndarray]:
    return dict(zip(batch["utt_id"].tolist(), batch["embedding"]))


@pytest.mark.parametrize("hole", [0, 64 << 10], ids=["every-run-apart", "coalesced"])
def test_the_embeddings_of_the_rows_asked_for_come_back_exactly_on_every_store(store, hole, monkeypatch):
    monkeypatch.setattr(score_shards, "HOLE_BYTES", {"local": hole, "remote": hole})
    batch = _batch(5000)
    out = write_shard(batch, join(store, "attempt=a"), keep_pooled=False)
    path = join(store, "attempt=a", out["file"][0])
    fs, p = filesystem(path)
    assert "embedding" not in pq.read_schema(p, filesystem=fs).names  # only in the embedding file
    assert len(read_bytes(embedding_file(path))) == 5000 * E * 4

    truth = _by_id(batch)
    ids = sorted(truth)
    wanted = [ids[0], ids[1], ids[2], ids[700], ids[2500], ids[2501], ids[4999]]  # runs, lone rows, both ends
    table = shard_rows(path, pa.array(wanted, pa.string()), False)
    got = Scores.from_table(table)
    assert got.ids.tolist() == wanted
    np.testing.assert_array_equal(got.embedding, np.stack([truth[u] for u in wanted]))

    whole = read_shard(path)
    np.testing.assert_array_equal(whole.embedding, np.stack([truth[u] for u in whole.ids.tolist()]))
    assert read_shard(path, ["probs"]).embedding.shape == (5000, 0)


def test_a_shard_keeps_no_embedding_file_when_no_embedding_is_kept(tmp_path):
    out = write_shard(_batch(50), str(tmp_path), keep_pooled=False, keep_embedding=False)
    path = str(tmp_path / out["file"][0])
    assert not (tmp_path / embedding_file(out["file"][0])).exists()
    assert read_shard(path).embedding.shape == (50, 0)


def test_a_missing_embedding_file_is_named(tmp_path):
    out = write_shard(_batch(100), str(tmp_path), keep_pooled=False)
    path = str(tmp_path / out["file"][0])
    (tmp_path / embedding_file(out["file"][0])).unlink()  # a copy that took only the Parquet files
    with pytest.raises(PoolError, match=f"has no embedding file {embedding_file(path)}"):
        read_shard(path)


def test_an_empty_read_has_the_schema_of_any_other(tmp_path):
    out = write_shard(_batch(100), str(tmp_path), keep_pooled=False)
    path = str(tmp_path / out["file"][0])
    empty = shard_rows(path, pa.array(["not-here"], pa.string()), False)
    some = shard_rows(path, pa.array([Scores.from_table(pq.read_table(path, columns=["utt_id"])).ids[0]]), False)
    assert empty.num_rows == 0 and empty.schema.equals(some.schema)
    assert pa.concat_tables([empty, some]).num_rows == 1


def test_a_truncated_embedding_file_is_named(tmp_path):
    out = write_shard(_batch(100), str(tmp_path), keep_pooled=False)
    path = str(tmp_path / out["file"][0])
    emb = embedding_file(path)
    write_bytes_atomic(emb, read_bytes(emb)[:-E * 4])  # one row short
    first = Scores.from_table(pq.read_table(path, columns=["utt_id"])).ids[:1].tolist()
    for read in (lambda: read_shard(path), lambda: shard_rows(path, pa.array(first, pa.string()), False)):
        with pytest.raises(PoolError, match=f"embedding file {emb} holds {99 * E * 4} bytes, not the 100 rows"):
            read()


def test_a_shard_with_its_embeddings_in_a_parquet_column_still_reads(tmp_path):
    """A round scored before embeddings moved to their own file resumes from its committed pass."""
    batch = _batch(300, seed=3)
    scores = Scores(batch["utt_id"], batch["probs"], batch["embedding"], np.zeros((300, 0), np.float32))
    write_parquet_atomic(str(tmp_path / "part-old.parquet"), scores.sorted_by_id().to_table(), 64)
    shards = ScoreShards(str(tmp_path), ("part-old.parquet",), (300,), in_process=True)
    truth = _by_id(batch)
    wanted = sorted(truth)[::37]
    got = shards.rows_of(wanted)
    np.testing.assert_array_equal(got.embedding, np.stack([truth[u] for u in wanted]))
    whole = read_shard(shards.paths[0])
    np.testing.assert_array_equal(whole.embedding, np.stack([truth[u] for u in whole.ids.tolist()]))
