"""How many training labels a run still needs: a learning curve fitted to its dev UA, with a bootstrap interval.

From the third round with a dev UA on, the loop fits an inverse power law

    UA(n) = a - b * n^(-c),    a <= 1, b > 0, c > 0            (n = training labels)

to the rounds' (labels, dev UA) points and reports either

* the labels forecast to reach ``active.forecast.target_ua`` (when set), or
* where the curve flattens: the labels ``n`` at which the next 100 labels add less than
  ``active.forecast.flat_gain`` UA (default 0.005, half a UA point): ``UA(n + 100) - UA(n) = flat_gain``.

Each comes with a 95 % bootstrap interval. A round's dev UA is a measurement on a few hundred clips, with a
standard error known from its confusion matrix (per-class binomial recalls); four rounds cannot tell that noise
from the curve's shape, so the bootstrap is parametric: each replicate adds that noise (or the fit's residual
spread, when the points outnumber the curve's three parameters and it is larger) to the fitted curve and fits
again. Resampling the points themselves would leave fewer than three distinct points in most replicates.
A target is **not reachable** when the upper end of the asymptote's interval is below it.

The fit profiles ``c`` over a grid: for a fixed ``c`` the curve is linear in ``(a, b)``, which a weighted least
squares solves exactly under the bounds, so every replicate finds its global optimum on the grid (vectorised);
the point fit is then polished with ``scipy.optimize.least_squares``.

What it does not know: the dev set is the same clips every round, so its noise is partly a fixed offset, not
independent per round; and a curve of three points says little about labels ten times beyond them.
``bench/forecast_check.py`` measures how often the interval covers later rounds of the committed runs.

References:
    Figueroa et al., "Predicting sample size required for classification performance", BMC Medical Informatics
    and Decision Making 12:8, 2012 (inverse power law learning curves).
    Mukherjee et al., "Estimating dataset size requirements for classifying DNA microarray data", Journal of
    Computational Biology 10(2), 2003.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ser_models.config import SPEED, field
from ser_models.exceptions import ConfigError

__all__ = ["Forecast", "ForecastConfig", "PowerLaw", "fit_power_law", "forecast", "forecast_rounds",
           "ua_standard_error"]

MIN_POINTS = 3
_C_GRID = np.geomspace(0.02, 3.0, 240)  # exponents of published learning curves lie in ~0.05-1.5


@dataclass
class ForecastConfig:
    """The learning-curve forecast of the AFTER loop (``active.forecast.*``): reporting only, it changes no
    label, selection or model."""

    target_ua: float | None = field(None, effect=SPEED, help="dev UA to forecast the training labels for (e.g. 0.7); null = "
                                    "report where the curve flattens instead (see flat_gain)")
    flat_gain: float = field(0.005, effect=SPEED, help="without target_ua: report the labels at which the next 100 labels "
                             "add less than this much dev UA (0.005 = half a UA point)")
    bootstrap: int = field(200, effect=SPEED, help="bootstrap fits behind the forecast's 95 % interval (seeded)")

    def __post_init__(self) -> None:
        if self.target_ua is not None and not 0.0 < self.target_ua <= 1.0:
            raise ConfigError(f"active.forecast.target_ua must be within (0, 1] or null, got {self.target_ua}")
        if not self.flat_gain > 0.0:
            raise ConfigError(f"active.forecast.flat_gain must be > 0 (UA per 100 labels), got {self.flat_gain}")
        if self.bootstrap < 20:
            raise ConfigError(f"active.forecast.bootstrap must be >= 20 fits, got {self.bootstrap}")


@dataclass(frozen=True)
class PowerLaw:
    """``UA(n) = a - b * n^(-c)`` (``n`` in labels)."""

    a: float
    b: float
    c: float

    def __call__(self, n):
        return self.a - self.b * np.asarray(n, dtype=float) ** (-self.c)

    def labels_for(self, ua: float) -> float:
        """Labels at which the curve reaches ``ua`` (``inf`` when ``ua >= a``; below the curve's start it can be
        under one label)."""
        gap = self.a - ua
        return math.inf if gap <= 0 else float((self.b / gap) ** (1.0 / self.c))

    def flat_at(self, gain_per_100: float) -> float:
        """Labels ``n`` at which the next 100 labels add ``gain_per_100`` UA: ``UA(n + 100) - UA(n)``."""
        return float(_flat_labels(np.array([self.b]), np.array([self.c]), gain_per_100)[0])


def _flat_labels(b: np.ndarray, c: np.ndarray, gain: float) -> np.ndarray:
    """Labels where ``b (n^-c - (n + 100)^-c) = gain``, per curve ([R] each), by bisection on ``log n`` (the gain
    falls as ``n`` grows); 1 when the curve is already flatter at one label."""
    def step(n):
        return b * (n ** -c - (n + 100.0) ** -c)

    lo, hi = np.zeros_like(b), np.full_like(b, 30.0)  # log labels: 1 to ~1e13
    for _ in range(80):
        mid = (lo + hi) / 2
        rising = step(np.exp(mid)) > gain
        lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
    return np.exp(hi)


def ua_standard_error(metrics: dict | None) -> float | None:
    """Standard error of a UA measurement (the mean of per-class recalls), from its confusion matrix
    (rows = true classes, counts): ``sqrt(sum_k p_k (1 - p_k) / n_k) / K`` over the ``K`` classes present, with
    ``p_k`` smoothed by half a clip so a perfect class still has some noise; from ``sqrt(ua (1 - ua) / n)``
    without a matrix; None without either."""
    if not metrics or "ua" not in metrics:
        return None
    if metrics.get("confusion"):
        m = np.asarray(metrics["confusion"], dtype=float)
        n_k = m.sum(axis=1)
        keep = n_k > 0
        p = (np.diag(m)[keep] + 0.5) / (n_k[keep] + 1.0)
        return float(np.sqrt(np.sum(p * (1 - p) / n_k[keep])) / keep.sum())
    if metrics.get("n"):
        ua = min(max(float(metrics["ua"]), 0.01), 0.99)
        return math.sqrt(ua * (1 - ua) / float(metrics["n"]))
    return None


def _fit_grid(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares fits of ``y = a - b x^(-c)`` for every replicate row of ``y`` ([R, P]), with
    ``a <= 1``, ``b >= 0``, ``c`` on :data:`_C_GRID`: the best ``(a, b, c)`` per replicate, each [R]."""
    z = x[None, :] ** -_C_GRID[:, None]  # [G, P]
    sw = w.sum()
    zw, zzw = (z * w).sum(1), (z * z * w).sum(1)  # [G]
    yw = y @ w  # [R]
    yzw = (y[:, None, :] * (z * w)[None]).sum(-1)  # [R, G]
    det = sw * zzw - zw ** 2  # [G]
    # Unconstrained: minimise sum w (y - a + b z)^2 -> normal equations in (a, -b).
    with np.errstate(divide="ignore", invalid="ignore"):
        a0 = (zzw[None] * yw[:, None] - zw[None] * yzw) / det[None]
        nb0 = (sw * yzw - zw[None] * yw[:, None]) / det[None]
    cands = []
    ok = (nb0 <= 0) & (a0 <= 1) & np.isfinite(a0)
    cands.append((np.where(ok, a0, np.nan), np.where(ok, -nb0, np.nan)))
    a_flat = np.minimum(yw / sw, 1.0)[:, None] * np.ones_like(a0)  # b = 0: the best constant
    cands.append((a_flat, np.zeros_like(a0)))
    b_one = np.maximum(((1.0 - y) @ (z * w).T) / zzw[None], 0.0)  # a = 1: b alone
    cands.append((np.ones_like(a0), b_one))
    best_cost = np.full(a0.shape, np.inf)
    best_a, best_b = np.zeros_like(a0), np.zeros_like(a0)
    for a, b in cands:
        resid = y[:, None, :] - (a[..., None] - b[..., None] * z[None])
        cost = np.where(np.isnan(a), np.inf, (resid ** 2 * w).sum(-1))
        better = cost < best_cost
        best_cost, best_a, best_b = (np.where(better, cost, best_cost), np.where(better, a, best_a),
                                     np.where(better, b, best_b))
    g = np.argmin(best_cost, axis=1)
    r = np.arange(len(y))
    return best_a[r, g], best_b[r, g], _C_GRID[g]


