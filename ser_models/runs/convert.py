"""Bring data in from Lhotse, Hugging Face datasets and NeMo manifests, and hand ours back in those formats.

    python -m jobs.convert input=data/cuts.jsonl.gz output=data/manifest.parquet label_field=emotion
    python -m jobs.convert input=data/supervisions.jsonl.gz output=data/recordings.csv kind=recordings
    python -m jobs.convert input=data/hf_dataset output=data/manifest.parquet audio_dir=data/audio
    python -m jobs.convert input=data/train_manifest.json output=data/manifest.parquet format=nemo
    python -m jobs.convert input=corpora/IEMOCAP_full_release output=data/iemocap.parquet format=iemocap test_session=5
    python -m jobs.convert input=corpora/MSP-Podcast output=data/msp_podcast.parquet format=msp_podcast
    python -m jobs.convert input=corpora/CREMA-D output=data/crema_d.parquet format=crema_d seed=0
    python -m jobs.convert input=corpora/Audio_Speech_Actors_01-24 output=data/ravdess.parquet format=ravdess
    python -m jobs.convert input=outputs/demo/after pool_dir=outputs/demo/pool output=exports/lhotse to=lhotse
    python -m jobs.convert input=outputs/calls/segments/segments.parquet output=exports/segments.jsonl to=nemo

Without ``to=`` it imports ``input`` (format found from the file, or ``format=lhotse|hf|nemo``; a corpus's root
folder with ``format=iemocap|msp_podcast|crema_d|ravdess``) into one of our manifests, printing the rows it took
and the rows it refused with the reason; with ``to=`` it exports a label ledger (with ``pool_dir``), a timeline or
a manifest. No Ray. Formats and columns: docs/interoperability.md; the corpora: docs/corpora.md.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.formats.convert import ConvertConfig, convert


def main(argv: list[str] | None = None):
    cfg = parse_job_args(ConvertConfig, sys.argv[1:] if argv is None else argv, "jobs.convert")
    return convert(cfg)
