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
proxy scores (measured in the model probe; their seconds are the search's to report). Each source
is turned into normal scores over the pool and the evaluated candidates, and the sources are
averaged.

Prior runs (``priors``, agent.surrogate.priors) predict the search signal from other tasks'
results. Their prediction and the run's own surrogate are combined as a ranking-weighted
ensemble (after RGPE, Feurer et al. 2018): the prior's weight ``w`` is the share of bootstrap
resamples of the run's evaluations on which the prior orders more pairs correctly than the run's
own surrogate does (leave-one-out), so a prior leads while the run knows little and fades where
it misranks what the run measured. The mean is ``w * prior + (1 - w) * own``; the uncertainty
stays the run's own (a prior's uncertainty is largest for cells unlike anything it evaluated,
mostly poor ones, which expected improvement then chased); the incumbent of expected improvement
is the ensemble's mean at the best evaluated candidate (the run's normal scores widen with each
evaluation, the prior's do not). The prior runs' best candidates also join the pool at the start
(agent.proposers.portfolio). This replaced the prior as evidence (its prediction trusted as a
proxy is), which on NAS-Bench-201 ended no better and, where the prior's ranks did not carry
over, let a run's uncertainty about poor cells draw its evaluations: bench/search_nb201.py,
docs/search.md.
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
from agent.surrogate.priors import PriorRuns
from evaluator.objectives import OBJECTIVES, Objectives

Z80 = 1.2815515655446004  # the 90th percentile of the standard normal: 80% two-sided intervals
MAX_FIT = 250  # evaluations a surrogate is fitted on at most (bench/surrogate_overhead.py)
COST_SPREAD = 2.0  # training seconds must vary this much (max / min) before the cost term applies
PRIOR_RESAMPLES = 64  # bootstrap resamples that weigh a prior against the run's own surrogate


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
    prior_weight: float | None = None


