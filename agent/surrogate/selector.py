"""The selector: what the run has measured, the surrogates fitted on it, and the pick from a pool.

``observe`` records each finished candidate (its encoding, its objective values, its training
seconds, its evidence); ``choose(pool, n)`` refits the surrogates and returns the ``n`` pool
members with the best acquisition value, each with an explanation (``Pick.why``: the
surrogate's prediction and 80% interval on the measured scale, the acquisition value, the rule,
the pool's size, what the evidence weighed), which the search records with the candidate so
``agent show`` can say why it was evaluated.

What is modelled (agent.surrogate.model): validation accuracy always; with several objectives
each other objective too (log scale), unless a pool member's value is already known without
training (its static parameter / FLOP count, ``known``); training seconds (log) for the cost
term once they vary. A candidate that failed, timed out or came back without an accuracy counts
as worse than every candidate that finished, so the surrogate learns to avoid its kind.

Evidence (``Evidence``) is anything known of every pool member without an evaluation: zero-cost
proxy scores (measured in the model probe; their seconds are the search's to report) and prior
runs' predictions (agent.surrogate.priors). Each source is turned into normal scores over the
pool and the evaluated candidates, and the sources are averaged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.surrogate.acquisition import expected_improvement, hypervolume_improvement, per_cost, pick_batch
from agent.surrogate.model import FeatureMatrix, GaussianSurrogate, normal_scores
from evaluator.objectives import OBJECTIVES, Objectives

Z80 = 1.2815515655446004  # the 90th percentile of the standard normal: 80% two-sided intervals
MAX_FIT = 250  # evaluations a surrogate is fitted on at most (bench/surrogate_overhead.py)
COST_SPREAD = 2.0  # training seconds must vary this much (max / min) before the cost term applies


@dataclass
class Observed:
    key: str
    features: dict[str, float]
    values: dict[str, float | None]  # objective metric -> measured (None: failed)
    seconds: float | None
    evidence: dict[str, float]  # source -> raw score


@dataclass
class PoolMember:
    key: str
    spec: dict[str, Any]
    features: dict[str, float]
    operator: str
    evidence: dict[str, float] = field(default_factory=dict)
    known: dict[str, float] = field(default_factory=dict)  # objective metric -> value known without training


@dataclass
class Pick:
    index: int  # into the pool
    why: dict[str, Any]


EvidenceSource = Callable[[Sequence[PoolMember]], None]  # fills member.evidence in place


@dataclass
class _Scored:
    """The last pool scored: what ``Selector.pick`` explains a pick with."""

    pool: list[PoolMember]
    means: np.ndarray
    sds: np.ndarray
    acquisition: np.ndarray
    seconds: np.ndarray | None
    evidence: np.ndarray | None
    model: GaussianSurrogate
    rule: str
    evaluations: int


class Selector:
    def __init__(self, objectives: Objectives = Objectives(), *, seed: int = 0, cost: bool = True) -> None:
        self.objectives, self.seed, self.cost = objectives, seed, cost
        self.observed: list[Observed] = []
        self.fit_seconds = 0.0  # time spent fitting and scoring, for the summary
        self.last_scores: list[float] = []
        self._kernels: dict[str, Any] = {}  # metric -> the last fitted kernel (the next fit starts there)  # the last pool's acquisition values (cost included), in pool order

    def observe(self, key: str, features: dict[str, float], values: dict[str, float | None],
                seconds: float | None, evidence: dict[str, float] | None = None) -> None:
        self.observed.append(Observed(key, features, values, seconds, dict(evidence or {})))

    # -- choosing ----------------------------------------------------------------------------

    def choose(self, pool: Sequence[PoolMember], n: int) -> list[Pick]:
        started = time.monotonic()
        try:
            return self._choose(pool, n)
        finally:
            self.fit_seconds += time.monotonic() - started

    def _choose(self, pool: Sequence[PoolMember], n: int) -> list[Pick]:
        if not pool:
            self.last_scores = []
            return []
        obs = self._fitted_on()
        table = FeatureMatrix([o.features for o in obs] + [m.features for m in pool])
        x_obs, x_pool = table.matrix[: len(obs)], table.matrix[len(obs):]
        e_obs, e_pool = self._evidence(obs, pool)
        metrics = self.objectives.metrics
        means, sds, models = [], [], {}
        for metric in metrics:
            sign = 1.0 if OBJECTIVES_BY_METRIC[metric][1] == "max" else -1.0
            known = np.array([m.known.get(metric, np.nan) for m in pool], dtype=float)
            y = _targets([o.values.get(metric) for o in obs], sign, log=metric != "val_accuracy")
            model = GaussianSurrogate(seed=self.seed).fit(x_obs, y, e_obs if metric == "val_accuracy" else None,
                                                          start=self._kernels.get(metric))
            if model.kernel is not None:
                self._kernels[metric] = model.kernel
            pred = model.predict(x_pool, e_pool if metric == "val_accuracy" else None)
            mean, sd = pred.mean, pred.sd
            if metric != "val_accuracy" and np.isfinite(known).any():  # exact values where known, on y's scale
                exact = model.to_scores(sign * _log(known))
                mean, sd = np.where(np.isfinite(known), exact, mean), np.where(np.isfinite(known), 0.0, sd)
            means.append(mean)
            sds.append(sd)
            models[metric] = (model, sign)
        if len(metrics) == 1:
            best = float(normal_scores(models[metrics[0]][0]._sorted_values).max()) if obs else 0.0
            acquisition = expected_improvement(means[0], sds[0], best) if obs else means[0] + sds[0]
            rule = "expected improvement" if obs else "evidence and prior only (nothing evaluated yet)"
        else:
            observed = np.column_stack([normal_scores(_targets([o.values.get(m) for o in obs], models[m][1],
                                                               log=m != "val_accuracy")) for m in metrics])
            if len(obs):
                acquisition = hypervolume_improvement(np.column_stack(means), np.column_stack(sds), observed, seed=self.seed)
            else:
                acquisition = means[0] + sds[0]
            rule = "expected hypervolume improvement" if obs else "evidence and prior only (nothing evaluated yet)"
        seconds = self._seconds(obs, pool, x_obs, x_pool)
        score = per_cost(acquisition, seconds)
        self.last_scores = [float(v) for v in score]
        picks = pick_batch(score, x_pool, n)
        self._last = _Scored(pool=list(pool), means=means[0], sds=sds[0], acquisition=acquisition, seconds=seconds,
                             evidence=e_pool, model=models["val_accuracy"][0], rule=rule, evaluations=len(obs))
        return [self.pick(i, rank + 1) for rank, i in enumerate(picks)]

    def pick(self, i: int, batch_rank: int, note: str | None = None) -> Pick:
        """Pool member ``i`` of the last ``choose``, with its explanation."""
        last = self._last
        m, sd = last.means[i], last.sds[i]
        low, mid, high = last.model.to_values(np.array([m - Z80 * sd, m, m + Z80 * sd]))
        why = {"rule": last.rule, "operator": last.pool[i].operator, "pool": len(last.pool),
               "evaluations": last.evaluations, "acquisition": _round(last.acquisition[i]), "score": _round(m),
               "sd": _round(sd), "predicted_val_accuracy": _round(mid), "interval80": [_round(low), _round(high)],
               "batch_rank": batch_rank}
        if note:
            why["note"] = note
        if last.evidence is not None:
            why["evidence"] = _round(last.evidence[i])
            why["evidence_weight"] = _round(last.model.beta)
            why["evidence_sources"] = sorted(last.pool[i].evidence)
        if last.seconds is not None:
            why["predicted_seconds"] = _round(last.seconds[i])
        return Pick(index=i, why=why)

    def _fitted_on(self) -> list[Observed]:
        """What the surrogates are fitted on: every evaluation up to MAX_FIT; beyond, the best half
        of MAX_FIT and a seeded sample of the rest (a Gaussian process costs n^3)."""
        obs = self.observed
        if len(obs) <= MAX_FIT:
            return obs
        acc = np.array([o.values.get("val_accuracy") if o.values.get("val_accuracy") is not None else -np.inf
                        for o in obs], dtype=float)
        order = np.argsort(-acc, kind="stable")
        best, rest = order[: MAX_FIT // 2], order[MAX_FIT // 2:]
        rng = np.random.default_rng([self.seed, len(obs)])
        chosen = np.concatenate([best, rng.choice(rest, MAX_FIT - len(best), replace=False)])
        return [obs[i] for i in sorted(chosen)]

    def _evidence(self, obs: Sequence[Observed], pool: Sequence[PoolMember]) -> tuple[np.ndarray | None, np.ndarray | None]:
        sources = sorted({s for m in pool for s in m.evidence} | {s for o in obs for s in o.evidence})
        if not sources:
            return None, None
        rows = [o.evidence for o in obs] + [m.evidence for m in pool]
        total = np.zeros(len(rows))
        for source in sources:
            raw = np.array([r.get(source, np.nan) for r in rows], dtype=float)
            finite = np.isfinite(raw)
            scores = np.full(len(rows), 0.0)
            if finite.any():
                scores[finite] = normal_scores(raw[finite])
                scores[~finite] = scores[finite].min() if (~finite).any() else 0.0  # undefined: ranked last
            total += scores
        combined = normal_scores(total) if len(sources) > 1 else total
        return combined[: len(obs)], combined[len(obs):]

    def _seconds(self, obs: Sequence[Observed], pool: Sequence[PoolMember], x_obs: np.ndarray,
                 x_pool: np.ndarray) -> np.ndarray | None:
        """Predicted training seconds of the pool (relative values are what count); None: no cost term."""
        if not self.cost:
            return None
        secs = [o.seconds for o in obs]
        usable = [i for i, s in enumerate(secs) if s is not None and s > 0]
        if len(usable) < 3:  # nothing timed yet: FLOPs, where known, stand in for seconds
            flops = np.array([m.known.get("flops", np.nan) for m in pool], dtype=float)
            if np.isfinite(flops).all() and flops.max() > COST_SPREAD * max(flops.min(), 1.0):
                return np.maximum(flops, 1.0)
            return None
        values = np.array([secs[i] for i in usable])
        if values.max() < COST_SPREAD * values.min():
            return None
        model = GaussianSurrogate(seed=self.seed).fit(x_obs[usable], np.log(values), start=self._kernels.get("seconds"))
        if model.kernel is not None:
            self._kernels["seconds"] = model.kernel
        return np.exp(model.to_values(model.predict(x_pool).mean))


OBJECTIVES_BY_METRIC = {key: (name, direction) for name, (key, direction, _) in OBJECTIVES.items()}


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.maximum(values, 1e-12))


def _targets(values: Sequence[float | None], sign: float, *, log: bool) -> np.ndarray:
    """Measured values, maximised; a failure (None, not finite) below every measured one."""
    ok = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    ys = []
    floor = None
    if ok:
        arr = np.array(ok)
        arr = sign * (_log(arr) if log else arr)
        floor = float(arr.min()) - 1e-6 * (1 + abs(float(arr.min())))
    for v in values:
        if v is None or not math.isfinite(float(v)):
            ys.append(floor if floor is not None else 0.0)
        else:
            y = float(np.log(max(float(v), 1e-12))) if log else float(v)
            ys.append(sign * y)
    return np.array(ys, dtype=float)


def _round(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None
