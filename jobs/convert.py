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

The job's config and code: :mod:`ser_models.runs.convert`.
"""

from __future__ import annotations

from ser_models.runs.convert import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
