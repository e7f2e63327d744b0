"""Ray Tune sweeps over any keys of a job's config (``python -m jobs.sweep``)."""
