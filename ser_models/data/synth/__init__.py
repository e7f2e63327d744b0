"""A synthetic emotional-speech corpus: a small source-filter voice synthesizer, a noisy mixed-format pool.

The demo and the benchmarks need a corpus that exercises the whole pipeline (decode, resample, validate,
train, select) without downloading anything, and that is *learnable but not trivial*: emotions change
prosody and voice quality the way the SER literature describes (higher F0, wider F0 range, faster rate,
flatter spectral tilt and more jitter for high arousal; low, flat, slow and breathy for sadness), but every
cue is drawn from overlapping per-emotion Gaussians, speakers differ in pitch, vocal-tract length and
expressiveness, and background noise masks part of the signal.

The voice model, per clip:

* **Source.** A Rosenberg-like glottal flow pulse per period (opening/closing cosine halves, open quotient
  drawn per clip), differentiated for lip radiation, driven by an F0 contour (speaker base x emotion
  shift, declination, per-syllable accents, slow drift) with per-period jitter and shimmer, plus
  pulse-synchronous aspiration noise (breathiness).
* **Filter.** A cascade of four second-order (Klatt-style, DC-normalised) resonators F1-F4 with bandwidths,
  scaled by the speaker's vocal-tract length factor, times a one-pole spectral-tilt low-pass. Formant
  targets are interpolated between segment centres, so syllables glide into each other.
* **Consonants.** Fricatives and stop bursts are white noise through one wide resonator at the place's
  centre frequency; stops have a closure (with a voice bar when voiced); nasals and approximants are
  voiced segments with their own formant targets.

Time-varying filtering is done in the short-time Fourier domain (32 ms Hann analysis frames at 50 %
overlap, zero-padded by half a frame for the filter tails, overlap-added): the resonators' exact transfer
functions are evaluated per frame on the FFT bins. A per-sample IIR recursion would need a Python loop (or
scipy, which is not a dependency) and is ~100x slower.

The voice is rendered at 16 kHz and resampled with soxr to the clip's file rate: 16, 22.05 or 44.1 kHz,
written as WAV (PCM16) or FLAC, chosen per clip, so the pool builder has to decode and resample for real
(content above 8 kHz is absent, as in upsampled wideband recordings). Everything is a pure function of
``(seed, clip index)`` through :class:`numpy.random.SeedSequence`, so a corpus is byte-identical across runs
and worker counts.

Dimensional labels (``arousal``, ``valence``, ``dominance``) are on a **[1, 5] scale** (3 = neutral), like
IEMOCAP's self-assessment scales, and are computed from the clip's drawn prosody (plus the emotion prior
for valence and a little rater noise), not from the label alone.

Modules, one job each: ``spec`` (what a corpus is: emotions, formats, columns, styles), ``prosody`` (emotion ->
prosody, speakers, A/V/D), ``language`` (formant targets, utterance plans), ``voice`` (rendering one clip),
``corpus`` (planning and writing a corpus), ``bad_clips`` (files the pool builder must reject), ``recordings``
(long episodes and calls with speech-region ground truth, for the segmenter) and ``soundscape`` (their noise
floor, music bed and block-wise writer).
"""

from ser_models.data.synth.bad_clips import write_bad_clips
from ser_models.data.synth.corpus import (
    assign_clips,
    emotion_counts,
    generate_corpus,
    parse_class_prior,
    plan_corpus,
    plan_speaker_splits,
    synthesis_speed,
    write_corpus,
)
from ser_models.data.synth.language import (
    FORMANT_BANDWIDTHS,
    LANGUAGE_SPECS,
    Language,
    Segments,
    plan_utterance,
)
from ser_models.data.synth.prosody import (
    DOMINANCE_PRIOR,
    EMOTION_PROSODY,
    PROSODY_LIMITS,
    PROSODY_PARAMS,
    VALENCE_PRIOR,
    Prosody,
    Speaker,
    affect_dimensions,
    draw_prosody,
)
from ser_models.data.synth.recordings import generate_archive
from ser_models.data.synth.spec import (
    CORPUS_COLUMNS,
    EMOTIONS,
    FILE_FORMATS,
    INFO_COLUMNS,
    LANGUAGES,
    MIN_CLIPS,
    NOISE_KINDS,
    SAMPLE_RATES,
    SPLIT_FRACTIONS,
    STYLES,
    Style,
)
from ser_models.data.synth.voice import (
    SYNTH_RATE,
    ClipSpec,
    background_noise,
    f0_contour,
    glottal_source,
    render_utterance,
    synthesize_clip,
)

__all__ = ['FORMANT_BANDWIDTHS', 'Segments', 'CORPUS_COLUMNS', 'ClipSpec', 'DOMINANCE_PRIOR', 'EMOTIONS', 'EMOTION_PROSODY', 'FILE_FORMATS', 'INFO_COLUMNS', 'LANGUAGES', 'LANGUAGE_SPECS', 'Language', 'MIN_CLIPS', 'NOISE_KINDS', 'PROSODY_LIMITS', 'PROSODY_PARAMS', 'Prosody', 'SAMPLE_RATES', 'SPLIT_FRACTIONS', 'STYLES', 'SYNTH_RATE', 'Speaker', 'Style', 'VALENCE_PRIOR', 'affect_dimensions', 'assign_clips', 'emotion_counts', 'background_noise', 'draw_prosody', 'f0_contour', 'generate_archive', 'generate_corpus', 'glottal_source', 'parse_class_prior', 'plan_corpus', 'plan_speaker_splits', 'plan_utterance', 'render_utterance', 'synthesis_speed', 'synthesize_clip', 'write_bad_clips', 'write_corpus']
