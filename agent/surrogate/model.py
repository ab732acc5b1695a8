"""The surrogate: a Gaussian process over candidates' encodings, with free evidence as its mean.

What it models. One objective's measured values (validation accuracy; a log size or latency
for the other objectives; log training seconds for the cost), from the candidates' encodings
(``SearchSpace.encode``: named features, turned into a matrix by ``FeatureMatrix``).

How. Values are first replaced by their normal scores (the rank ``r`` of ``n`` becomes
``Phi^-1((r + 0.5) / n)``): a search cares about order, a few failed or dead candidates at
chance would otherwise set the scale of everything, and runs on other tasks (priors) agree on
ranks, not on values. Then

    score(x) = beta * e(x) + g(x),    g ~ GP(0, c * Matern_5/2(l) + noise)

where ``e`` is the evidence known for every candidate without an evaluation (zero-cost proxy
scores, in normal scores over everything scored; agent.surrogate.selector), and
``beta`` has a Bayesian linear-regression posterior from the prior N(beta0, tau^2): with no
evaluation the surrogate ranks by the evidence alone, and the evaluations decide how far to
trust it. ``g`` is scikit-learn's GaussianProcessRegressor (kernel hyper-parameters by
marginal likelihood, 2 restarts, seeded), fitted to what the evidence leaves unexplained,
once there are ``MIN_POINTS`` evaluations. Predictions come back as (mean, sd) in normal
scores; ``to_values`` maps them to the measured scale (the empirical quantiles) for people;
``loo_mean`` gives each fitted point's leave-one-out prediction (how well the run's own
surrogate ranks what it measured, against a prior run's: agent.surrogate.selector).

Chosen by measurement (bench/surrogate_quality.py, docs/benchmarks.md "surrogate quality"):
on NAS-Bench-201 a GP on the encodings ranked held-out cells better than a random forest, extra
trees and Bayesian ridge at 30 and 100 training points, with 80% intervals covering 86-90%.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from statistics import NormalDist

MIN_POINTS = 3  # evaluations before the GP part is fitted (below: evidence and the prior only)
# The evidence's weight: prior mean 1 (trusted as fully informative at first: with few evaluations
# a search ranked by synflow alone beats one that lets 3-9 points overrule it, bench/search_nb201.py),
# sd 0.2, so that about 25 evaluations weigh as much as the prior.
BETA_PRIOR = (1.0, 0.2)
FIXED_BELOW = 20  # fewer evaluations: the kernel keeps its starting hyper-parameters (likelihood overfits)


_NORMAL = NormalDist()
_erf = np.frompyfunc(math.erf, 1, 1)


def normal_quantile(p: np.ndarray) -> np.ndarray:
    """The standard normal's inverse CDF (the stdlib's: scipy.stats costs 0.7 s to import in
    every `agent` process)."""
    return np.array([_NORMAL.inv_cdf(float(x)) for x in np.ravel(p)]).reshape(np.shape(p))


def normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(z, dtype=float) / math.sqrt(2.0)).astype(float))


def normal_pdf(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Ranks as standard-normal quantiles (ties share their mean rank)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return values
    order = np.argsort(values, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    for v in np.unique(values):  # ties: the mean rank
        same = values == v
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    return normal_quantile((ranks + 0.5) / n)


class FeatureMatrix:
    """Named features (dicts) as a matrix with one column per name seen, each scaled to [0, 1]
    over the rows it was built from (constant columns dropped)."""

    def __init__(self, rows: list[dict[str, float]]) -> None:
        names = sorted({name for row in rows for name in row})
        raw = np.array([[row.get(n, 0.0) for n in names] for row in rows], dtype=float).reshape(len(rows), len(names))
        low, high = (raw.min(axis=0), raw.max(axis=0)) if len(rows) else (np.zeros(0), np.zeros(0))
        keep = high > low
        self.names = [n for n, k in zip(names, keep) if k]
        self._low, self._span = low[keep], (high - low)[keep]
        self.matrix = (raw[:, keep] - self._low) / self._span if len(rows) else raw

    def transform(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Other rows on this matrix's columns and scale (features it does not have are left out;
        values beyond the range it was built from fall outside [0, 1])."""
        raw = np.array([[row.get(n, 0.0) for n in self.names] for row in rows], dtype=float).reshape(len(rows), len(self.names))
        return (raw - self._low) / self._span if len(self.names) else raw


@dataclass
class Prediction:
    mean: np.ndarray  # normal scores
    sd: np.ndarray


