"""What one round of the loop did (:class:`RoundReport`, written to ``metrics.json`` and ``metrics.jsonl``), and
reading those files back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ser_models.io import exists, read_bytes, read_json, storage_path, write_bytes_atomic, write_json_atomic
from ser_models.planning.forecast import ForecastConfig, forecast_rounds
from ser_models.scoring.evaluation import headline_metric


@dataclass
class RoundReport:
    """What one round did. ``seconds`` holds per-stage wall times (train, score, select, label);
    ``labelled_seconds`` the audio labelled so far; ``stopping`` the stopping signals
    (:class:`~ser_models.active.stopping.StopDecision`); ``pseudo_labels`` what the round trained on besides
    the ledger; ``features`` what ``model.feature_norm=auto`` and ``model.functionals=auto`` chose for the
    round's model (and the CV scores it chose by); ``forecast`` the labels forecast from the rounds so far
    (:meth:`~ser_models.planning.forecast.Forecast.to_json`; in ``metrics.jsonl`` only: the round's
    ``metrics.json`` is written before it); ``class_counts`` the training labels per class the round's model
    was trained on (:meth:`labels_per_class`; None for a model without classes)."""

    round: int
    labelled: int
    fraction: float
    dev: dict | None
    test: dict | None
    selected: int
    seconds: dict = field(default_factory=dict)
    labelled_seconds: float | None = None
    stopping: dict | None = None
    pseudo_labels: dict | None = None
    strategy: dict | None = None
    features: dict | None = None
    forecast: dict | None = None
    class_counts: dict | None = None

    def line(self) -> str:
        def m(split, d):
            if not d:
                return f"{split} -"
            parts = [f"UA {d['ua']:.3f} WA {d['wa']:.3f} F1 {d['macro_f1']:.3f}"] if "ua" in d else []
            parts += [f"CCC {d['ccc']:.3f}"] if "ccc" in d else []
            return f"{split} " + " ".join(parts)

        stages = " ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        extra = ""
        if self.pseudo_labels:
            extra += f" | pseudo {self.pseudo_labels['clips']}"
        if self.stopping and self.stopping.get("kappa") is not None:
            extra += f" | kappa {self.stopping['kappa']:.3f}"
        if self.strategy:
            extra += f" | auto -> {self.strategy['chosen']}"
            if self.strategy.get("verdict"):
                from ser_models.active.strategies.auto import (
                    verdict_gain,  # the strategies package: only in functions
                )

                extra += f" ({verdict_gain(self.strategy['verdict'])})"
        if self.features:
            what = "features" if "functionals" in self.features else "norm"
            extra += f" | {what} {self.features.get('chosen', self.features.get('feature_norm'))}"
        if self.forecast:
            extra += f" | forecast: {self.forecast['text']}"
        if self.class_counts:
            extra += " | labels per class: " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items())
        hours = f" {self.labelled_seconds / 3600:.2f} h" if self.labelled_seconds else ""
        return (f"round {self.round:>2} | labelled {self.labelled:>5} ({100 * self.fraction:5.1f}%{hours}) | "
                f"{m('dev', self.dev)} | {m('test', self.test)} | +{self.selected:<4}{extra} | {stages}")

    @staticmethod
    def labels_per_class(labels: Iterable[str | None], classes: Sequence[str]) -> dict[str, int] | None:
        """Labelled clips per class, from the ledger's label of each clip.

        Args:
            labels: one label per labelled clip (a ledger view's ``labels().values()``); None (a clip labelled only
                on dimensions) or a name outside ``classes`` counts for no class.
            classes: the model's classes, in the order the counts are given.

        Returns:
            ``{class: clips}`` for every class in ``classes``' order (0 for a class not labelled yet); None for a
            model without classes.
        """
        if not classes:
            return None
        counts = dict.fromkeys(classes, 0)
        for label in labels:
            if label in counts:
                counts[label] += 1
        return counts

    def to_json(self) -> dict:
        return {"round": self.round, "labelled": self.labelled, "fraction": self.fraction, "dev": self.dev,
                "test": self.test, "selected": self.selected, "seconds": self.seconds,
                "labelled_seconds": self.labelled_seconds, "stopping": self.stopping,
                "pseudo_labels": self.pseudo_labels, "strategy": self.strategy, "features": self.features,
                "forecast": self.forecast, "class_counts": self.class_counts}

    @classmethod
    def from_json(cls, d: dict) -> RoundReport:
        return cls(**d)


def write_run_metrics(out, reports: list[RoundReport], forecast: ForecastConfig) -> None:
    """After a round: give the last report the labels forecast of the rounds so far (recomputed on a resumed
    run; the bootstrap is seeded), and rewrite ``metrics.jsonl``, ``report/forecast.json`` and, once ``auto``
    has judged, ``report/selection.json`` (:func:`latest_verdict`) under ``out``."""
    reports[-1].forecast = forecast_rounds([r.to_json() for r in reports], forecast).to_json()
    lines = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in reports)
    write_bytes_atomic(out / "metrics.jsonl", lines.encode())
    write_json_atomic(out / "report" / "forecast.json", reports[-1].forecast)
    verdict = latest_verdict(reports)
    if verdict is not None:
        write_json_atomic(out / "report" / "selection.json", verdict)


def round_verdict(r: int, choice: dict | None) -> dict | None:
    """``{"round", "verdict", "text"}`` of round ``r``'s ``auto`` decision ``choice`` (the text as the round's
    log says it), or None when the decision carries no verdict (too few labels, or no ``auto``)."""
    from ser_models.active.strategies.auto import format_verdict  # the strategies package: only in functions

    verdict = (choice or {}).get("verdict")
    return {"round": r, "verdict": verdict, "text": format_verdict(verdict)} if verdict else None


def latest_verdict(reports: list[RoundReport]) -> dict | None:
    """The run's latest answer to "does selection pay here": :func:`round_verdict` of the last round whose
    ``auto`` decision carried a verdict (:func:`~ser_models.active.strategies.auto.selection_verdict`); None
    before any."""
    for r in reversed(reports):
        verdict = round_verdict(r.round, r.strategy)
        if verdict is not None:
            return verdict
    return None


def write_selection(out, r: int, choice: dict | None) -> None:
    """Write round ``r``'s verdict (:func:`round_verdict`) to ``report/selection.json`` under ``out`` the moment
    its ``auto`` decision is made, before the round asks for labels: a run that stops to wait for people then
    reports the verdict its log just printed, not the previous round's. A decision without a verdict leaves the
    file as it was."""
    verdict = round_verdict(r, choice)
    if verdict is not None:
        write_json_atomic(out / "report" / "selection.json", verdict)


def announce_choice(out, r: int, choice: dict, log) -> None:
    """Log round ``r``'s ``auto`` decision (the strategy round ``r + 1`` queries with, why, the simulated UAs and
    the verdict) and write its verdict (:func:`write_selection`)."""
    from ser_models.active.strategies.auto import format_verdict  # the strategies package: only in functions

    sims = " ".join(f"{k} {v:.3f}" for k, v in choice["simulated_ua"].items())
    log(f"  auto: round {r + 1} queries with {choice['chosen']} ({choice['reason']}"
        + (f"; simulated UA {sims}" if sims else "") + ")")
    if choice.get("verdict"):
        log(f"  does selection pay here: {format_verdict(choice['verdict'])}")
    write_selection(out, r, choice)


def slim_metrics(m: dict | None) -> dict | None:
    """What a round keeps of an evaluation: the class metrics and the dimensional ones (not the Pearson/RMSE
    detail, which stays in the round's train/metrics.json)."""
    keep = ("wa", "ua", "macro_f1", "n", "confusion", "ccc")
    return None if not m else {k: v for k, v in m.items() if k in keep or k.startswith("ccc_")}


def headline(m: dict) -> tuple[str, float]:
    """``("UA", ua)`` of an evaluation with classes, else ``("CCC", mean ccc)`` (:func:`headline_metric`)."""
    key = headline_metric(m)
    return key.upper(), m[key]


def feature_choice(metrics: dict) -> dict | None:
    """What ``model.feature_norm=auto`` / ``model.functionals=auto`` chose in a fit (its last history row), for
    the round report: ``{"chosen", "feature_norm", "functionals", "cv_scores", "reason", "l2_c"}`` (a fixed
    setting is absent)."""
    row = (metrics.get("history") or [{}])[-1]
    cv = row.get("feature_norm_cv")
    if not cv:
        return None
    fixed = {k: row[k] for k in ("feature_norm", "functionals") if k in row}
    return {"chosen": cv.get("chosen", row.get("feature_norm")), **fixed, "cv_scores": cv["scores"],
            "reason": cv["reason"], "l2_c": row.get("l2_c")}


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The finished rounds of a run (``metrics.jsonl``), or a single full-data fine-tuning run
    (``metrics.json`` of jobs.finetune) as one point at fraction 1.0."""
    run_dir = storage_path(run_dir)
    if exists(run_dir / "metrics.jsonl"):
        return [json.loads(x) for x in read_bytes(run_dir / "metrics.jsonl").decode().splitlines() if x.strip()]
    if exists(run_dir / "metrics.json"):
        m = read_json(run_dir / "metrics.json")
        return [{"round": 0, "labelled": (m.get("train_clips") or 0), "fraction": 1.0, "dev": m.get("dev"),
                 "test": m.get("test"), "selected": 0, "seconds": {"train": m.get("train_wall_seconds", 0.0)}}]
    raise FileNotFoundError(f"{run_dir} has neither metrics.jsonl (jobs.after) nor metrics.json (jobs.finetune)")