def fit_power_law(labels, ua, se=None) -> PowerLaw:
    """The inverse power law through (labels, UA) points, weighted by ``1 / se^2`` when standard errors are given.

    Args:
        labels: [P] training labels of each point (> 0).
        ua: [P] UA of each point.
        se: [P] standard error of each UA, or None (equal weights).

    Returns:
        The fitted :class:`PowerLaw` (``b`` is 0 when the points do not rise).
    """
    from scipy.optimize import least_squares

    n = np.asarray(labels, dtype=float)
    y = np.asarray(ua, dtype=float)
    w = np.ones_like(y) if se is None else 1.0 / np.maximum(np.asarray(se, dtype=float), 1e-4) ** 2
    n0 = float(n.max())  # labels scaled to the last point keep b of order one whatever c is
    a, b, c = (float(v[0]) for v in _fit_grid(n / n0, y[None], w))
    if b > 0:  # polish the grid's best c (and a, b) within the same bounds
        sw = np.sqrt(w)
        res = least_squares(lambda p: sw * (y - (p[0] - p[1] * (n / n0) ** -p[2])), x0=[min(a, 1.0), b, c],
                            bounds=([-np.inf, 0.0, _C_GRID[0]], [1.0, np.inf, _C_GRID[-1]]))
        if res.cost <= 0.5 * float(np.sum(w * (y - (a - b * (n / n0) ** -c)) ** 2)) + 1e-15:
            a, b, c = (float(v) for v in res.x)
    return PowerLaw(a=a, b=b * n0 ** c, c=c)