class GaussianSurrogate:
    """One objective; the module docstring says how it works."""

    def __init__(self, *, seed: int = 0, beta_prior: tuple[float, float] = BETA_PRIOR, min_points: int = MIN_POINTS) -> None:
        self.seed, self.beta_prior, self.min_points = seed, beta_prior, min_points
        self.beta = beta_prior[0]
        self._beta_var = beta_prior[1] ** 2
        self._gp = None
        self._sorted_values = np.zeros(0)
        self._residual_sd = 1.0
        self.kernel = None  # the fitted kernel, once the likelihood chose its hyper-parameters

    def fit(self, x: np.ndarray, values: np.ndarray, evidence: np.ndarray | None = None,
            start: Any = None) -> "GaussianSurrogate":
        """``x``: the evaluated candidates' feature rows; ``values``: what was measured (higher is
        better); ``evidence``: their evidence scores (None: no evidence); ``start``: the kernel
        of the previous fit (``kernel``), whose hyper-parameters the likelihood search starts from
        (one run instead of three: a search refits after every evaluation)."""
        values = np.asarray(values, dtype=float)
        self._sorted_values = np.sort(values)
        y = normal_scores(values)
        e = np.zeros(len(y)) if evidence is None else np.asarray(evidence, dtype=float)
        b0, tau = self.beta_prior
        if evidence is None:
            self.beta, self._beta_var = 0.0, 0.0
        else:
            precision = 1.0 / tau ** 2 + float(e @ e)  # unit noise: normal scores have variance 1
            self.beta = (b0 / tau ** 2 + float(e @ y)) / precision
            self._beta_var = 1.0 / precision
        residual = y - self.beta * e
        self._residual_sd = math.sqrt(max(1.0 - min(self.beta ** 2, 0.95), 0.05))
        self._gp = None
        if len(y) >= self.min_points and x.shape[1] > 0:
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

            # distances grow with the number of features: the length scale starts at their typical size
            typical = math.sqrt(max(x.shape[1], 1)) / 2
            kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                      * Matern(length_scale=typical, length_scale_bounds=(typical / 20, typical * 50), nu=2.5)
                      + WhiteKernel(0.1, (1e-6, 1.0)))
            fixed = len(y) < FIXED_BELOW
            warm = start is not None and not fixed
            gp = GaussianProcessRegressor(start if warm else kernel, normalize_y=not fixed,
                                          n_restarts_optimizer=0 if fixed or warm else 2,
                                          optimizer=None if fixed else "fmin_l_bfgs_b", random_state=self.seed)
            with warnings.catch_warnings():  # bounds reached on tiny data: the fit is still usable
                warnings.simplefilter("ignore")
                gp.fit(x, residual)
            self._gp = gp
            if not fixed:
                self.kernel = gp.kernel_
        return self

    def predict(self, x: np.ndarray, evidence: np.ndarray | None = None) -> Prediction:
        e = np.zeros(len(x)) if evidence is None else np.asarray(evidence, dtype=float)
        if self._gp is not None:
            mean, sd = self._gp.predict(x, return_std=True)
        else:
            mean, sd = np.zeros(len(x)), np.full(len(x), self._residual_sd)
        return Prediction(mean=mean + self.beta * e, sd=np.sqrt(sd ** 2 + self._beta_var * e ** 2))

    def loo_mean(self, evidence: np.ndarray | None = None) -> np.ndarray | None:
        """Leave-one-out predictions of the fitted points (normal scores, closed form from the
        Gaussian process's Cholesky factor: each point predicted from all the others); None before
        the Gaussian process part is fitted."""
        gp = self._gp
        if gp is None:
            return None
        from scipy.linalg import cho_solve

        inverse = cho_solve((gp.L_, True), np.eye(len(gp.alpha_)))
        alpha = np.ravel(gp.alpha_)
        y = np.ravel(gp.y_train_)  # normalised where the fit normalised: ranks are what count
        loo = y - alpha / np.diag(inverse)
        scale = np.ravel(getattr(gp, "_y_train_std", 1.0))[0] if gp.normalize_y else 1.0
        shift = np.ravel(getattr(gp, "_y_train_mean", 0.0))[0] if gp.normalize_y else 0.0
        e = np.zeros(len(loo)) if evidence is None else np.asarray(evidence, dtype=float)
        return loo * scale + shift + self.beta * e

    def to_scores(self, values: np.ndarray) -> np.ndarray:
        """Values on the measured scale as normal scores (the inverse of ``to_values`` inside the
        values seen)."""
        v = self._sorted_values
        if len(v) < 2:
            return np.zeros(len(values))
        return np.interp(values, v, normal_quantile((np.arange(len(v)) + 0.5) / len(v)))

    def to_values(self, scores: np.ndarray) -> np.ndarray:
        """Normal scores on the measured scale: the empirical quantiles between the values seen;
        beyond them, on the straight line that fits values against their scores (a few
        evaluations have not seen the extremes an interval may reach)."""
        v = self._sorted_values
        scores = np.asarray(scores, dtype=float)
        if len(v) == 0:
            return np.full(len(scores), np.nan)
        if len(v) == 1:
            return np.full(len(scores), v[0])
        grid = normal_quantile((np.arange(len(v)) + 0.5) / len(v))
        slope = max(float(np.polyfit(grid, v, 1)[0]), 0.0)
        inside = np.interp(scores, grid, v)
        below, above = scores < grid[0], scores > grid[-1]
        inside[below] = v[0] + slope * (scores[below] - grid[0])
        inside[above] = v[-1] + slope * (scores[above] - grid[-1])
        return inside
