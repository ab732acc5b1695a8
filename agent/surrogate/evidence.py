"""Zero-cost proxies as free evidence: each pool member scored in the model probe before the
surrogate ranks the pool (``--proxy-evidence NAME``).

The probe (evaluator.measure.probe) builds the untrained network with the project's own
builders, in its own process, and scores it on the search's proxy batch (training images where
the task has them, else a seeded synthetic batch). A member is scored once (cached by key).
Every second spent is counted (``seconds``, ``scored``) and the search reports it beside its
evaluations: proxies are cheap, not free. A member the probe cannot measure gets no score (it
ranks last on this evidence) and the reason is counted in ``failures``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.surrogate.selector import PoolMember
from evaluator.measure.probe import ModelProbe, ProbeError


@dataclass
class ProxyEvidence:
    probe: ModelProbe
    space: str
    input_shape: tuple[int, ...]
    num_classes: int
    proxy: str
    seconds: float = 0.0
    scored: int = 0
    failures: int = 0
    _cache: dict[str, float | None] = field(default_factory=dict)

    def __call__(self, members: Sequence[PoolMember]) -> None:
        for member in members:
            if member.key not in self._cache:
                self._cache[member.key] = self._score(member)
            value = self._cache[member.key]
            if value is not None:
                member.evidence[self.proxy] = value

    def _score(self, member: PoolMember) -> float | None:
        try:
            m = self.probe.measure(self.space, member.spec, self.input_shape, self.num_classes, latency=False, proxies=True)
        except ProbeError:
            self.failures += 1
            return None
        self.seconds += m.seconds
        self.scored += 1
        return m.proxies.get(self.proxy)

    def stats(self) -> dict[str, object]:
        return {"proxy": self.proxy, "scored": self.scored, "seconds": round(self.seconds, 3), "failures": self.failures}

    def close(self) -> None:
        self.probe.close()
