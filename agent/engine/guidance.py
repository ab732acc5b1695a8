"""What guides the portfolio's choice of proposals: the selector (agent.surrogate.selector), the
zero-cost proxy evidence (``--proxy-evidence``, scored in a model probe of its own; by default
the proxy measured to help on the space, ``SearchSpace.evidence_proxy``) and the priors
(``--prior``). ``surrogate_guidance`` builds them, or returns None where the run does not use the
surrogate (``--surrogate off``, or a proposer other than the portfolio); it checks ``--prior`` and
``--proxy-evidence`` before anything is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.config import Settings
from agent.engine.setup import Setup
from agent.surrogate.evidence import ProxyEvidence
from agent.surrogate.priors import PriorRuns, load_priors
from agent.surrogate.selector import EvidenceSource, Selector
from evaluator.errors import UserInputError
from evaluator.measure.probe import ModelProbe
from evaluator.objectives import Objectives


@dataclass
class Guidance:
    selector: Selector
    sources: list[EvidenceSource] = field(default_factory=list)
    proxies: ProxyEvidence | None = None
    priors: PriorRuns = field(default_factory=PriorRuns)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fit_seconds": round(self.selector.fit_seconds, 3)}
        if self.proxies is not None:
            out["proxy_evidence"] = self.proxies.stats()
        if self.priors.runs:
            out["priors"] = self.priors.describe()
        return out

    def close(self) -> None:
        if self.proxies is not None:
            self.proxies.close()


def evidence_proxy(settings: Settings, space) -> str | None:
    """The proxy whose scores guide the surrogate: the one named, the space's measured choice
    for ``auto``, none for ``off``."""
    if settings.proxy_evidence == "auto":
        return space.evidence_proxy if space.builds_in_trusted_process else None
    return None if settings.proxy_evidence == "off" else settings.proxy_evidence


def surrogate_guidance(settings: Settings, setup: Setup, recorder, objectives: Objectives, *,
                       current_run: str | None) -> Guidance | None:
    uses = settings.proposer_name() == "portfolio" and settings.surrogate == "on"
    if not uses:
        named = settings.proxy_evidence not in ("auto", "off")
        asked = [f for f, on in (("--prior", bool(settings.priors)), ("--proxy-evidence", named)) if on]
        if asked:
            why = "--surrogate off" if settings.surrogate == "off" else f"--proposer {settings.proposer_name()}"
            raise UserInputError(f"{' and '.join(asked)} feed the portfolio's surrogate, which {why} does not use",
                                 hint="drop them, or search with the portfolio (the default) and --surrogate on")
        return None
    space = setup.space
    priors = load_priors(recorder, settings.priors, space, current_run=current_run)
    # the cost term: real training seconds vary by candidate; a table lookup's or a replay's say nothing
    selector = Selector(objectives, seed=settings.seed, cost=setup.task.kind == "train", priors=priors)
    guidance = Guidance(selector=selector, priors=priors)
    proxy = evidence_proxy(settings, space)
    if proxy is not None:
        if not space.builds_in_trusted_process:
            raise UserInputError(f"--proxy-evidence {proxy} builds each proposal in a trusted process, "
                                 f"which must never import the {space.label} space's code",
                                 hint="drop --proxy-evidence (or set it to auto or off) for --space code and --space-file "
                                      "(their encodings still guide the surrogate)")
        probe = ModelProbe(device=setup.device, threads=1, proxies=(proxy,), batch=setup.proxy_batch,
                           timeout=settings.timeout)
        guidance.proxies = ProxyEvidence(probe=probe, space=space.name, input_shape=tuple(setup.task.input_shape),
                                         num_classes=setup.task.num_classes, proxy=proxy)
        guidance.sources.append(guidance.proxies)
    return guidance
