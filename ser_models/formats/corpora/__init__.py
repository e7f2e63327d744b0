"""The standard emotional-speech corpora, as a team downloads them, into our manifest (docs/corpora.md).

One module per corpus: :mod:`~ser_models.formats.corpora.iemocap`, :mod:`~ser_models.formats.corpora.msp_podcast`,
:mod:`~ser_models.formats.corpora.crema_d` and :mod:`~ser_models.formats.corpora.ravdess`. Each reads the corpus's
own label files or file names with the community's usual label mapping and splits, and writes through the same
checks, report and refused-rows listing as every other import (:mod:`ser_models.formats.rows`).

``python -m jobs.convert input=<corpus root> output=... format=iemocap|msp_podcast|crema_d|ravdess`` runs them.
Without ``format=`` a folder is taken for a corpus only by a layout no other input has
(:func:`detect_corpus`), and the job says which it found; any other folder is read as a Hugging Face dataset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ser_models import io
from ser_models.exceptions import ConfigError
from ser_models.formats.corpora.common import entries, is_dir, is_file

#: The corpora ``format=`` names.
CORPORA = ("iemocap", "msp_podcast", "crema_d", "ravdess")
#: What marks each corpus's root folder (what :func:`detect_corpus` looks for), in the order it looks.
LAYOUTS = {
    "iemocap": "Session<N>/dialog/EmoEvaluation/",
    "msp_podcast": "Labels/labels_consensus.csv",
    "crema_d": "AudioWAV/ with <ActorID>_<Sentence>_<Emotion>_<Level>.wav files",
    "ravdess": "Actor_<NN>/ folders with MM-VV-EE-II-SS-RR-AA.wav files",
}
_CREMA_NAME = re.compile(r"^\d{4}_[A-Z]{3}_[A-Z]{3}_[A-Z]{2}\.wav$")
_RAVDESS_NAME = re.compile(r"^\d{2}(-\d{2}){6}\.wav$")


def detect_corpus(path: str) -> str | None:
    """The corpus whose layout the folder ``path`` has (see :data:`LAYOUTS`), or None.

    Only layouts no Hugging Face dataset folder has count: a ``SessionN`` folder holding
    ``dialog/EmoEvaluation``; ``Labels/labels_consensus.csv``; an ``AudioWAV`` folder whose first ``.wav`` file is
    named as CREMA-D's are; an ``Actor_NN`` folder whose first ``.wav`` file is named as RAVDESS's are. A few
    stats and at most three listings; the files themselves are never read.
    """
    root = str(io.storage_path(path))
    children = entries(root)
    names = {name for name, folder in children if folder}
    for name in sorted(names):
        if re.match(r"^Session[1-9]$", name) and is_dir(io.join(root, name, "dialog", "EmoEvaluation")):
            return "iemocap"
    if "Labels" in names and (is_file(io.join(root, "Labels", "labels_consensus.csv"))
                              or is_file(io.join(root, "Labels", "Labels", "labels_consensus.csv"))):
        return "msp_podcast"
    if "AudioWAV" in names and _first_wav_matches(io.join(root, "AudioWAV"), _CREMA_NAME):
        return "crema_d"
    actors = sorted(n for n in names if re.match(r"^Actor_\d{2}$", n))
    if actors and _first_wav_matches(io.join(root, actors[0]), _RAVDESS_NAME):
        return "ravdess"
    return None


def _first_wav_matches(folder: str, pattern: re.Pattern) -> bool:
    wavs = [name for name, is_folder in entries(folder) if not is_folder and name.lower().endswith(".wav")
            and not name.startswith(".")]
    return bool(wavs) and bool(pattern.match(wavs[0]))


def import_corpus(fmt: str, root: str, output: str, *, labels: Sequence[str] = (), check_files: bool = True,
                  test_session: int = 5, dev_session: int = 0, seed: int = 0, dev_fraction: float = 0.1,
                  test_fraction: float = 0.2, include_song: bool = False, log: Callable[[str], None] = print):
    """Import the corpus ``fmt`` (one of :data:`CORPORA`) at ``root`` into our manifest at ``output``.

    Each corpus takes the keyword arguments it uses (IEMOCAP ``test_session``, ``dev_session``; CREMA-D and
    RAVDESS ``seed``, ``dev_fraction``, ``test_fraction``; RAVDESS ``include_song``) and leaves the others.
    ``check_files`` matters to the corpora whose label file names the audio (IEMOCAP, MSP-Podcast); CREMA-D and
    RAVDESS rows come from the folder listing, so their files exist.

    Returns:
        ``(manifest, report)`` as every import.
    """
    common = {"labels": labels, "log": log}
    if fmt == "iemocap":
        from ser_models.formats.corpora.iemocap import import_iemocap

        return import_iemocap(root, output, test_session=test_session, dev_session=dev_session,
                              check_files=check_files, **common)
    if fmt == "msp_podcast":
        from ser_models.formats.corpora.msp_podcast import import_msp_podcast

        return import_msp_podcast(root, output, check_files=check_files, **common)
    split = {"seed": seed, "dev_fraction": dev_fraction, "test_fraction": test_fraction}
    if fmt == "crema_d":
        from ser_models.formats.corpora.crema_d import import_crema_d

        return import_crema_d(root, output, **split, **common)
    if fmt == "ravdess":
        from ser_models.formats.corpora.ravdess import import_ravdess

        return import_ravdess(root, output, include_song=include_song, **split, **common)
    raise ConfigError(f"format={fmt!r} is not a corpus: use one of {list(CORPORA)}")
