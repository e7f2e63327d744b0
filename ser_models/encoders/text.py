"""The text branch: a ``transformers`` text encoder over clip transcripts, pooled to one vector per clip.

Fused with the pooled audio features in front of the emotion head (``EmotionModel``): semantic content
carries valence that prosody barely does (de Oliveira et al., 2023). ``tiny-text`` is a small random BERT with
a byte-level tokenizer built in code (no files, no hub), for tests and the demo; real work names a hub id or a
local folder holding a model and its tokenizer.

References:
    de Oliveira, Prabhu, Gerkmann, 2023. Leveraging Semantic Information for Efficient Self-Supervised Emotion
    Recognition with Audio-Textual Distilled Models. arXiv:2305.19184.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from ser_models.config import PATH_OR_NAME, RESULT, SPEED, field
from ser_models.exceptions import ConfigError, EncoderError

#: The tiny random text preset (tests, demo).
TINY_TEXT = "tiny-text"
#: Ids of the byte tokenizer's specials; byte b is id b + 3.
_PAD, _CLS, _SEP = 0, 1, 2


@dataclass
class TextConfig:
    """Which text encoder reads the transcripts (``model.text``); ``source: ''`` = audio only."""

    source: str = field("", effect=RESULT, path=PATH_OR_NAME, help="'' = audio only | tiny-text (random tiny BERT, byte tokenizer: tests and demo) | "
                        "local folder with a HF text model and its tokenizer | hub id (e.g. a BERT or RoBERTa)")
    max_tokens: int = field(64, effect=RESULT, help="transcripts are cut to this many tokens")
    freeze: bool = field(True, effect=RESULT, help="keep the text encoder as loaded (only the head learns from its vectors)")
    allow_download: bool = field(False, effect=SPEED, help="let a hub id be downloaded; false = local cache only")

    def __post_init__(self):
        if not isinstance(self.source, str):
            raise ConfigError(f"model.text.source must be a string, got {self.source!r}")
        if self.max_tokens < 4:
            raise ConfigError(f"model.text.max_tokens must be >= 4, got {self.max_tokens}")
        if self.source and self.source != TINY_TEXT and Path(self.source).expanduser().exists():
            self.source = str(Path(self.source).expanduser().absolute())  # workers resolve it alike

    @property
    def enabled(self) -> bool:
        return bool(self.source)


class ByteTokenizer:
    """UTF-8 bytes as tokens: ``[CLS] b1+3 ... bn+3 [SEP]``, padded with 0 (the tiny preset's tokenizer)."""

    vocab_size = 256 + 3

    def __call__(self, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[_CLS, *(b + 3 for b in t.encode("utf-8")[: max_tokens - 2]), _SEP] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), _PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, (ids != _PAD).long()


class TextEncoder(nn.Module):
    """Transcripts -> ``[B, Dt]`` (mean of the last hidden state over real tokens).

    Args:
        cfg: the text config (``source`` must be set).

    Raises:
        EncoderError: a source that cannot be loaded (a hub id without a local copy and ``allow_download``).
    """

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.source == TINY_TEXT:

            conf = BertConfig(vocab_size=ByteTokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=max(cfg.max_tokens,
                                                                                                       64))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1234)  # the same random weights in every process
                self.model = BertModel(conf, add_pooling_layer=False)
            self._tokenizer = ByteTokenizer()
        else:

            offline = not cfg.allow_download
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(cfg.source, local_files_only=offline)
                self.model = AutoModel.from_pretrained(cfg.source, local_files_only=offline)
            except Exception as exc:
                raise EncoderError(f"model.text.source={cfg.source!r}: cannot load a text model and tokenizer "
                                   f"({type(exc).__name__}); give a local folder or set "
                                   "model.text.allow_download=true") from exc
        self.model.eval()
        if cfg.freeze:
            self.model.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids [B, N], attention_mask [B, N])``."""
        if isinstance(self._tokenizer, ByteTokenizer):
            return self._tokenizer(texts, self.cfg.max_tokens)
        enc = self._tokenizer(list(texts), padding=True, truncation=True, max_length=self.cfg.max_tokens,
                              return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def forward(self, transcripts: Sequence[str | None]) -> torch.Tensor:
        """Pooled text vectors ``[B, Dt]``; a missing transcript (None) reads as the empty string."""
        ids, mask = self.tokenize(["" if t is None else str(t) for t in transcripts])
        device = next(self.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        if self.cfg.freeze:
            self.model.eval()  # a frozen encoder gives the same vector in training and evaluation
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, N, Dt]
        m = mask.to(hidden.dtype)[..., None]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
