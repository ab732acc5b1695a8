"""The screen step: what a candidate must pass before it trains.

New candidates (validated and unique) are measured in the model probe (evaluator.measure.probe:
params, FLOPs, latency when an objective or a constraint needs it, the screening proxy when
one is set), and the measurements go into the candidate's record. A candidate that breaks a
constraint (``--max-latency-ms``, ``--max-params``, ``--max-flops``) or cannot be measured is
rejected before training: status ``invalid``, with the measurement in its error text. With
``--screen PROXY`` the proposer made ``screen_factor`` proposals for every slot, and only the
best by that proxy train; the others are rejected the same way ("screened out"), so they
never cost an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluator.objectives import Constraints
from evaluator.measure.probe import ModelProbe, ProbeError
from evaluator.records import Candidate, Status


@dataclass
class Screen:
    probe: ModelProbe
    space: str
    input_shape: tuple[int, ...]
    num_classes: int
    constraints: Constraints
    latency: bool  # measure latency (an objective or a constraint needs it)
    proxy: str | None = None  # screen by this proxy
    factor: int = 1  # proposals per slot when screening
    measured: int = 0
    rejected: int = 0
    screened_out: int = 0
    seconds: float = 0.0

    def check(self, candidates: list[Candidate], keep: int) -> tuple[list[Candidate], list[Candidate]]:
        """Measure ``candidates``; return (the ones that may train, at most ``keep``; the rejected
        ones, status invalid with the reason). Each gets its measurements."""
        passed, rejected = [], []
        for c in candidates:
            try:
                m = self.probe.measure(self.space, c.spec, self.input_shape, self.num_classes, latency=self.latency,
                                       proxies=self.proxy is not None, stop_above_ms=self.constraints.max_latency_ms)
            except ProbeError as exc:
                rejected.append(_reject(c, f"rejected before training: the model probe could not measure it: {exc.message}"))
                continue
            self.measured += 1
            self.seconds += m.seconds
            c.measurements = m.metrics()
            broken = self.constraints.violations(c.measurements)
            if broken:
                device = c.measurements.get("latency_device")
                where = f" (latency measured untrained, {device})" if device and any("latency" in b for b in broken) else ""
                rejected.append(_reject(c, "rejected before training: " + "; ".join(broken) + where))
            else:
                passed.append(c)
        self.rejected += len(rejected)
        if self.proxy is None or len(passed) <= keep:
            return passed, rejected
        key = f"proxy_{self.proxy}"
        ranked = sorted(passed, key=lambda c: (c.measurements.get(key) is None, -(c.measurements.get(key) or 0.0), c.seq))
        for rank, c in enumerate(ranked[keep:], start=keep + 1):
            value = c.measurements.get(key)
            shown = "undefined" if value is None else f"{value:.4g}"
            rejected.append(_reject(c, f"screened out before training: {self.proxy} {shown} ranks {rank} of "
                                       f"{len(ranked)} proposals made together; the best {keep} train"))
            self.screened_out += 1
        return ranked[:keep], rejected

    def report(self) -> dict:
        return {"measured": self.measured, "rejected_by_constraints": self.rejected, "screened_out": self.screened_out,
                "proxy": self.proxy, "factor": self.factor if self.proxy else None, "seconds": round(self.seconds, 3),
                "constraints": self.constraints.describe()}


def _reject(candidate: Candidate, reason: str) -> Candidate:
    candidate.status, candidate.error = Status.INVALID, reason
    return candidate

