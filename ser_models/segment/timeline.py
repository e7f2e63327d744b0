"""Prediction timelines: a model's per-segment predictions laid back onto each recording's time axis.

A timeline row is a segment of a recording (``recording, channel, start, end`` in seconds of the source file)
with what the model said about it: the class, its confidence, the class probabilities and the dimensions
where the model has them. Gaps between rows are where the segmenter found no speech.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.io import save_figure

TIMELINE_KEYS = ("recording", "channel", "start", "end")


def build_timeline(predictions: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Join predictions (by ``utt_id``) to their segments' place in the recording.

    Args:
        predictions: ``utt_id`` and the prediction columns (``predicted``, ``confidence``, ``probs`` [C], ...).
        segments: ``utt_id`` and :data:`TIMELINE_KEYS`.

    Returns:
        One row per predicted segment: :data:`TIMELINE_KEYS`, ``utt_id``, then the prediction columns, sorted
        by recording, channel and start.
    """
    cols = ["utt_id", *TIMELINE_KEYS]
    merged = segments[cols].merge(predictions, on="utt_id", how="inner")
    order = [*TIMELINE_KEYS, "utt_id"] + [c for c in predictions.columns if c != "utt_id"]
    return merged[order].sort_values(["recording", "channel", "start"], kind="stable").reset_index(drop=True)


def plot_timeline(timeline: pd.DataFrame, recording: str, labels: list[str], path: str) -> None:
    """Draw one recording's timeline: a lane per channel, each segment coloured by its predicted class with
    the probability of every class as stacked bars underneath.

    Args:
        timeline: rows of :func:`build_timeline`.
        recording: which recording to draw.
        labels: the model's class names (the order of ``probs``).
        path: PNG to write (local path or URI).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    rows = timeline[timeline["recording"] == recording]
    channels = sorted(rows["channel"].unique().tolist())
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(channels), 1, figsize=(12, 1.8 * len(channels) + 0.6), squeeze=False,
                             sharex=True)
    for ax, ch in zip(axes[:, 0], channels):
        lane = rows[rows["channel"] == ch]
        for r in lane.itertuples():
            probs = np.asarray(r.probs, dtype=float) if "probs" in lane.columns else None
            bottom = 0.0
            for k, name in enumerate(labels):
                height = float(probs[k]) if probs is not None else float(name == r.predicted)
                ax.bar(r.start, height, width=r.end - r.start, bottom=bottom, align="edge",
                       color=colours(k % 10), edgecolor="none")
                bottom += height
        ax.set_ylim(0, 1)
        ax.set_ylabel("mix" if ch == -1 else f"ch {ch}")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time in the recording (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k % 10)) for k in range(len(labels))]
    fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=8)
    fig.suptitle(f"{recording}: class probabilities per segment", x=0.01, ha="left", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


__all__ = ["TIMELINE_KEYS", "build_timeline", "plot_timeline"]
