"""Learning-curve forecasts: a candidate's final accuracy, with an honest uncertainty, from its partial curve.

What and why
    A candidate's validation curve is observed one epoch at a time. Before training it to the
    end, the search wants to know what accuracy it will reach at the final epoch, with an
    honest uncertainty, so that it can stop candidates that will almost surely not beat the
    best finished one (the incumbent) and spend the epochs elsewhere. This module answers that
    with numpy only (no torch, no scipy), fast enough to run after every epoch.

    ``CurveForecaster`` forecasts the final accuracy from a partial curve in one of two ways:

    * **curve-fit** (no finished curves yet, or fewer than ``MIN_REFERENCES``): a Bayesian model
      average over four parametric families, each fitted by least squares: pow3
      ``c - a x^-alpha``, log-linear ``c + a log x``, MMF / log-power (Hill)
      ``c + a / (1 + (x/kappa)^delta)`` and Janoschek / Weibull / exp3
      ``c + a exp(-(x/kappa)^delta)``. Every family is linear in ``(c, a)`` once its shape
      parameters are fixed, so each is solved in closed form on a grid of shapes (variable
      projection), for every prefix of the curve at once with cumulative sums. Weights are the
      fits' Gaussian likelihoods (equal prior mass per family); the predictive is the mixture of
      the components' normal predictive distributions, whose spread adds to the residual noise
      and parameter uncertainty the error each component made forecasting the second half of
      the observed prefix from its first half, grown in proportion to the remaining horizon.
      It works for any curve shape, but it
      cannot see what the training schedule will do later (a cosine schedule lifts curves near
      the end), so it is biased on such curves.
    * **run-calibrated** (``MIN_REFERENCES`` or more finished curves in the same run): the
      curves that finished earlier in the run are the data. For the candidate's current epoch
      t, the final accuracy of each finished curve is regressed on its *level* at t (the curve
      fit's smoothed value at its t-th observation) in logit space; the scale of the residuals
      is itself regressed on the level (finals of good curves spread far less than those of
      poor ones), and the predictive distribution is the kernel-smoothed set of leave-one-out
      residuals, rescaled to the candidate's level and widened by its leverage (a jackknife /
      split-conformal style interval). When the trainer also reports the **training accuracy**
      at the same epochs (``train=``, free in every trainer), a second regression adds the
      training curve's level at t as a covariate (both levels in logit space), over the
      references that have a training curve too; the two regressions share the predictive,
      weighted by their leave-one-out (PRESS) errors on those references, so a training curve
      that carries no information about the finals gets (almost) no weight. Without a training
      curve, or while fewer than 6 references (``_TRAIN_MIN_REFERENCES``, or fewer than half of
      them) have one, the forecast is the validation-only one, number for number.
      Nothing is fitted offline: every number comes from the
      curves that have finished so far, so the same code serves any model family, dataset or
      schedule, and it gets better as the run goes on.

    ``evaluator.early_stop.rule.EarlyStopRule`` spends these forecasts: it stops a candidate that
    will almost surely not beat the incumbent.

Why one module of this length: the two ways of forecasting share the input checks, the
mixture distribution of the predictive and the prefix curve fits, and more than a third of the
file is this description of what was measured and chosen; each part is read with the others.

Measured (bench/early_stopping.py: 200 NAS-Bench-201 CIFAR-10 curves of 200 epochs, validation
and training accuracy; 20 random arrival orders, candidates replayed one after another, 10 % audits;
AMD EPYC, 2 cores shared with other jobs)
    forecast, validation curve only: Spearman of the forecast with the final value 0.658 / 0.762 /
    0.824 / 0.872 after epochs 5 / 10 / 20 / 50 (last observed value: 0.677 / 0.760 / 0.831 /
    0.872); 80 % intervals held 82 / 83 / 83 / 79 % of the finals; mean absolute error 4.9 points
    at epoch 10 (last value: 27.8, curve-fit alone: 11.8).
    with the training curve (train=): Spearman 0.638 / 0.826 / 0.897 / 0.945 (the target of 0.80
    at epoch 10 is met; at epoch 5 it ranks worse than the validation curve alone, although its
    mean absolute error is lower, 4.75 vs 5.31 points: the weights follow squared error, not
    rank); 80 % intervals held 82 / 82 / 83 / 80 %; mean absolute error 2.9 points at epoch 10.
    time: 3.6 ms median per forecast with the training curve, up to 199 finished curves (2.7 ms
    validation-only in the run before; side by side, the training curve adds a curve fit and a
    regression: about 1.3-1.4x the validation-only time).
    rule, with the training curve: P(beat) < 0.01 saves 4.12x the epochs with zero regret in all
    20 orders; < 0.05 4.85x at 0.016 points mean regret; < 0.1 5.40x at 0.027; < 0.2 5.93x at
    0.077 (0.36 worst; the largest saving within 0.1 points). Validation curve only: < 0.01 3.46x
    and < 0.05 4.27x at zero regret, < 0.1 4.87x at 0.042, < 0.2 5.54x at 0.127. The best
    hand-set baseline ("stop when 5 points behind the incumbent's curve from epoch 20") saves
    4.44x at zero regret, and 6.84x at 0.11 points from epoch 5. Full tables: docs/benchmarks.md.

How it was chosen (the same replay; prototypes measured on 3-20 orders)
    Spearman at epoch 10, forecasts made with only earlier curves finished: curve-fit
    extrapolation alone 0.60 (it cannot see the late rise of the cosine schedule: mean bias about
    -9 points); k-nearest finished prefixes 0.73-0.77; a Gaussian process on the prefix 0.77; the
    run-calibrated regression 0.76. Ranking at epoch 10 stays at the last value's level: a
    10-epoch prefix of a noisy curve carries little more than its smoothed level.
    The training accuracy carries more: at epoch 10 its raw value ranks the finals at 0.837 (0.914
    at epoch 20). One regression fitted on all 200 curves at once (a ceiling, not a forecast)
    ranks them at 0.785 from the validation level, 0.837 from the training level and 0.850 from
    both; replayed with only the earlier curves, plain least squares (no interval) reached 0.752
    / 0.806 / 0.813, 0.818 with the fitted training level instead of the raw value. Variants of
    the weighting, 5 orders, Spearman at epoch 10: PRESS weights 0.827, the better model only
    0.826, val + train whenever defined 0.829; 4 / 6 / 10 references needed 0.828 / 0.827 /
    0.822: all within noise here, so the choice rests on synthetic runs where the training
    curve is unrelated to the finals: with 12 references, PRESS weights ranked at 0.780, always
    using both levels 0.741, the validation level alone 0.791 (20 seeds). With few references
    (6-39, 6 orders, epochs 10 / 20 / 39) its intervals stay calibrated at the top: 80 % held
    80 % of the finals, and 9.6 % of the top fifth's finals fell above the 90 % quantile
    (validation only: 83 % and 7.4 %).
    For stopping, a homoscedastic regression in accuracy space (residuals pooled over good and
    poor curves) was badly calibrated at the top: of the forecasts with P(beat) in [0.2, 0.5],
    0.2 % beat the incumbent, so it stopped late (3.9x at 0.02 points of regret, threshold 0.2).
    Local kernel models were sharper but overconfident with few finished curves (up to 0.58
    points of worst regret). Logit space with a residual scale that depends on the level fixed
    most of it (finals of good curves spread 0.7 points, poor ones 7-10). For the curve-fit
    forecast, 12 shape scales per family were too coarse (a saturating exponential forecast 8
    points high with a tight interval); 24 fixed it. Residual-only intervals covered 49-67 % of
    the finals of random synthetic curves (exponential, power-law, log-power); adding the
    held-out extrapolation error, grown with the horizon, 84-89 %.

Units: accuracies are fractions in [0, 1] (the project's contract); epochs are positive and
strictly increasing (fractional epochs are fine).

Use
    forecaster = CurveForecaster()
    rule = EarlyStopRule(forecaster, threshold=0.05, min_epochs=5, audit_fraction=0.1, seed=0)
    # after every epoch of candidate "c17":
    decision = rule.decide(epochs, val_accs, final_epoch=200, incumbent=best_final, candidate_id="c17",
                           train=train_accs)                 # optional: training accuracy, same epochs
    store(decision.forecast.to_dict(), decision.p_beat)        # log every prediction
    if decision.stop: ...                                      # status stopped_early
    # when a candidate reaches its final epoch (audited ones included, stopped ones not):
    forecaster.add_reference(epochs, val_accs, train=train_accs)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MIN_REFERENCES",
    "QUANTILE_LEVELS",
    "CurveForecaster",
    "CurveLike",
    "Forecast",
    "ForecastPath",
    "check_accuracy",
]

QUANTILE_LEVELS = (0.1, 0.5, 0.9)  # every Forecast carries these; 0.1..0.9 is the 80 % interval
MIN_REFERENCES = 3  # finished curves needed for the run-calibrated model (a line through 3 points keeps 1 residual dof)
_MIN_POINTS_FOR_FIT = 3  # observations needed to fit a 2-parameter curve with a residual
_HETERO_MIN_REFERENCES = 6  # references needed before the residual scale is modelled too (2 more parameters)
_TRAIN_MIN_REFERENCES = 6  # references with a train curve before the val + train regression (3 coefficients + a scale slope)
_LOGIT_EPS = 1e-4  # accuracies are clipped to [eps, 1 - eps] before the logit
_TOO_SHORT_SD = 0.25  # spread of the uninformative forecast from fewer than 3 observations (a quarter of [0, 1])
_POINT_MASS_SD = 1e-6  # "spread" of a final value that is already observed

CurveLike = Sequence[float] | np.ndarray


#############################################
#                Input checks               #
#############################################

def _as_curve(epochs: CurveLike, values: CurveLike, *, name: str = "curve") -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; return float arrays. Raises ValueError naming the input and the fix."""
    try:
        x = np.asarray(epochs, dtype=float).reshape(-1)
        y = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: epochs and values must be sequences of numbers ({exc})") from None
    if x.size == 0 or y.size == 0:
        raise ValueError(f"{name}: the curve is empty (epochs={x.size}, values={y.size}); "
                         "pass at least one observed epoch and its validation accuracy")
    if x.size != y.size:
        raise ValueError(f"{name}: {x.size} epochs but {y.size} values; pass one accuracy per observed epoch")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name}: epochs must be finite and positive, got {x.tolist()[:8]}...; "
                         "number epochs from 1 (the epoch after which the accuracy was measured)")
    if np.any(np.diff(x) <= 0):
        bad = int(np.nonzero(np.diff(x) <= 0)[0][0])
        raise ValueError(f"{name}: epochs must be strictly increasing, but epoch {x[bad + 1]:g} follows {x[bad]:g} "
                         f"(position {bad + 1}); sort the curve by epoch and drop repeated epochs")
    if not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y > 1):
        bad = int(np.nonzero(~np.isfinite(y) | (y < 0) | (y > 1))[0][0])
        hint = " (it looks like a percentage: divide by 100)" if np.isfinite(y[bad]) and 1 < y[bad] <= 100 else ""
        raise ValueError(f"{name}: accuracies must be fractions in [0, 1], got {float(y[bad])!r} "
                         f"at epoch {x[bad]:g}{hint}")
    return x, y


