"""score_dataset / PoolScorer on the demo pool: Ray Data actors and in process give the same scores, which
match the model's own forward; MC-dropout samples are reproducible; a CPU reservation that would starve the
read tasks is refused before any actor starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_models.exceptions import ConfigError
from ser_models.models.model import EmotionModel
from ser_models.scoring.scorer import ScorerConfig, Scores, score_dataset
from ser_models.testing import tiny_model_config

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = EmotionModel(tiny_model_config(head_dropout=0.3, dropout=0.2))  # head and LoRA dropout
    folder = tmp_path_factory.mktemp("scorer") / "ckpt"
    model.save_checkpoint(folder)
    return folder


def _train_split(demo_pool):
    return demo_pool.open().dataset("train")


def test_actor_and_in_process_agree_with_the_model(demo_pool, checkpoint, tmp_path):
    ds = _train_split(demo_pool)
    cfg = ScorerConfig(batch_size=8, micro_batch_size=4)
    actor = score_dataset(ds, checkpoint, cfg, verbose=False, keep_pooled=True)
    local = score_dataset(ds, checkpoint, cfg, verbose=False, in_process=True, keep_pooled=True)
    lean = score_dataset(ds, checkpoint, cfg, verbose=False, in_process=True)  # what every round gathers
    assert lean.pooled.shape == (len(lean.ids), 0) and actor.pooled.shape[1] > 0
    np.testing.assert_allclose(lean.probs, local.probs, atol=1e-6)

    meta = demo_pool.open().metadata(columns=["utt_id"], split="train")
    assert list(actor.ids) == sorted(meta["utt_id"])  # every clip once, sorted by id
    n, c = len(actor.ids), len(demo_pool.labels)
    assert actor.probs.shape == (n, c) and actor.probs.dtype == np.float32
    np.testing.assert_allclose(actor.probs.sum(1), 1.0, atol=1e-5)
    assert actor.embedding.shape[0] == actor.pooled.shape[0] == n and actor.mc_probs is None
    for name in ("probs", "embedding", "pooled"):
        np.testing.assert_allclose(getattr(actor, name), getattr(local, name), atol=1e-5, err_msg=name)

    # the same clip through EmotionModel.forward directly, alone (no padding)
    from ser_models.data.audio import decode_pool_audio

    row = demo_pool.open().metadata(columns=["utt_id", "audio", "audio_format"], split="train").iloc[0]
    wav = torch.from_numpy(decode_pool_audio(row.audio, row.audio_format))[None]
    model = EmotionModel.load_checkpoint(checkpoint).eval()
    with torch.no_grad():
        out = model(wav, torch.tensor([wav.shape[1]]))
    i = list(actor.ids).index(row.utt_id)
    np.testing.assert_allclose(actor.probs[i], torch.softmax(out.logits, -1)[0].numpy(), atol=1e-4)

    # round trip through scores.parquet
    actor.save(tmp_path / "scores.parquet")
    back = Scores.load(tmp_path / "scores.parquet")
    assert list(back.ids) == list(actor.ids)
    np.testing.assert_array_equal(back.embedding, actor.embedding)


def test_mc_dropout_samples_vary_and_repeat(demo_pool, checkpoint):
    ds = _train_split(demo_pool)
    cfg = ScorerConfig(batch_size=8, micro_batch_size=4, mc_samples=3)
    a = score_dataset(ds, checkpoint, cfg, verbose=False, in_process=True, seed=5)
    b = score_dataset(ds, checkpoint, cfg, verbose=False, in_process=True, seed=5)
    assert a.mc_probs.shape == (len(a.ids), 3, len(demo_pool.labels))
    np.testing.assert_array_equal(a.mc_probs, b.mc_probs)  # a redone round scores identically
    assert np.abs(a.mc_probs[:, 0] - a.mc_probs[:, 1]).max() > 1e-4  # dropout on: samples differ
    # A clip's samples do not depend on its batch, micro-batch or neighbours' lengths (LoRA dropout runs on
    # padded frames inside the encoder; the head's on pooled vectors).
    for batch_size, micro in ((5, 1), (16, 7)):
        other = score_dataset(ds, checkpoint, ScorerConfig(batch_size=batch_size, micro_batch_size=micro,
                                                           mc_samples=3), verbose=False, in_process=True, seed=5)
        np.testing.assert_allclose(other.mc_probs, a.mc_probs, atol=2e-5, err_msg=f"batch {batch_size}/{micro}")
    c = score_dataset(ds, checkpoint, cfg, verbose=False, in_process=True, seed=6)
    assert np.abs(c.mc_probs - a.mc_probs).max() > 1e-4  # the seed matters


def test_starving_reservation_is_refused(demo_pool, checkpoint):
    with pytest.raises(ConfigError, match="active.scorer.threads"):
        score_dataset(_train_split(demo_pool), checkpoint, ScorerConfig(num_cpus=2), verbose=False)


def test_in_process_batches_keep_the_datasets_order_whatever_order_reads_finish(ray_local):
    """Read tasks that finish in a random order: the in-process scorer still sees the same batches every run
    (a clip's float rounding depends on its micro-batch), and the dataset's own setting is left as it was."""
    import ray

    from ser_models.scoring.scorer import _in_order

    def jitter(batch):
        import time

        time.sleep(float(np.random.default_rng().random()) * 0.03)
        return batch

    ds = ray.data.range(1200, override_num_blocks=24).map_batches(jitter)
    runs = [[b["id"].tolist() for b in _in_order(ds, lambda batch: batch, 8)] for _ in range(2)]
    assert runs[0] == runs[1] == [list(range(i, min(i + 8, 1200))) for i in range(0, 1200, 8)]
    assert ds.context.execution_options.preserve_order is False
