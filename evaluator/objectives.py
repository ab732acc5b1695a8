"""Search objectives, hard constraints and the Pareto front.

Objectives: ``accuracy`` (validation accuracy, maximised) and, optionally, ``latency``
(batch-1 forward latency in ms, measured by the probe before training), ``params`` and
``flops`` (multiply-accumulates per image), all minimised. A candidate's objective values
come from one flat mapping of its metrics (``val_accuracy``, ``latency_ms``, ``params``,
``flops``); internally every objective is turned into a value to minimise.

Constraints (``max_latency_ms``, ``max_params``, ``max_flops``) are measured before training,
so a candidate that breaks one is rejected before it trains.

With one objective, "better" is higher accuracy. With several, one candidate beats another
when it dominates it (no worse in every objective, better in one); candidates that do not
dominate each other tie. Parent selection draws random weights and takes the contender with
the best weighted Chebyshev score over objectives normalised across the contenders (sizes
and latency on a log scale), so repeated selections spread over the whole front instead of
collapsing onto one trade-off.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from evaluator.errors import UserInputError, did_you_mean
from evaluator.records import Candidate, Evaluation

OBJECTIVES: dict[str, tuple[str, str, str]] = {
    # name: (metric key, direction, unit)
    "accuracy": ("val_accuracy", "max", "fraction"),
    "latency": ("latency_ms", "min", "ms"),
    "params": ("params", "min", "parameters"),
    "flops": ("flops", "min", "multiply-accumulates per image"),
}
LOG_SCALE = frozenset({"latency", "params", "flops"})  # compared as ratios, not differences

T = TypeVar("T")


@dataclass(frozen=True)
class Objectives:
    names: tuple[str, ...] = ("accuracy",)

    @classmethod
    def parse(cls, value: str | Sequence[str] | None) -> "Objectives":
        """From ``"accuracy,latency"`` or a list; accuracy must be among them."""
        if value is None:
            return cls()
        items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
        items = [v for v in items if v]
        for name in items:
            if name not in OBJECTIVES:
                raise UserInputError(f"unknown objective {name!r}{did_you_mean(name, OBJECTIVES)}",
                                     hint="objectives are " + ", ".join(OBJECTIVES) + ", e.g. --objectives accuracy,latency")
        if len(set(items)) != len(items):
            raise UserInputError(f"objective listed twice in {','.join(items)!r}", hint="name each objective once")
        if "accuracy" not in items:
            raise UserInputError(f"objectives {','.join(items) or '(none)'} do not include accuracy: the smallest, "
                                 "fastest network would win without learning anything",
                                 hint="add accuracy, e.g. --objectives accuracy," + ",".join(items or ["latency"]))
        return cls(tuple(["accuracy"] + [n for n in items if n != "accuracy"]))

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric keys the objectives read."""
        return tuple(OBJECTIVES[n][0] for n in self.names)

    def describe(self) -> list[str]:
        """For prompts and reports: one line per objective."""
        words = {"accuracy": "maximise validation accuracy", "latency": "minimise batch-1 inference latency (ms)",
                 "params": "minimise the parameter count", "flops": "minimise FLOPs (multiply-accumulates per image)"}
        return [words[n] for n in self.names]

    def vector(self, metrics: Mapping[str, Any]) -> tuple[float, ...] | None:
        """The values to minimise (accuracy negated), or None when one is missing."""
        out = []
        for name in self.names:
            key, direction, _ = OBJECTIVES[name]
            value = metrics.get(key)
            if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            out.append(-float(value) if direction == "max" else float(value))
        return tuple(out)

    def values(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The objective values as measured, keyed by metric (``val_accuracy``, ``latency_ms`` ...)."""
        return {OBJECTIVES[n][0]: metrics.get(OBJECTIVES[n][0]) for n in self.names}

    def compare(self, a: Sequence[float], b: Sequence[float]) -> float:
        """1.0 when ``a`` is better than ``b``, 0.0 when worse, 0.5 for a tie (the portfolio's reward unit)."""
        if dominates(a, b):
            return 1.0
        if dominates(b, a):
            return 0.0
        return 0.5

    def pick(self, members: Sequence[T], vectors: Sequence[Sequence[float]], rng: random.Random) -> T:
        """The winner of a tournament among ``members``: the best accuracy with one objective;
        with several, the best random-weight Chebyshev score (see the module docstring)."""
        if not members:
            raise ValueError("no members to pick from")
        if not self.multi:
            return members[min(range(len(members)), key=lambda i: (vectors[i][0], i))]
        scaled = [[math.log(max(v[j], 1e-12)) if self.names[j] in LOG_SCALE else v[j] for j in range(len(v))]
                  for v in vectors]
        lo = [min(col) for col in zip(*scaled)]
        hi = [max(col) for col in zip(*scaled)]
        weights = [rng.random() + 1e-9 for _ in self.names]
        total = sum(weights)
        weights = [w / total for w in weights]

        def score(i: int) -> float:
            return max(w * ((x - a) / (b - a) if b > a else 0.0)
                       for w, x, a, b in zip(weights, scaled[i], lo, hi))

        return members[min(range(len(members)), key=lambda i: (score(i), vectors[i][0], i))]


def objective_values(candidate: Candidate, evaluation: Evaluation) -> dict[str, Any]:
    """A finished candidate's metrics as the objectives read them: validation accuracy from the
    evaluation; params, FLOPs and latency from the probe's measurements before training, else
    from the evaluation's metrics (the worker counts the parameters it trained)."""
    out = {k: evaluation.metrics.get(k) for k in ("params", "flops", "latency_ms")}
    out |= {k: v for k, v in candidate.measurements.items() if k in out and v is not None}
    out["val_accuracy"] = evaluation.val_accuracy
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every (minimised) objective and better in at least one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Iterable[tuple[T, Sequence[float]]]) -> list[T]:
    """The items whose vectors no other item dominates, in input order (equal vectors all stay)."""
    items = list(points)
    return [key for key, v in items if not any(dominates(w, v) for _, w in items)]


@dataclass(frozen=True)
class Constraints:
    """Hard limits, all measurable before training; None: no limit."""

    max_latency_ms: float | None = None
    max_params: int | None = None
    max_flops: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_params", "max_flops"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserInputError(f"{name}={value!r} must be positive", hint=f"pass a positive --{name.replace('_', '-')}")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_latency_ms, self.max_params, self.max_flops))

    def describe(self) -> list[str]:
        out = []
        if self.max_latency_ms is not None:
            out.append(f"batch-1 inference latency at most {self.max_latency_ms:g} ms")
        if self.max_params is not None:
            out.append(f"at most {self.max_params:,} parameters")
        if self.max_flops is not None:
            out.append(f"at most {self.max_flops:,} FLOPs (multiply-accumulates per image)")
        return out

    def violations(self, measured: Mapping[str, Any]) -> list[str]:
        """What the measurements break, in words (empty: every limit holds)."""
        out = []
        checks = (("latency_ms", self.max_latency_ms, "batch-1 latency", "ms", "--max-latency-ms"),
                  ("params", self.max_params, "parameters", "", "--max-params"),
                  ("flops", self.max_flops, "FLOPs", "", "--max-flops"))
        for key, limit, label, unit, flag in checks:
            value = measured.get(key)
            if limit is not None and value is not None and value > limit:
                shown = f"{value:.4g} {unit}".strip() if unit else f"{value:,}"
                out.append(f"{label} {shown} exceeds {flag} {limit:g}")
        return out