@dataclass
class Forecast:
    """A run's labels forecast (:func:`forecast`): ``None`` fields when there are too few points (``reason``
    says why). ``labels``/``interval`` are the labels forecast to reach ``target`` (or, without one, where the
    curve flattens), ``inf`` when the curve never gets there; ``ua_at`` the curve's UA there."""

    points: int
    current_labels: int | None
    target: float | None = None
    flat_gain: float | None = None
    curve: PowerLaw | None = None
    labels: float | None = None
    interval: tuple[float, float] | None = None
    ua_at: float | None = None
    asymptote_interval: tuple[float, float] | None = None
    reason: str | None = None
    replicates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # bootstrap (a, b, c), each [B]

    @property
    def reachable(self) -> bool | None:
        """False when the target lies above the asymptote's 95 % interval; None without a target or a fit."""
        if self.curve is None or self.target is None:
            return None
        return not self.asymptote_interval[1] < self.target

    def curve_interval(self, n, se: float | None = None, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The bootstrap band of UA at labels ``n`` ([M]); with ``se``, a prediction band for a new measurement
        of that standard error (the band plus its noise). Returns (low [M], high [M])."""
        a, b, c = self.replicates
        n = np.atleast_1d(np.asarray(n, dtype=float))
        ua = a[:, None] - b[:, None] * n[None, :] ** -c[:, None]  # [B, M]
        if se:
            ua = ua + np.random.default_rng(1).normal(0.0, se, size=ua.shape)
        q = (1 - level) / 2
        return np.quantile(ua, q, axis=0), np.quantile(ua, 1 - q, axis=0)

    def summary(self) -> str:
        """One phrase for a round line, e.g. ``UA 0.70 at 1,450 labels (900-4,100)``."""
        if self.curve is None:
            return self.reason or "no forecast"
        lo, hi = self.interval
        span = f"({_n(lo)}-{_n(hi)})"
        if self.target is None:
            return f"flattens at {_n(self.labels)} labels {span}, UA {self.ua_at:.3f}"
        if self.reachable is False:
            return (f"UA {self.target:.3f} not reachable: curve levels off at {self.curve.a:.3f} "
                    f"(95% up to {self.asymptote_interval[1]:.3f})")
        if math.isinf(self.labels):
            return f"UA {self.target:.3f} not reached on the fitted curve (levels off at {self.curve.a:.3f}) {span}"
        return f"UA {self.target:.3f} at {_n(self.labels)} labels {span}"

    def format(self) -> str:
        """A few lines for the report and ``jobs.plan``."""
        if self.curve is None:
            return f"forecast: none ({self.reason})"
        c = self.curve
        still = ""
        if self.labels is not None and math.isfinite(self.labels) and self.current_labels is not None:
            still = f"; {_n(max(0.0, self.labels - self.current_labels))} more than the {self.current_labels} now"
        rule = (f"target dev UA {self.target:.3f}" if self.target is not None else
                f"where 100 more labels add < {self.flat_gain:.3f} UA")
        return "\n".join([
            f"forecast from {self.points} rounds (dev UA vs training labels, UA(n) = a - b n^-c):",
            f"  curve: a {c.a:.3f} (95% {self.asymptote_interval[0]:.3f}-{self.asymptote_interval[1]:.3f}), "
            f"b {c.b:.3g}, c {c.c:.3f}",
            f"  {rule}: {self.summary()}{still}",
        ])

    def to_json(self) -> dict:
        out = {"points": self.points, "current_labels": self.current_labels, "target_ua": self.target,
               "flat_gain": self.flat_gain, "reason": self.reason, "text": self.summary(), "report": self.format()}
        if self.curve is not None:
            out.update({"a": self.curve.a, "b": self.curve.b, "c": self.curve.c, "labels": _finite(self.labels),
                        "interval": [_finite(v) for v in self.interval], "ua_at": self.ua_at,
                        "asymptote_interval": list(self.asymptote_interval), "reachable": self.reachable})
        return out


def _n(v: float) -> str:
    return "never" if math.isinf(v) else f"{int(round(v)):,}"


def _finite(v: float | None) -> float | None:
    return None if v is None or math.isinf(v) else float(v)


def forecast(labels, ua, se=None, target: float | None = None, flat_gain: float = 0.005, bootstrap: int = 200,
             seed: int = 0) -> Forecast:
    """Fit the learning curve to (labels, UA) points and forecast the labels to reach ``target`` (or where the
    curve flattens), with a seeded parametric bootstrap interval.

    Args:
        labels: [P] training labels at each round.
        ua: [P] dev UA at each round.
        se: [P] each UA's standard error (:func:`ua_standard_error`); None: the fit's residual spread only,
            which needs more points than parameters.
        target: UA to reach, or None for where the curve flattens.
        flat_gain: without a target, the UA that 100 more labels add where the curve counts as flat.
        bootstrap: bootstrap fits.
        seed: the bootstrap's seed.

    Returns:
        A :class:`Forecast`; with fewer than 3 points (or no noise estimate) one with ``reason`` set and no fit.
    """
    n = np.asarray(labels, dtype=float)
    y = np.asarray(ua, dtype=float)
    current = int(n.max()) if len(n) else None
    base = Forecast(points=len(n), current_labels=current, target=target, flat_gain=flat_gain)
    if len(n) < MIN_POINTS or len(np.unique(n)) < MIN_POINTS:
        base.reason = f"needs {MIN_POINTS} rounds with a dev UA at different label counts, has {len(np.unique(n))}"
        return base
    fit = fit_power_law(n, y, se)
    resid = y - fit(n)
    dof = len(n) - 3
    spread = math.sqrt(float(resid @ resid) / dof) if dof > 0 else 0.0
    s = np.full(len(n), spread) if se is None else np.maximum(np.asarray(se, dtype=float), spread)
    if not np.all(s > 0):
        base.reason = "no standard error for the dev UA and no spare points to estimate one"
        return base
    rng = np.random.default_rng(seed)
    ys = fit(n)[None, :] + rng.normal(0.0, 1.0, size=(bootstrap, len(n))) * s[None, :]
    n0 = float(n.max())
    a, b, c = _fit_grid(n / n0, ys, 1.0 / s ** 2)
    b = b * n0 ** c
    if target is not None:
        gap = a - target
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = np.where((gap > 0) & (b > 0), (b / np.where(gap > 0, gap, 1.0)) ** (1.0 / c), np.inf)
        point = fit.labels_for(target)
        ua_at = target if math.isfinite(point) else None
    else:
        reps = _flat_labels(b, c, flat_gain)
        point = fit.flat_at(flat_gain)
        ua_at = float(fit(point))
    lo, hi = (float(v) for v in np.quantile(reps, [0.025, 0.975], method="inverted_cdf"))
    alo, ahi = (float(v) for v in np.quantile(a, [0.025, 0.975]))
    return Forecast(points=len(n), current_labels=current, target=target, flat_gain=flat_gain, curve=fit,
                    labels=point, interval=(lo, hi), ua_at=ua_at, asymptote_interval=(alo, ahi),
                    replicates=(a, b, c))


def forecast_rounds(rows: list[dict], cfg: ForecastConfig | None = None) -> Forecast:
    """The forecast of a run's finished rounds (``metrics.jsonl`` rows or :class:`RoundReport` dicts): their
    ``labelled`` and dev UA (rounds without a dev UA are left out)."""
    cfg = cfg or ForecastConfig()
    pts = [(r["labelled"], r["dev"]["ua"], ua_standard_error(r["dev"])) for r in rows
           if (r.get("dev") or {}).get("ua") is not None and r.get("labelled")]
    if not pts and rows and any((r.get("dev") or {}).get("ccc") is not None for r in rows):
        return Forecast(points=0, current_labels=None, reason="the model has no classes (dev CCC only): no UA forecast")
    labels = [p[0] for p in pts]
    se = None if any(p[2] is None for p in pts) else [p[2] for p in pts]
    return forecast(labels, [p[1] for p in pts], se, target=cfg.target_ua, flat_gain=cfg.flat_gain,
                    bootstrap=cfg.bootstrap)
