"""What a corpus is: emotions, languages, file formats, manifest columns, splits and performance styles."""

from __future__ import annotations

import dataclasses

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
LANGUAGES: tuple[str, ...] = ("en", "xx")
SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 44100)
FILE_FORMATS: tuple[str, ...] = ("wav", "flac")
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "babble")
#: Columns of the ``manifest.csv`` written by :func:`generate_corpus`, in order.
CORPUS_COLUMNS: tuple[str, ...] = (
    "utt_id", "path", "label", "arousal", "valence", "dominance",
    "speaker", "language", "corpus", "split", "transcript",
)
#: Per-clip generation parameters written to ``clip_info.csv`` (for analysis, not needed by the pipeline).
INFO_COLUMNS: tuple[str, ...] = (
    "utt_id", "duration", "sample_rate", "file_format", "noise", "snr_db", "gender",
    "f0_mean_hz", "f0_range_st", "rate_sps", "energy_db", "tilt", "open_quotient", "jitter", "shimmer",
    "breathiness",
)
SPLIT_FRACTIONS = {"train": 0.70, "dev": 0.15, "test": 0.15}


@dataclasses.dataclass(frozen=True)
class Style:
    """How a corpus is performed: the acted / natural switch of the demo corpus.

    Attributes:
        expressiveness: factor on every speaker's distance between the emotions' prosody means and neutral's.
        spread: factor on the prosody standard deviations (larger = classes overlap more).
        snr_db: (low, high) of the background noise's signal-to-noise ratio, dB.
    """

    expressiveness: float
    spread: float
    snr_db: tuple[float, float]


#: ``mixed`` is the default corpus (the demo, the tests, the benchmarks). ``acted``: exaggerated, well
#: separated prosody in little noise, as in studio-acted corpora (IEMOCAP scripted, CREMA-D). ``natural``:
#: subtle, overlapping prosody in more noise, as in spontaneous speech (MSP-Podcast).
STYLES: dict[str, Style] = {
    "mixed": Style(expressiveness=1.0, spread=1.0, snr_db=(5.0, 30.0)),
    "acted": Style(expressiveness=1.6, spread=0.7, snr_db=(20.0, 35.0)),
    "natural": Style(expressiveness=0.55, spread=1.2, snr_db=(0.0, 15.0)),
}
MIN_CLIPS = 12  # 4 emotions in each of 3 speaker-disjoint splits