class Selector:
    def __init__(self, objectives: Objectives = Objectives(), *, seed: int = 0, cost: bool = True,
                 priors: PriorRuns | None = None) -> None:
        self.objectives, self.seed, self.cost = objectives, seed, cost
        self.priors = priors if priors is not None and priors.runs else None
        self.observed: list[Observed] = []
        self.fit_seconds = 0.0  # time spent fitting and scoring, for the summary
        self.last_scores: list[float] = []  # the last pool's acquisition values (cost included), in pool order
        self._kernels: dict[str, Any] = {}  # metric -> the last fitted kernel (the next fit starts there)
        self._prior_of: dict[str, float] = {}  # key -> the priors' predicted score, computed once

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
        weight, incumbent = None, None
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
            if metric == "val_accuracy" and self.priors is not None:
                p_obs = self._prior([o.key for o in obs], [o.features for o in obs])
                p_pool = self._prior([m.key for m in pool], [m.features for m in pool])
                weight = prior_weight(p_obs, model.loo_mean(e_obs), y, seed=self.seed)
                mean = weight * p_pool + (1 - weight) * mean  # the uncertainty stays the run's own
                # the incumbent on the ensemble's scale (module docstring)
                incumbent = float(np.max(weight * p_obs + (1 - weight) * model.predict(x_obs, e_obs).mean)) if obs else None
            if metric != "val_accuracy" and np.isfinite(known).any():  # exact values where known, on y's scale
                exact = model.to_scores(sign * _log(known))
                mean, sd = np.where(np.isfinite(known), exact, mean), np.where(np.isfinite(known), 0.0, sd)
            means.append(mean)
            sds.append(sd)
            models[metric] = (model, sign)
        if len(metrics) == 1:
            best = float(normal_scores(models[metrics[0]][0]._sorted_values).max()) if obs else 0.0
            best = incumbent if incumbent is not None else best
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
                             evidence=e_pool, model=models["val_accuracy"][0], rule=rule, evaluations=len(obs),
                             prior_weight=weight)
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
        if last.prior_weight is not None:
            why["prior_weight"] = _round(last.prior_weight)
        return Pick(index=i, why=why)

    def _prior(self, keys: Sequence[str], rows: Sequence[dict[str, float]]) -> np.ndarray:
        """The priors' predicted scores of these candidates, each predicted once."""
        todo = [i for i, k in enumerate(keys) if k not in self._prior_of]
        if todo:
            means = self.priors.scores([rows[i] for i in todo])
            for j, i in enumerate(todo):
                self._prior_of[keys[i]] = float(means[j])
        return np.array([self._prior_of[k] for k in keys], dtype=float)

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
        """Predicted training seconds of the pool (relative values are what count); None: no cost term.

        The seconds observed are the evaluations' training seconds (``device_seconds``; the
        portfolio falls back to the wall seconds where nothing reports them). Where the space
        counts FLOPs, they are the cost model's evidence (their ranks, as a proxy's;
        bench/layers_table.py, on the digits: Spearman 0.68 with a layers network's worker seconds,
        a Gaussian process on 10 timings 0.39, the process with FLOPs as evidence 0.70). Before
        three timings they stand in for the seconds, plus a fixed term as large as the median
        member's compute (data loading and the first steps do not shrink with the network), so
        that small networks are not taken for free."""
        if not self.cost:
            return None
        log_flops = _log10_flops([o.features for o in obs] + [m.features for m in pool])
        secs = [o.seconds for o in obs]
        usable = [i for i, s in enumerate(secs) if s is not None and s > 0]
        if len(usable) < 3:  # nothing timed yet: FLOPs, where known, stand in for seconds
            f = 10.0 ** log_flops[len(obs):] if log_flops is not None else None
            if f is not None and f.max() > COST_SPREAD * max(f.min(), 1.0):
                return 1.0 + f / max(float(np.median(f)), 1.0)
            return None
        values = np.array([secs[i] for i in usable])
        if values.max() < COST_SPREAD * values.min():
            return None
        evidence = normal_scores(log_flops) if log_flops is not None else None
        e_obs = evidence[: len(obs)][usable] if evidence is not None else None
        e_pool = evidence[len(obs):] if evidence is not None else None
        model = GaussianSurrogate(seed=self.seed).fit(x_obs[usable], np.log(values), e_obs,
                                                      start=self._kernels.get("seconds"))
        if model.kernel is not None:
            self._kernels["seconds"] = model.kernel
        return np.exp(model.to_values(model.predict(x_pool, e_pool).mean))


OBJECTIVES_BY_METRIC = {key: (name, direction) for name, (key, direction, _) in OBJECTIVES.items()}


def prior_weight(prior: np.ndarray, own: np.ndarray | None, y: np.ndarray, *, seed: int = 0) -> float:
    """The prior's share of the ensemble: the share of bootstrap resamples of the evaluations
    (``y``, higher is better) on which ``prior``'s predictions misorder fewer pairs than ``own``'s
    leave-one-out predictions (ties count half); 1 while the run's own surrogate has no
    predictions (``own`` None) or fewer than 2 evaluations."""
    n = len(y)
    if own is None or n < 2:
        return 1.0
    counts = np.random.default_rng([seed, n]).multinomial(n, np.full(n, 1.0 / n), size=PRIOR_RESAMPLES)
    loss_prior = np.einsum("si,ij,sj->s", counts, _misordered(np.asarray(prior, dtype=float), y), counts)
    loss_own = np.einsum("si,ij,sj->s", counts, _misordered(np.asarray(own, dtype=float), y), counts)
    return float(np.mean((loss_prior < loss_own) + 0.5 * (loss_prior == loss_own)))


def _misordered(predicted: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 for each pair (i, j) whose measured order the prediction reverses (ties in ``y`` never count)."""
    return (np.sign(predicted[:, None] - predicted[None, :]) * np.sign(y[:, None] - y[None, :]) < 0).astype(float)


def _log10_flops(rows: Sequence[dict[str, float]]) -> np.ndarray | None:
    """The encodings' ``log10_flops`` (the space's static count), or None unless every row has one."""
    values = [row.get("log10_flops") for row in rows]
    if not values or any(v is None for v in values):
        return None
    return np.array(values, dtype=float)


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
