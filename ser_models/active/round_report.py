"""What one round of the loop did (:class:`RoundReport`, written to ``metrics.json`` and ``metrics.jsonl``), and
reading those files back."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ser_models.io import exists, read_bytes, read_json, storage_path, write_bytes_atomic, write_json_atomic
from ser_models.planning.forecast import ForecastConfig, forecast_rounds
from ser_models.scoring.evaluation import headline_metric

#: The longest round line (characters).
LINE_WIDTH = 160
#: A forecast shows its number only when its 95 % interval spans at most this factor (lower end floored at the
#: labels the run has); a wider one says ``unsure``.
FORECAST_SPAN = 10.0


def forecast_word(f: dict | None) -> str:
    """A round line's forecast (:meth:`~ser_models.planning.forecast.Forecast.to_json`) in a few words, a number
    only where it means something: ``flat at 1,450 (900-4,100)`` (labels where 100 more add less than
    ``flat_gain`` UA) or ``UA 0.70 at 1,450 (900-4,100)`` (with ``target_ua``); ``too early`` before 3 rounds
    with a dev UA, ``flat now`` when the whole interval lies below the labels the run has, ``out of reach`` when
    the curve levels off below the target, ``unsure`` when the interval spans more than :data:`FORECAST_SPAN`
    times; ``""`` (no field) without a forecast or for a model without classes."""
    if not f or (f.get("a") is None and "no classes" in str(f.get("reason"))):
        return ""
    if f.get("a") is None:
        return "too early" if str(f.get("reason", "")).startswith("needs") else "none"
    target, labels, (lo, hi) = f.get("target_ua"), f.get("labels"), f.get("interval") or (None, None)
    current = f.get("current_labels") or 0
    if target is not None and (f.get("reachable") is False or labels is None):
        return f"UA {target:.2f} out of reach"
    if target is None and hi is not None and hi <= current:
        return "flat now"
    if labels is None or lo is None or hi is None or hi > FORECAST_SPAN * max(lo, current, 1):
        return "unsure"
    span = f"{labels:,.0f} ({lo:,.0f}-{hi:,.0f})"
    return f"flat at {span}" if target is None else f"UA {target:.2f} at {span}"


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
        """The round's console line, at most :data:`LINE_WIDTH` characters, e.g. ``round 1 | 48 labels (25%,
        0.05 h) | dev UA 0.512 | test UA 0.498 | +12 | forecast: too early | kappa 0.91 | auto margin | 3.4 s`` (every field is defined in the tutorial). The round's own fields always show; the
        optional ones follow in this order (forecast, kappa, auto, pseudo-labels, the feature choice, labels per
        class), each one only when it still fits."""
        def m(split, d):
            if not d:
                return f"{split} -"
            parts = [f"UA {d['ua']:.3f}"] if "ua" in d else []
            parts += [f"CCC {d['ccc']:.3f}"] if "ccc" in d else []
            return f"{split} " + " ".join(parts)

        pct = 100 * self.fraction
        hours = f", {self.labelled_seconds / 3600:.2f} h" if self.labelled_seconds else ""
        head = [f"round {self.round}", f"{self.labelled:,} labels ({pct:.1f}%{hours})" if pct < 10 else
                f"{self.labelled:,} labels ({pct:.0f}%{hours})", m("dev", self.dev), m("test", self.test),
                f"+{self.selected}"]
        optional = [f"forecast: {forecast_word(self.forecast)}" if forecast_word(self.forecast) else "",
                    f"kappa {self.stopping['kappa']:.2f}" if (self.stopping or {}).get("kappa") is not None else "",
                    self._auto(), f"pseudo {self.pseudo_labels['clips']}" if self.pseudo_labels else "",
                    self._features(), "per class " + " ".join(f"{k} {v}" for k, v in self.class_counts.items())
                    if self.class_counts else ""]
        tail = [f"{sum(self.seconds.values()):.1f} s"]
        kept: list[str] = []
        for part in filter(None, optional):  # in priority order, each one that still fits
            if len(" | ".join([*head, *kept, part, *tail])) <= LINE_WIDTH:
                kept.append(part)
        return " | ".join([*head, *kept, *tail])[:LINE_WIDTH]

    def _auto(self) -> str:
        """``auto margin +0.8 [-1.2, +2.8]``: the strategy ``auto`` chose for the next picks and the best
        candidate's gain over random in UA points with its 95 % interval, named when ``auto`` did not choose it
        (``auto random, margin +0.8 [-1.2, +2.8]``); no gain before ``auto_min_labelled`` labels."""
        if not self.strategy:
            return ""
        v = self.strategy.get("verdict")
        who = " " if not v or v["strategy"] == self.strategy["chosen"] else f", {v['strategy']} "
        gain = f"{who}{100 * v['gain']:+.1f} [{100 * v['low']:+.1f}, {100 * v['high']:+.1f}]" if v else ""
        return f"auto {self.strategy['chosen']}{gain}"

    def _features(self) -> str:
        """``norm pool`` / ``features speaker+egemaps``: what ``model.feature_norm=auto`` / ``model.functionals=
        auto`` chose; ``(no CV)`` when too few labels per class to compare the candidates (the simplest kept)."""
        if not self.features:
            return ""
        what = "features" if "functionals" in self.features else "norm"
        no_cv = " (no CV)" if str(self.features.get("reason", "")).startswith("too few") else ""
        return f"{what} {self.features.get('chosen', self.features.get('feature_norm'))}{no_cv}"

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


def round_report(r: int, ledger, train_clips: int, classes: Sequence[str], metrics: dict, seconds: dict,
                 selected: int, stopping: dict | None = None, pseudo: dict | None = None,
                 choice: dict | None = None) -> RoundReport:
    """Round ``r``'s report from what it did.

    Args:
        ledger: the ledger view the round trained on (as of ``r``).
        train_clips: the clips the rounds may train on (the share labelled is of them).
        classes: ``model.labels``.
        metrics: the round's training result metrics (``dev``, ``test``, ``history``).
        seconds: wall seconds per stage so far.
        selected: clips the round picked for labelling.
        stopping / pseudo / choice: the stopping signals, the pseudo-label report, ``auto``'s decision.
    """
    return RoundReport(round=r, labelled=len(ledger), fraction=len(ledger) / train_clips,
                       dev=slim_metrics(metrics.get("dev")), test=slim_metrics(metrics.get("test")),
                       selected=selected, seconds=dict(seconds), labelled_seconds=round(ledger.seconds(), 3),
                       stopping=stopping, pseudo_labels=pseudo, strategy=choice, features=feature_choice(metrics),
                       class_counts=RoundReport.labels_per_class(ledger.labels().values(), classes))


def announce_round(report: RoundReport, before: list[RoundReport], forecast: ForecastConfig, log) -> None:
    """Log a round's line the moment it is trained and has picked its clips, before it asks for their labels:
    a run that stops to wait for people shows the round it just trained (with the forecast of the rounds
    ``before`` it and this one). The report itself is left as it is (its forecast comes with
    :func:`write_run_metrics`)."""
    rows = [r.to_json() for r in [*before, report]]
    log(dataclasses.replace(report, forecast=forecast_rounds(rows, forecast).to_json()).line())


def write_run_metrics(out, reports: list[RoundReport], forecast: ForecastConfig, spent: dict | None = None) -> None:
    """After a round: give the last report the labels forecast of the rounds so far (recomputed on a resumed
    run; the bootstrap is seeded), and rewrite ``metrics.jsonl``, ``report/forecast.json``, ``report/labels.json``
    (``spent``: the labels paid per purpose, when given) and, once ``auto`` has judged, ``report/selection.json`` (:func:`latest_verdict`) under ``out``."""
    reports[-1].forecast = forecast_rounds([r.to_json() for r in reports], forecast).to_json()
    lines = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in reports)
    write_bytes_atomic(out / "metrics.jsonl", lines.encode())
    write_json_atomic(out / "report" / "forecast.json", reports[-1].forecast)
    if spent is not None:
        write_json_atomic(out / "report" / "labels.json", spent)
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
    """Log round ``r``'s ``auto`` decision (the strategy it picks the next clips with, why, the simulated UAs and
    the verdict) and write its verdict (:func:`write_selection`)."""
    from ser_models.active.strategies.auto import format_verdict  # the strategies package: only in functions

    sims = " ".join(f"{k} {v:.3f}" for k, v in choice["simulated_ua"].items())
    log(f"  auto: round {r} picks with {choice['chosen']} ({choice['reason']}"
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