def _as_train(x: np.ndarray, train: CurveLike | None, *, name: str = "train curve") -> np.ndarray | None:
    """Validate an optional training-accuracy curve aligned with the epochs ``x``; None passes through."""
    if train is None:
        return None
    try:
        t = np.asarray(train, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: train must be a sequence of numbers ({exc})") from None
    if t.size != x.size:
        raise ValueError(f"{name}: {t.size} training accuracies for {x.size} epochs; pass one training accuracy "
                         "per observed epoch, aligned with epochs (or train=None)")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
        bad = int(np.nonzero(~np.isfinite(t) | (t < 0) | (t > 1))[0][0])
        hint = " (it looks like a percentage: divide by 100)" if np.isfinite(t[bad]) and 1 < t[bad] <= 100 else ""
        raise ValueError(f"{name}: training accuracies must be fractions in [0, 1], got {float(t[bad])!r} "
                         f"at epoch {x[bad]:g}{hint}")
    return t


def _check_final_epoch(final_epoch: float, last_epoch: float, *, name: str = "final_epoch") -> float:
    try:
        final = float(final_epoch)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {final_epoch!r}") from None
    if not math.isfinite(final) or final < last_epoch:
        raise ValueError(f"{name}={final_epoch!r} is before the last observed epoch {last_epoch:g}; "
                         "pass the epoch the candidate would train to (its full schedule), not the current one")
    return final


def check_accuracy(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an accuracy in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        hint = " (it looks like a percentage: divide by 100)" if 1 < v <= 100 else ""
        raise ValueError(f"{name} must be an accuracy in [0, 1], got {value!r}{hint}")
    return v


#############################################
#          Normal distribution (numpy)      #
#############################################

def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, fractional error < 1.2e-7 (Numerical Recipes' erfcc, Chebyshev fit)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    ans = t * np.exp(poly)
    return np.where(x >= 0, ans, 2.0 - ans)


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * _erfc(np.asarray(z, dtype=float) / math.sqrt(2.0))


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(p, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.log(q / (1.0 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(16)  # E[f(N(m, s^2))] by Gauss-Hermite quadrature


#############################################
#                 Forecasts                 #
#############################################

@dataclass(frozen=True)
class Forecast:
    """The forecast of one curve's accuracy at ``final_epoch``, made after ``epoch``.

    The predictive distribution is a mixture of normals, in accuracy space ("unit", with the mass
    outside [0, 1] piled on the bounds) or in logit space ("logit"). ``mean`` and ``quantiles``
    are fractions in [0, 1]; ``prob_above(x)`` is P(final > x). ``method`` says which model made
    it: "observed" (the final epoch is already observed), "too-short" (fewer than 3 observations)
    or "no-fit" (no curve family gives a forecast inside [0, 1]): both an uninformative forecast
    around the last value; "curve-fit" (parametric families only) or "run-calibrated" (learned
    from ``references`` finished curves of the same run).
    """

    epoch: float
    final_epoch: float
    last_value: float
    mean: float
    quantiles: dict[float, float]
    method: str
    references: int
    space: str = field(repr=False)
    locs: np.ndarray = field(repr=False)
    scales: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)

    @property
    def lower(self) -> float:
        """The 10 % quantile: with ``upper``, the 80 % predictive interval."""
        return self.quantiles[0.1]

    @property
    def upper(self) -> float:
        """The 90 % quantile."""
        return self.quantiles[0.9]

    @property
    def median(self) -> float:
        return self.quantiles[0.5]

    def prob_above(self, value: float) -> float:
        """P(final accuracy > value); ``value`` is a fraction (an incumbent's final accuracy)."""
        v = check_accuracy(value, "value")
        return float(_mixture_sf(v, self.locs[:, None], self.scales[:, None], self.weights[:, None],
                                 np.array([self.space == "logit"]))[0])

    def quantile(self, q: float) -> float:
        """The q-quantile of the final accuracy (0 < q < 1)."""
        if not (0.0 < q < 1.0):
            raise ValueError(f"quantile level q={q!r} must be strictly between 0 and 1")
        return float(_mixture_quantiles(self.locs, self.scales, self.weights, self.space == "logit", [q])[0])

    def interval(self, level: float = 0.8) -> tuple[float, float]:
        """The central predictive interval holding ``level`` of the probability (default 80 %)."""
        if not (0.0 < level < 1.0):
            raise ValueError(f"interval level={level!r} must be strictly between 0 and 1, e.g. 0.8")
        lo, hi = _mixture_quantiles(self.locs, self.scales, self.weights, self.space == "logit",
                                    [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def to_dict(self) -> dict:
        """A JSON-ready record (fractions) to store beside the candidate's evaluation."""
        return {"epoch": self.epoch, "final_epoch": self.final_epoch, "last_value": self.last_value,
                "mean": self.mean, "quantiles": {str(q): v for q, v in self.quantiles.items()},
                "method": self.method, "references": self.references}


@dataclass(frozen=True)
class ForecastPath:
    """Forecasts for every prefix of one curve at once (``epochs[i]`` = last epoch of prefix i).

    What a replay needs: ``prob_above(x)`` for all prefixes in one vectorised call, and
    ``at(i)``, the same ``Forecast`` that ``CurveForecaster.forecast`` returns for the prefix
    ending at ``epochs[i]``. Components are stored column-wise: ``locs[:, i]`` etc.
    """

    epochs: np.ndarray
    values: np.ndarray
    final_epoch: float
    methods: tuple[str, ...]
    references: np.ndarray  # (T,) finished curves the forecast of each prefix rests on
    is_logit: np.ndarray  # (T,) bool
    locs: np.ndarray  # (C, T)
    scales: np.ndarray  # (C, T)
    weights: np.ndarray  # (C, T), columns sum to 1

    def __len__(self) -> int:
        return len(self.epochs)

    def prob_above(self, value: float) -> np.ndarray:
        """P(final > value) for every prefix, shape (T,)."""
        v = check_accuracy(value, "value")
        return _mixture_sf(v, self.locs, self.scales, self.weights, self.is_logit)

    def at(self, index: int) -> Forecast:
        """The forecast made after observing ``epochs[:index + 1]`` (negative indices count from the end)."""
        i = range(len(self.epochs))[index]
        keep = self.weights[:, i] > 0
        locs, scales, weights = self.locs[keep, i], self.scales[keep, i], self.weights[keep, i]
        logit = bool(self.is_logit[i])
        qs = _mixture_quantiles(locs, scales, weights, logit, QUANTILE_LEVELS)
        return Forecast(epoch=float(self.epochs[i]), final_epoch=self.final_epoch, last_value=float(self.values[i]),
                        mean=_mixture_mean(locs, scales, weights, logit),
                        quantiles={q: float(v) for q, v in zip(QUANTILE_LEVELS, qs)},
                        method=self.methods[i], references=int(self.references[i]),
                        space="logit" if logit else "unit", locs=locs, scales=scales, weights=weights)


def _mixture_sf(value: float, locs: np.ndarray, scales: np.ndarray, weights: np.ndarray,
                is_logit: np.ndarray) -> np.ndarray:
    """P(X > value) per column for mixtures in unit or logit space; (C, T) components -> (T,)."""
    if value >= 1.0:
        return np.zeros(locs.shape[1])
    if value <= 0.0:
        return np.ones(locs.shape[1])
    thresholds = np.where(is_logit, _logit(value), value)[None, :]
    sf = _normal_sf((thresholds - locs) / scales)
    return np.clip((weights * sf).sum(axis=0), 0.0, 1.0)


def _mixture_quantiles(locs: np.ndarray, scales: np.ndarray, weights: np.ndarray, logit: bool,
                       levels: Sequence[float]) -> np.ndarray:
    """Quantiles of a 1-D mixture by bisection in its own space, mapped to [0, 1]."""
    lo = float(np.min(locs - 12 * scales))
    hi = float(np.max(locs + 12 * scales))
    q = np.asarray(levels, dtype=float)
    a, b = np.full(q.shape, lo), np.full(q.shape, hi)
    for _ in range(60):  # (hi - lo) / 2^60: far below any accuracy that matters
        mid = 0.5 * (a + b)
        cdf = (weights[None, :] * (1.0 - _normal_sf((mid[:, None] - locs[None, :]) / scales[None, :]))).sum(axis=1)
        below = cdf < q
        a, b = np.where(below, mid, a), np.where(below, b, mid)
    x = 0.5 * (a + b)
    return _sigmoid(x) if logit else np.clip(x, 0.0, 1.0)


def _mixture_mean(locs: np.ndarray, scales: np.ndarray, weights: np.ndarray, logit: bool) -> float:
    points = locs[:, None] + math.sqrt(2.0) * scales[:, None] * _GH_NODES[None, :]
    mapped = _sigmoid(points) if logit else np.clip(points, 0.0, 1.0)
    return float((weights[:, None] * mapped * _GH_WEIGHTS[None, :]).sum() / math.sqrt(math.pi))


#############################################
#   Curve fits: parametric families, every  #
#   prefix at once                          #
#############################################

_POW_ALPHAS = np.geomspace(0.05, 4.0, 12)  # pow3 exponents
_SHAPE_SCALES = np.geomspace(0.002, 1.0, 24)  # Hill / Weibull scales, as fractions of the final epoch (12 were too coarse: measured)
_SHAPE_POWERS = (0.5, 1.0, 2.0, 4.0)  # Hill / Weibull exponents
_FAMILIES = ("pow3", "log-linear", "mmf/log-power", "janoschek/weibull")


def _basis(x: np.ndarray, final: float) -> tuple[np.ndarray, np.ndarray]:
    """Shape functions g_k at x and at the final epoch, (K, len(x) + 1), and each one's log prior weight.

    Each family member is y = c + a g_k(x); the families get equal prior mass, split evenly
    over their shape grids.
    """
    xs = np.append(x, final)
    rows, family = [xs[None, :] ** -_POW_ALPHAS[:, None]], [np.zeros(len(_POW_ALPHAS), int)]
    rows.append(np.log(xs)[None, :])
    family.append(np.ones(1, int))
    ratio = xs[None, None, :] / (final * _SHAPE_SCALES)[:, None, None]  # (scales, 1, X)
    powered = ratio ** np.asarray(_SHAPE_POWERS)[None, :, None]  # (scales, powers, X)
    rows.append((1.0 / (1.0 + powered)).reshape(-1, len(xs)))
    rows.append(np.exp(-powered).reshape(-1, len(xs)))
    shapes = len(_SHAPE_SCALES) * len(_SHAPE_POWERS)
    family += [np.full(shapes, 2), np.full(shapes, 3)]
    g, fam = np.vstack(rows), np.concatenate(family)
    log_prior = -np.log(np.bincount(fam)[fam] * len(_FAMILIES))
    return g, log_prior


@dataclass(frozen=True)
class _PrefixFits:
    """The parametric fits of every prefix of one curve (columns = prefixes)."""

    level: np.ndarray  # (T,) fitted (smoothed) accuracy at the prefix's last epoch
    pred: np.ndarray  # (K, T) each component's forecast at the final epoch
    sd: np.ndarray  # (K, T) each component's predictive sd there
    weight: np.ndarray  # (K, T) posterior weights (0 for invalid components); a column of zeros: no fit


def _fit_prefixes(x: np.ndarray, y: np.ndarray, final: float) -> _PrefixFits:
    """Least-squares fits of y = c + a g_k(x) on every prefix, in closed form with cumulative sums."""
    t = len(y)
    g_all, log_prior = _basis(x, final)
    g0 = g_all[:, :1]  # shift by the first value: keeps the sums well conditioned
    g, g_final = g_all[:, :t] - g0, g_all[:, t:] - g0
    n = np.arange(1, t + 1, dtype=float)[None, :]
    s_g, s_gg = np.cumsum(g, axis=1), np.cumsum(g * g, axis=1)
    s_y, s_gy, s_yy = np.cumsum(y)[None, :], np.cumsum(g * y, axis=1), np.cumsum(y * y)[None, :]
    det = n * s_gg - s_g ** 2
    solvable = det > 1e-9 * np.maximum(n * s_gg, 1e-300)
    det = np.where(solvable, det, 1.0)
    a = (n * s_gy - s_g * s_y) / det
    c = (s_y - a * s_g) / n
    sse = np.maximum(s_yy - c * s_y - a * s_gy, 1e-12 * n)
    pred = c + a * g_final
    fitted_last = c + a * g
    leverage = (s_gg - 2 * g_final * s_g + n * g_final ** 2) / det  # Var(pred) / sigma^2
    # Extrapolation error, measured on the curve itself: fit the first half of each prefix, score its
    # forecast of the second half, and let that error variance grow in proportion to the horizon
    # (final - last epoch) / (last epoch - end of the first half).
    head = np.ceil(n[0] / 2).astype(int) - 1  # index of the first half's last point, per prefix
    h_n = n[:, head]
    h_c, h_a, h_ok = c[:, head], a[:, head], solvable[:, head]
    t_n = n - h_n
    t_y, t_yy = s_y - s_y[:, head], s_yy - s_yy[:, head]
    t_g, t_gg, t_gy = s_g - s_g[:, head], s_gg - s_gg[:, head], s_gy - s_gy[:, head]
    tail_sse = (t_yy - 2 * h_c * t_y - 2 * h_a * t_gy + t_n * h_c ** 2 + 2 * h_a * h_c * t_g + h_a ** 2 * t_gg)
    tail_mse = np.maximum(tail_sse, 0.0) / np.maximum(t_n, 1.0)
    horizon = (final - x) / np.maximum(x - x[head], 1e-9)
    sd = np.sqrt(sse / np.maximum(n - 2, 1) * (1.0 + np.maximum(leverage, 0.0)) + tail_mse * horizon[None, :])
    valid = (solvable & h_ok & np.isfinite(pred) & np.isfinite(sd) & (pred >= 0.0) & (pred <= 1.0)
             & (n >= _MIN_POINTS_FOR_FIT))
    log_w = np.where(valid, -0.5 * n * np.log(sse / n) + log_prior[:, None], -np.inf)
    top = np.max(log_w, axis=0, keepdims=True)
    w = np.where(valid, np.exp(log_w - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = w.sum(axis=0, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
    level = np.where(total[0] > 0, (w * np.where(valid, fitted_last, 0.0)).sum(axis=0), y)
    return _PrefixFits(level=np.clip(level, 0.0, 1.0), pred=np.where(valid, pred, 0.0),
                       sd=np.where(valid, np.maximum(sd, 1e-4), 1.0), weight=w)


#############################################
#                Forecaster                 #
#############################################

@dataclass
class _Reference:
    epochs: np.ndarray
    values: np.ndarray
    level: np.ndarray  # fitted level at each of its observations
    train_level: np.ndarray | None = None  # fitted level of its training-accuracy curve, when it has one


class CurveForecaster:
    """Forecasts a curve's final accuracy; learns from the curves that finished in the same run.

    ``add_reference(epochs, values)`` adds a finished curve (one that reached its final epoch,
    including audited candidates; never a stopped one, whose final is unknown).
    ``forecast(epochs, values, final_epoch)`` forecasts one partial curve; ``forecast_path``
    forecasts every prefix of a curve at once (replays, and the rule's ``first_stop``).
    Each takes an optional ``train=``: the training accuracy (fractions) at the same epochs, a
    second covariate of the run-calibrated forecast when the candidate and enough references
    have one (see the module docstring); without it nothing changes.
    A reference is used for a forecast when it was observed up to ``final_epoch``; its level at
    the candidate's epoch t is its level at its last observation at or before t.
    """

    def __init__(self) -> None:
        self._references: list[_Reference] = []

    @property
    def references(self) -> int:
        """How many finished curves have been added."""
        return len(self._references)

    def add_reference(self, epochs: CurveLike, values: CurveLike, *, train: CurveLike | None = None) -> None:
        """Add a finished curve of this run (accuracies as fractions, one per observed epoch); ``train``: its
        training accuracy at the same epochs, when known (it lets forecasts that pass ``train`` use it)."""
        x, y = _as_curve(epochs, values, name="reference curve")
        tr = _as_train(x, train, name="reference curve")
        if len(x) < _MIN_POINTS_FOR_FIT:
            raise ValueError(f"reference curve: {len(x)} observations; a finished curve needs at least "
                             f"{_MIN_POINTS_FOR_FIT} to be useful as a reference")
        train_level = None if tr is None else _fit_prefixes(x, tr, float(x[-1])).level
        self._references.append(_Reference(x, y, _fit_prefixes(x, y, float(x[-1])).level, train_level))

    def forecast(self, epochs: CurveLike, values: CurveLike, final_epoch: float, *,
                 train: CurveLike | None = None) -> Forecast:
        """Forecast the accuracy at ``final_epoch`` from the observed prefix (fractions in [0, 1]); ``train``:
        the training accuracy at the same epochs, an optional covariate of the run-calibrated forecast."""
        return self.forecast_path(epochs, values, final_epoch, last_only=True, train=train).at(-1)

    def forecast_path(self, epochs: CurveLike, values: CurveLike, final_epoch: float, *,
                      last_only: bool = False, train: CurveLike | None = None) -> ForecastPath:
        """Forecasts for every prefix of the curve (or only the whole curve with ``last_only``)."""
        x, y = _as_curve(epochs, values)
        tr = _as_train(x, train)
        final = _check_final_epoch(final_epoch, float(x[-1]))
        fits = _fit_prefixes(x, y, final)
        cols = np.arange(len(x) - 1, len(x)) if last_only else np.arange(len(x))
        train_level = None if tr is None else _fit_prefixes(x, tr, final).level[cols]
        return self._assemble(x[cols], y[cols], final, fits, cols, train_level)

    # ----- internals -----

    def _usable_references(self, final: float) -> tuple[np.ndarray, list[_Reference]]:
        """The finals (logit) of the references observed up to ``final``, and those references."""
        refs = [r for r in self._references if r.epochs[-1] >= final - 1e-9]
        finals = np.array([np.interp(final, r.epochs, r.values) for r in refs])
        return _logit(finals), refs

    def _assemble(self, x: np.ndarray, y: np.ndarray, final: float, fits: _PrefixFits, cols: np.ndarray,
                  train_level: np.ndarray | None = None) -> ForecastPath:
        t = len(cols)
        finals, refs = self._usable_references(final)
        # Curve-fit components everywhere; run-calibrated ones where enough references are defined.
        locs, scales, weights = fits.pred[:, cols], fits.sd[:, cols], fits.weight[:, cols]
        counts = np.zeros(t, int)
        is_logit = np.zeros(t, bool)
        if len(refs) >= MIN_REFERENCES:
            c_locs, c_scales, c_weights, c_counts = _run_calibrated(x, fits.level[cols], finals, refs)
            with_train = [j for j, r in enumerate(refs) if r.train_level is not None]
            if (train_level is not None and len(with_train) >= _TRAIN_MIN_REFERENCES
                    and 2 * len(with_train) >= len(refs)):
                # The val + train regression joins the val-only one, weighted by their leave-one-out errors.
                t_locs, t_scales, t_weights, share = _run_calibrated_with_train(
                    x, fits.level[cols], train_level, finals[with_train], [refs[j] for j in with_train])
                c_locs, c_scales = np.vstack([c_locs, t_locs]), np.vstack([c_scales, t_scales])
                c_weights = np.vstack([c_weights * (1.0 - share)[None, :], t_weights * share[None, :]])
            is_logit = c_counts >= MIN_REFERENCES
            counts = np.where(is_logit, c_counts, 0)
            weights = np.where(is_logit[None, :], 0.0, weights)
            c_weights = np.where(is_logit[None, :], c_weights, 0.0)
            locs, scales, weights = (np.vstack([c_locs, locs]), np.vstack([c_scales, scales]),
                                     np.vstack([c_weights, weights]))
        methods = np.where(is_logit, "run-calibrated", "curve-fit").astype(object)
        # Columns no model covers: too few points, no valid fit, and the final epoch itself.
        too_short = cols + 1 < _MIN_POINTS_FOR_FIT
        no_fit = ~too_short & (weights.sum(axis=0) <= 0)
        done = x >= final
        special = too_short | no_fit | done
        if np.any(special):
            locs, scales, weights = (np.vstack([locs, y[None, :]]),
                                     np.vstack([scales, np.where(done, _POINT_MASS_SD, _TOO_SHORT_SD)[None, :]]),
                                     np.vstack([np.where(special[None, :], 0.0, weights), special[None, :].astype(float)]))
            is_logit = is_logit & ~special
            counts = np.where(special, 0, counts)
            methods[too_short] = "too-short"
            methods[no_fit] = "no-fit"
            methods[done] = "observed"
        return ForecastPath(epochs=x, values=y, final_epoch=final, methods=tuple(methods), references=counts,
                            is_logit=is_logit, locs=locs, scales=scales, weights=weights)


def _reference_levels(x: np.ndarray, refs: list[_Reference], *,
                      attribute: str = "level") -> tuple[np.ndarray, np.ndarray]:
    """Each reference's level (or ``train_level``) at each of the candidate's epochs, (n, T), and a mask of
    defined entries."""
    levels = np.zeros((len(refs), len(x)))
    mask = np.zeros((len(refs), len(x)), bool)
    by_grid: dict[bytes, list[int]] = {}
    for j, r in enumerate(refs):
        by_grid.setdefault(r.epochs.tobytes(), []).append(j)
    for members in by_grid.values():
        grid = refs[members[0]].epochs
        idx = np.searchsorted(grid, x + 1e-9, side="right") - 1  # last observation at or before each epoch
        ok = idx >= 0
        stacked = np.array([getattr(refs[j], attribute) for j in members])
        levels[members] = np.where(ok[None, :], stacked[:, np.maximum(idx, 0)], 0.0)
        mask[members] = ok[None, :]
    return levels, mask


def _masked_quantiles(values: np.ndarray, mask: np.ndarray, levels: Sequence[float]) -> list[np.ndarray]:
    """Per-column quantiles (linear interpolation) of the entries where ``mask`` holds; (n, T) -> [(T,)...]."""
    ordered = np.sort(np.where(mask, values, np.inf), axis=0)
    count = mask.sum(axis=0)
    out = []
    for q in levels:
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        v_lo = np.take_along_axis(ordered, lo[None, :], axis=0)[0]
        v_hi = np.take_along_axis(ordered, hi[None, :], axis=0)[0]
        with np.errstate(invalid="ignore"):
            out.append(np.where(count > 0, v_lo + (pos - lo) * (v_hi - v_lo), 0.0))
    return out


def _run_calibrated(x: np.ndarray, level: np.ndarray, finals: np.ndarray,
                    refs: list[_Reference]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The run-calibrated predictive for every prefix: components (n, T) in logit space.

    Per prefix t: regress logit(final) on logit(level at t) over the references (ordinary least
    squares); standardise the residuals by their leverage; once there are enough references,
    regress log|residual| on the level too and rescale the residuals to the candidate's level
    (clamped to the references' range); widen by the candidate's own leverage; smooth the
    resulting atoms with a Gaussian kernel (Silverman's bandwidth).
    """
    ref_level, mask = _reference_levels(x, refs)
    m = mask.astype(float)
    xr = _logit(ref_level)  # (n, T)
    yr = finals[:, None] * np.ones_like(xr)
    xq = _logit(level)  # (T,)
    count = m.sum(axis=0)
    safe_count = np.maximum(count, 1.0)
    x_mean = (m * xr).sum(axis=0) / safe_count
    y_mean = (m * yr).sum(axis=0) / safe_count
    sxx = (m * (xr - x_mean) ** 2).sum(axis=0)
    sxy = (m * (xr - x_mean) * (yr - y_mean)).sum(axis=0)
    flat = sxx <= 1e-12  # every reference at the same level: no slope to learn
    slope = np.where(flat, 0.0, sxy / np.where(flat, 1.0, sxx))
    intercept = y_mean - slope * x_mean
    inv_sxx = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, sxx))
    hat = 1.0 / safe_count + (xr - x_mean) ** 2 * inv_sxx
    resid = (yr - intercept - slope * xr) / np.sqrt(np.maximum(1.0 - hat, 1e-3))
    hat_new = 1.0 / safe_count + (xq - x_mean) ** 2 * inv_sxx
    centre = intercept + slope * xq
    scale_here = np.ones_like(xq)
    scale_refs = np.ones_like(xr)
    hetero = count >= _HETERO_MIN_REFERENCES
    if np.any(hetero):
        log_abs = np.log(np.abs(resid) + 1e-6)
        la_mean = (m * log_abs).sum(axis=0) / safe_count
        s_slope = np.where(flat, 0.0, (m * (xr - x_mean) * (log_abs - la_mean)).sum(axis=0) * inv_sxx)
        lo = np.where(mask, xr, np.inf).min(axis=0)
        hi = np.where(mask, xr, -np.inf).max(axis=0)
        scale_refs = np.where(hetero[None, :], np.exp(s_slope * (xr - x_mean)), 1.0)
        scale_here = np.where(hetero, np.exp(s_slope * (np.clip(xq, lo, hi) - x_mean)), 1.0)
    atoms = centre[None, :] + np.sqrt(1.0 + hat_new)[None, :] * scale_here[None, :] * resid / scale_refs
    locs, bandwidths, weights = _kernel_mixture(atoms, mask)
    return locs, bandwidths, weights, count.astype(int)


def _kernel_mixture(atoms: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-weight Gaussian kernels on the defined atoms of each column (Silverman's bandwidth, robust
    spread): locs, scales and weights, each (n, T)."""
    m = mask.astype(float)
    safe_count = np.maximum(m.sum(axis=0), 1.0)
    weights = m / safe_count
    mean_atom = (weights * atoms).sum(axis=0)
    sd = np.sqrt((weights * (atoms - mean_atom) ** 2).sum(axis=0))
    q25, q75 = _masked_quantiles(atoms, mask, (0.25, 0.75))
    spread = np.minimum(sd, np.where(q75 > q25, (q75 - q25) / 1.34, sd))
    bandwidth = np.maximum(0.9 * spread * safe_count ** -0.2, 1e-3)
    locs = np.where(mask, atoms, 0.0)
    return locs, np.broadcast_to(bandwidth, locs.shape).copy(), weights


def _run_calibrated_with_train(x: np.ndarray, level: np.ndarray, train_level: np.ndarray, finals: np.ndarray,
                               refs: list[_Reference]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The val + train regression for every prefix, over references that all have a train curve: components
    (n, T) in logit space, and the share (T,) of the predictive it deserves beside the val-only regression.

    Per prefix t: regress logit(final) on logit(val level at t) and logit(train level at t) (ordinary least
    squares, the 2 x 2 normal equations in closed form); the residuals, standardised by their leverage, get
    a scale regressed on the fitted value (clamped to the references' range) and become kernel-smoothed
    atoms around the candidate's fitted value, as in ``_run_calibrated``. The share compares the two
    regressions' leave-one-out (PRESS) errors on these references: with n references it is
    ``1 / (1 + (PRESS_both / PRESS_val) ** (n / 2))``, the posterior weight of two Gaussian models scored by
    their leave-one-out residuals, so it is near 0 or 1 once the references are many and the errors differ,
    and close to 1/2 while few references cannot tell them apart. Zero where the two levels are collinear
    over the references (nothing for a second coefficient to learn) or too few references are defined.
    """
    ref_val, mask = _reference_levels(x, refs)
    ref_train, train_mask = _reference_levels(x, refs, attribute="train_level")
    mask = mask & train_mask
    m = mask.astype(float)
    vr, ur = _logit(ref_val), _logit(ref_train)  # (n, T)
    yr = finals[:, None] * np.ones_like(vr)
    vq, uq = _logit(level), _logit(train_level)  # (T,)
    count = m.sum(axis=0)
    safe_count = np.maximum(count, 1.0)

    def mean(a: np.ndarray) -> np.ndarray:
        return (m * a).sum(axis=0) / safe_count

    v_mean, u_mean, y_mean = mean(vr), mean(ur), mean(yr)
    dv, du, dy = vr - v_mean, ur - u_mean, yr - y_mean
    dvq, duq = vq - v_mean, uq - u_mean
    svv, suu, svu = (m * dv * dv).sum(axis=0), (m * du * du).sum(axis=0), (m * dv * du).sum(axis=0)
    svy, suy = (m * dv * dy).sum(axis=0), (m * du * dy).sum(axis=0)
    # Val-only regression on the same references: its leave-one-out error is the yardstick.
    flat = svv <= 1e-12
    inv_svv = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, svv))
    hat_val = 1.0 / safe_count + dv ** 2 * inv_svv
    press_val = (m * ((dy - svy * inv_svv * dv) / np.maximum(1.0 - hat_val, 1e-3)) ** 2).sum(axis=0)
    # Val + train regression.
    det = svv * suu - svu ** 2
    ok = (det > 1e-9 * np.maximum(svv * suu, 1e-300)) & (count >= _TRAIN_MIN_REFERENCES)
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    b_v = (suu * svy - svu * suy) * inv_det
    b_u = (svv * suy - svu * svy) * inv_det
    fitted = b_v * dv + b_u * du  # (n, T), centred
    hat = 1.0 / safe_count + (suu * dv ** 2 - 2 * svu * dv * du + svv * du ** 2) * inv_det
    raw = dy - fitted
    press_both = (m * (raw / np.maximum(1.0 - hat, 1e-3)) ** 2).sum(axis=0)
    resid = raw / np.sqrt(np.maximum(1.0 - hat, 1e-3))
    centre_q = b_v * dvq + b_u * duq  # centred
    hat_new = 1.0 / safe_count + (suu * dvq ** 2 - 2 * svu * dvq * duq + svv * duq ** 2) * inv_det
    # Residual scale regressed on the fitted value (the val-only model regresses it on the level).
    log_abs = np.log(np.abs(resid) + 1e-6)
    sff = (m * fitted ** 2).sum(axis=0)
    spread = sff > 1e-12  # the fitted values differ: a slope can be learned
    s_slope = np.where(spread, (m * fitted * (log_abs - mean(log_abs))).sum(axis=0) / np.where(spread, sff, 1.0), 0.0)
    lo = np.where(mask, fitted, np.inf).min(axis=0)
    hi = np.where(mask, fitted, -np.inf).max(axis=0)
    scale_refs = np.exp(s_slope * np.where(mask, fitted, 0.0))
    scale_here = np.exp(s_slope * np.clip(centre_q, np.minimum(lo, hi), np.maximum(lo, hi)))
    atoms = (y_mean + centre_q)[None, :] + np.sqrt(1.0 + hat_new)[None, :] * scale_here[None, :] * resid / scale_refs
    locs, bandwidths, weights = _kernel_mixture(atoms, mask)
    with np.errstate(over="ignore", divide="ignore"):
        log_ratio = 0.5 * count * (np.log(np.maximum(press_both, 1e-300)) - np.log(np.maximum(press_val, 1e-300)))
    share = np.where(ok, 1.0 / (1.0 + np.exp(np.clip(log_ratio, -700.0, 700.0))), 0.0)
    return locs, bandwidths, weights, share
