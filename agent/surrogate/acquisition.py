"""Acquisition: which of a pool of unevaluated candidates are worth an evaluation.

    expected_improvement   EI over the best score so far, for one objective (Jones et al. 1998).
    hypervolume_improvement   the expected gain in dominated hypervolume of the Pareto front,
                           for several objectives, by Monte Carlo over the surrogates' posterior
                           draws (independent per objective), exact hypervolumes in 2-D and a
                           seeded Monte Carlo estimate above.
    per_cost               divides by the predicted training seconds relative to the pool's
                           median, when above it, raised to ``COST_POWER`` (0.5): a candidate
                           predicted to cost 4x the usual must promise 2x the improvement; one
                           cheaper than the median is not favoured for it (on the digits the
                           cheapest networks learnt least). The seconds are training seconds
                           (``device_seconds``); before 3 evaluations are timed, a proposal's
                           FLOPs (the layers space counts them) plus a fixed term stand in
                           (agent.surrogate.selector). Measured on the digits search
                           (bench/search_digits.py, docs/benchmarks.md): EI per whole second
                           picked small, weak networks; no cost term let one 6-million-parameter
                           network take half of a search's time.
    pick_batch             ``n`` picks for ``--workers n``: greedily the best score, then every
                           candidate's score is multiplied by 1 - exp(-d^2 / (2 s^2)) for its
                           distance d to what was picked (s: the median distance in the pool
                           divided by 4), so one batch does not spend its slots on near copies.

All values are in the surrogates' normal scores, maximised.
"""

from __future__ import annotations

import numpy as np
from agent.surrogate.model import normal_cdf, normal_pdf

COST_POWER = 0.5


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    sd = np.maximum(sd, 1e-9)
    z = (mean - best) / sd
    return (mean - best) * normal_cdf(z) + sd * normal_pdf(z)


def per_cost(acquisition: np.ndarray, seconds: np.ndarray | None) -> np.ndarray:
    if seconds is None:
        return acquisition
    relative = np.maximum(np.maximum(seconds, 1e-6) / max(float(np.median(seconds)), 1e-6), 1.0)
    return acquisition / relative ** COST_POWER


def pareto_points(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``points`` (every column maximised)."""
    keep = []
    for i, p in enumerate(points):
        dominated = np.any(np.all(points >= p, axis=1) & np.any(points > p, axis=1))
        if not dominated:
            keep.append(i)
    return points[keep]


def hypervolume(front: np.ndarray, reference: np.ndarray, *, samples: int = 20_000, seed: int = 0) -> float:
    """Volume dominated by ``front`` (maximised columns) above ``reference``."""
    front = front[np.all(front > reference, axis=1)]
    if len(front) == 0:
        return 0.0
    if front.shape[1] == 1:
        return float(front.max() - reference[0])
    if front.shape[1] == 2:
        order = np.argsort(-front[:, 0])
        volume, top = 0.0, reference[1]
        for x, y in front[order]:
            if y > top:
                volume += (x - reference[0]) * (y - top)
                top = y
        return float(volume)
    high = front.max(axis=0)
    rng = np.random.default_rng(seed)
    u = reference + rng.random((samples, front.shape[1])) * (high - reference)
    covered = np.zeros(samples, dtype=bool)
    for p in front:
        covered |= np.all(u <= p, axis=1)
    return float(covered.mean() * np.prod(high - reference))


def hypervolume_improvement(means: np.ndarray, sds: np.ndarray, observed: np.ndarray, *, draws: int = 32,
                            seed: int = 0) -> np.ndarray:
    """Expected hypervolume gain of each pool row. ``means``/``sds``: (pool, objectives);
    ``observed``: (evaluated, objectives); everything maximised, in normal scores."""
    front = pareto_points(observed)
    reference = np.minimum(observed.min(axis=0), means.min(axis=0)) - 1.0
    base = hypervolume(front, reference, seed=seed)
    rng = np.random.default_rng(seed)
    gains = np.zeros(len(means))
    for _ in range(draws):
        sample = means + sds * rng.standard_normal(means.shape)
        for i, point in enumerate(sample):
            if np.any(np.all(front >= point, axis=1)):
                continue  # dominated: no gain
            gains[i] += hypervolume(np.vstack([front, point]), reference, seed=seed) - base
    return gains / draws


def pick_batch(scores: np.ndarray, features: np.ndarray, n: int) -> list[int]:
    """Indices of ``n`` picks: best score first, the rest pushed away from what is picked."""
    scores = np.asarray(scores, dtype=float).copy()
    if len(scores) == 0:
        return []
    span = float(scores.max() - scores.min())
    scores = scores - scores.min() + 0.05 * span + 1e-12  # positive (the worst too): the penalty multiplies
    picks: list[int] = []
    scale = None
    for _ in range(min(n, len(scores))):
        i = int(np.argmax(scores))
        picks.append(i)
        if scale is None:
            sample = features[: min(len(features), 200)]
            d = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1))
            scale = max(float(np.median(d[d > 0])) / 4 if np.any(d > 0) else 1.0, 1e-6)
        distance2 = ((features - features[i]) ** 2).sum(axis=1)
        scores *= 1.0 - np.exp(-distance2 / (2 * scale ** 2))
        scores[picks] = -np.inf
    return picks
