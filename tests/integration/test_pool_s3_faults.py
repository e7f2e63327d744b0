"""The pool row of the fault matrix on S3 (docs/failure-model.md): a pool build in a bucket that fails before
its commit point leaves the previous pool readable and removes its started build; what a SIGKILL leaves (a
recorded build folder with a torn file) is removed by the rerun, which finishes, as on a local disk."""

from __future__ import annotations

import pandas as pd
import pytest

from ser_models import io
from ser_models.data import Pool, PoolConfig, prepare_pool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def _ids(pool: Pool) -> list[str]:
    return sorted(pool.metadata(columns=["utt_id"])["utt_id"])


@pytest.mark.slow_e2e
def test_a_bucket_build_killed_before_its_summary_leaves_the_previous_pool(demo_pool, s3_bucket, monkeypatch):
    import ser_models.data.prepare as prepare

    io.copy_dir(demo_pool.corpus_dir, f"{s3_bucket}/corpus")
    manifest_uri, pool_uri = f"{s3_bucket}/corpus/manifest.csv", f"{s3_bucket}/pool"
    cfg = PoolConfig(manifest=manifest_uri, output_dir=pool_uri, labels=list(demo_pool.labels), max_duration=8.0,
                     batch_size=8, num_workers=1)
    prepare_pool(cfg)
    before = Pool.open(pool_uri)
    ids, before_entries = _ids(before), io.list_dir(pool_uri)

    # the manifest loses a clip; the build that would publish it dies at the commit point
    import io as pyio

    manifest = pd.read_csv(pyio.BytesIO(io.read_bytes(manifest_uri)))
    gone = sorted(manifest["utt_id"])[0]
    io.write_bytes_atomic(manifest_uri, manifest[manifest["utt_id"] != gone].to_csv(index=False).encode())

    def killed(uri, obj):
        raise KeyboardInterrupt("killed at the commit point")

    with monkeypatch.context() as patch:
        patch.setattr(prepare, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            prepare_pool(cfg)
    after = Pool.open(pool_uri)
    assert after.build_dir == before.build_dir and _ids(after) == ids  # still the previous pool, whole
    assert set(n for n in io.list_dir(pool_uri) if n.startswith("build-")) >= {before.summary["build"]}
    assert not set(io.list_dir(pool_uri)) - set(before_entries)  # the exception removed the started build

    # what a SIGKILL mid-build leaves in the bucket: a recorded build folder with a torn file
    from ser_models.locks import FolderLock
    from ser_models.ownership import record

    with FolderLock(pool_uri, "pool"):  # as prepare_pool does: recorded in the marker before it is made
        record(pool_uri, "pool", ["build-killed"])
    io.write_bytes_atomic(f"{pool_uri}/build-killed/data/split=train/half.parquet", b"PAR1 torn")
    assert _ids(Pool.open(pool_uri)) == ids

    prepare_pool(cfg)  # the rerun removes the dead build and publishes the new pool
    final = Pool.open(pool_uri)
    assert _ids(final) == [u for u in ids if u != gone] and final.build_dir != before.build_dir
    assert "build-killed" not in io.list_dir(pool_uri) and final.summary["build"] in io.list_dir(pool_uri)
