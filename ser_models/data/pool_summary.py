"""What a pool build or update did: :class:`PoolSummary`, the content of a pool's ``summary.json``, and the pool
format it was written in (:data:`POOL_FORMAT_VERSION`). :mod:`ser_models.data.prepare` writes it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: Bumped when the pool's layout or decoding changes, so old pools are rebuilt.
POOL_FORMAT_VERSION = 4  # 4: pools grow in place (files.json, lineage, version, source signatures)


@dataclasses.dataclass
class PoolSummary:
    """What a build or update did (also the content of ``summary.json``).

    Attributes:
        clips_in: manifest rows.
        kept: clips in the pool.
        quarantined: clips in ``quarantine.parquet``.
        splits: ``{split: {"clips": int, "hours": float}}`` of kept clips.
        reasons: ``{reason: count}`` of quarantined clips.
        seconds: wall time of the build or update (s).
        clips_per_s: ``clips_in / seconds``.
        fingerprint: hash of the manifest bytes and the content-relevant config.
        output_dir: where the pool lives.
        up_to_date: True when the pool already matched and nothing was done.
        lineage: the pool's identity across versions (the fingerprint of the build that started it).
        version: 1 for a fresh build, +1 per update that changed clips.
        decoded: clips decoded by this call (a fresh build: every manifest row; an update: the new ones).
        added: clips added to the pool by this call.
        relabelled: existing clips whose non-split metadata this call changed (no decoding).
        moved: existing clips this call moved to another split (no decoding).
        dropped: clips this call removed because the manifest no longer lists them.
        history: one entry per build and update: ``{"version", "kind", "added", "decoded", "relabelled",
            "moved", "dropped", "kept", "fingerprint", "seconds", "at"}``.
    """

    clips_in: int
    kept: int
    quarantined: int
    splits: dict[str, dict[str, float]]
    reasons: dict[str, int]
    seconds: float
    clips_per_s: float
    fingerprint: str
    output_dir: str
    up_to_date: bool = False
    lineage: str = ""
    version: int = 1
    decoded: int = 0
    added: int = 0
    relabelled: int = 0
    moved: int = 0
    dropped: int = 0
    history: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("up_to_date")
        d["format_version"] = POOL_FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], up_to_date: bool = False) -> PoolSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and k != "up_to_date"}, up_to_date=up_to_date)

    def table(self) -> str:
        """A human-readable summary (printed by the job)."""
        lines = [f"pool {self.output_dir}" + ("  (up to date, nothing done)" if self.up_to_date else "")]
        lines.append(f"  version       {self.version:>8}   (lineage {self.lineage[:12]})")
        if not self.up_to_date:
            lines.append(f"  this run      decoded {self.decoded}, added {self.added}, relabelled {self.relabelled}, "
                         f"moved {self.moved}, dropped {self.dropped}")
        lines.append(f"  clips in      {self.clips_in:>8}")
        lines.append(f"  kept          {self.kept:>8}")
        lines.append(f"  quarantined   {self.quarantined:>8}")
        lines.append("  split           clips     hours")
        for split, s in sorted(self.splits.items()):
            lines.append(f"  {split:<12} {int(s['clips']):>8} {s['hours']:>9.3f}")
        if self.reasons:
            lines.append("  reason          clips")
            for reason, count in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {reason:<12} {count:>8}")
        lines.append(f"  seconds       {self.seconds:>8.1f}   ({self.clips_per_s:.1f} clips/s)")
        return "\n".join(lines)


__all__ = ["POOL_FORMAT_VERSION", "PoolSummary"]
