"""Labels by overlap: time-stamped annotations of a recording -> a label per segment.

Each segment takes the label whose annotations cover the largest share of it, if that share is at least
``min_share``; otherwise no label (a segment mostly outside any annotation, or split between labels, is not
guessed). Annotations and segments match on ``recording`` and ``channel``; an annotation without a channel
(or ``-1``) covers every channel, and a mixed segment (``channel -1``) is covered by every channel's.
Overlapping annotations of one label are counted once (their union), so double annotation does not inflate
a share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.exceptions import ManifestError

ANNOTATION_COLUMNS = ("recording", "start", "end", "label")
#: Share of a segment one label must cover for the segment to take it (the default ``min_share``).
DEFAULT_MIN_SHARE = 0.5


def _union_length(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> float:
    """Length of the union of ``[starts, ends)`` intervals clipped to ``[lo, hi)`` (seconds)."""
    s = np.clip(starts, lo, hi)
    e = np.clip(ends, lo, hi)
    keep = e > s
    if not keep.any():
        return 0.0
    order = np.argsort(s[keep])
    s, e = s[keep][order], e[keep][order]
    total, cur_s, cur_e = 0.0, s[0], e[0]
    for a, b in zip(s[1:], e[1:]):
        if a > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    return float(total + cur_e - cur_s)


def labels_by_overlap(segments: pd.DataFrame, annotations: pd.DataFrame,
                      min_share: float = DEFAULT_MIN_SHARE) -> pd.DataFrame:
    """The label of every segment by overlap.

    Args:
        segments: ``recording, channel, start, end`` (seconds; ``channel`` -1 = mixed).
        annotations: ``recording, start, end, label`` and optionally ``channel``.
        min_share: the share of the segment (0-1] the winning label must cover.

    Returns:
        ``segments``' index with ``label`` (``None`` below ``min_share``) and ``label_share`` (the winning
        label's covered share, 0 where nothing overlaps).

    Raises:
        ManifestError: a missing column, or an annotation with ``end <= start``.
    """
    missing = [c for c in ANNOTATION_COLUMNS if c not in annotations.columns]
    if missing:
        raise ManifestError(f"annotations: column(s) {missing} missing; found {list(annotations.columns)}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    ann = annotations.copy()
    ann["channel"] = (pd.to_numeric(ann["channel"], errors="coerce").fillna(-1).astype(int)
                      if "channel" in ann.columns else -1)
    bad = np.flatnonzero(ann["end"].to_numpy(float) <= ann["start"].to_numpy(float))
    if len(bad):
        row = ann.iloc[int(bad[0])]
        raise ManifestError(f"annotations: row {int(bad[0]) + 1} ({row['recording']}): end {row['end']} <= "
                            f"start {row['start']}")
    labels = np.full(len(segments), None, dtype=object)
    shares = np.zeros(len(segments))
    by_rec = {rec: g for rec, g in ann.groupby("recording", sort=False)}
    seg = segments.reset_index(drop=True)
    for i, (rec, ch, s, e) in enumerate(zip(seg["recording"], seg["channel"], seg["start"], seg["end"])):
        g = by_rec.get(rec)
        if g is None or e <= s:
            continue
        ch = int(ch)
        g = g if ch == -1 else g[(g["channel"] == ch) | (g["channel"] == -1)]
        g = g[(g["end"] > s) & (g["start"] < e)]
        best, best_len = None, 0.0
        for label, lg in g.groupby("label", sort=True):
            covered = _union_length(lg["start"].to_numpy(float), lg["end"].to_numpy(float), s, e)
            if covered > best_len:
                best, best_len = label, covered
        shares[i] = best_len / (e - s)
        if best is not None and shares[i] >= min_share:
            labels[i] = best
    return pd.DataFrame({"label": pd.Series(labels, dtype=object, index=segments.index), "label_share": shares},
                        index=segments.index)


__all__ = ["ANNOTATION_COLUMNS", "DEFAULT_MIN_SHARE", "labels_by_overlap"]
