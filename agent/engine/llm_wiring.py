"""The proposer a search uses, and what an LLM-driven one adds: its backend and prompts, the
context every prompt carries (task, constraints, objectives, directions), the history view it
is grounded in, the reflector, and the spend. ``search_proposer`` serves a search; ``llm_parts``
also serves a chat session (agent.chat), which proposes with the run's own LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import Settings
from agent.engine.guidance import Guidance
from agent.prompting import HistoryView, Prompts
from agent.proposers import Portfolio, Proposer, make_proposer
from agent.proposers.llm import LLMProposer
from agent.records import LLMCall
from agent.reflection import LLMSpend, Reflector
from agent.store.recorder import Recorder
from evaluator.errors import UserInputError
from evaluator.objectives import Constraints, Objectives
from evaluator.spaces import SearchSpace
from evaluator.tasks import Task, is_training_task


LLM_PROPOSERS = ("llm", "portfolio")


@dataclass
class LLMParts:
    """What an LLM-driven search adds: the proposer's model, its reflection, and the spend."""

    proposer: LLMProposer
    reflector: Reflector | None
    spend: LLMSpend


def search_proposer(settings: Settings, space: SearchSpace, task: Task, run_id: str, recorder: Recorder,
                    objectives: Objectives, constraints: Constraints,
                    guidance: Guidance | None = None) -> tuple[Proposer, LLMParts | None]:
    """The run's proposer and its LLM parts (None without an LLM). The portfolio has LLM operators
    when an LLM is set (``--llm``); ``guidance`` (agent.engine.guidance) makes it surrogate-guided."""
    name = settings.proposer_name()
    if name == "portfolio":
        parts = None
        if settings.llm:
            # A repeat gets one repair, then a mutation: other operators are cheaper than LLM retries.
            parts = llm_parts(settings, space, task, run_id, recorder, objectives, constraints, max_repairs=1)
        return Portfolio(space, settings.seed, llm=parts.proposer if parts else None, cost=settings.portfolio_cost,
                         llm_after=settings.llm_after, selector=guidance.selector if guidance else None,
                         pool_size=settings.pool_size, evidence=guidance.sources if guidance else ()), parts
    if name == "llm":
        parts = llm_parts(settings, space, task, run_id, recorder, objectives, constraints, max_repairs=2)
        return parts.proposer, parts
    if name != "evolution":
        return make_proposer(name, space, settings.seed), None
    if settings.tournament > settings.population:
        raise UserInputError(
            f"tournament ({settings.tournament}) is larger than population ({settings.population})",
            hint="choose a tournament size between 1 and the population size (--tournament, --population)",
        )
    return make_proposer("evolution", space, settings.seed, population=settings.population,
                         tournament=settings.tournament), None


def llm_parts(settings: Settings, space: SearchSpace, task: Task, run_id: str, recorder: Recorder,
              objectives: Objectives, limits: Constraints, *, max_repairs: int) -> LLMParts:
    from agent.llm import make_backend

    llm_settings = settings if settings.llm else settings.model_copy(update={"llm": "local"})
    if settings.max_llm_cost is not None and llm_settings.llm == "openai" and (
            settings.llm_price_in is None or settings.llm_price_out is None):
        raise UserInputError(f"--max-llm-cost {settings.max_llm_cost} needs the model's prices to count dollars",
                             hint="set llm_price_in and llm_price_out (dollars per million tokens) in agent.toml "
                                  "or AGENT_LLM_PRICE_IN / AGENT_LLM_PRICE_OUT")
    backend = make_backend(llm_settings)
    user_prompts = settings.home / "prompts"
    prompts = Prompts(user_prompts if user_prompts.is_dir() else None)
    spend = LLMSpend()

    def record(calls: list[LLMCall]) -> None:
        recorder.add_llm_calls(calls)
        spend.add(calls)

    def view(evaluations: int, budget: int, seed: int) -> HistoryView:
        # directions given in a chat session since the last prompt
        context["directions"] = list(dict.fromkeys([*settings.directions, *recorder.directions(run_id)]))
        rows = recorder.prompt_history(run_id, seed=seed)
        insights = [r["text"] for r in recorder.insights(run_id)]
        return HistoryView.from_rows(rows, space.summary, evaluations=evaluations, budget=budget, insights=insights,
                                     show=shown)

    # Rows state the other objectives' values and whatever a limit is on.
    shown = tuple(dict.fromkeys([m for m in objectives.metrics if m != "val_accuracy"]
                                + ["latency_ms"] * (limits.max_latency_ms is not None)
                                + ["params"] * (limits.max_params is not None) + ["flops"] * (limits.max_flops is not None)))
    constraints = [f"{c} (measured before training; a candidate over the limit is rejected untrained)"
                   for c in limits.describe()]
    if is_training_task(task.name):
        constraints.append(f"each candidate trains in a worker limited to {settings.timeout:g} s and "
                           f"{settings.memory_mb} MB; one that exceeds either fails")
    if space.runs_candidate_code:
        constraints.append("the model file runs in a sandbox with no network and no files beyond its own folder: "
                           "use torch only, no downloads, no file or process access")
    goals = objectives.describe()
    if objectives.multi:
        goals[-1] += " (several objectives: propose trade-offs that no evaluated candidate beats in every one)"
    context = {"task": task.name, "task_description": task.description, "constraints": constraints,
               "objectives": goals, "directions": list(settings.directions)}
    # A space whose proposals are longer than a spec (code mode: edits of a file shown in the prompt)
    # says how long, and how many repairs it is worth.
    lengths = {k: v for k, v in space.llm_limits.items() if k != "max_repairs"}
    max_repairs = min(max_repairs, space.llm_limits.get("max_repairs", max_repairs))
    proposer = LLMProposer(space, settings.seed, backend=backend, run_id=run_id, prompts=prompts, record=record,
                           history=lambda c: view(c.evaluations, c.budget, settings.seed + c.evaluations),
                           task=context, max_repairs=max_repairs, **lengths)
    reflector = None
    if settings.reflect_every:
        reflector = Reflector(backend=backend, recorder=recorder, record=record, spend=spend, run_id=run_id, prompts=prompts,
                              history=lambda e, b: view(e, b, settings.seed + e), task=context,
                              space_name=space.label, space_description=space.describe(),
                              every=settings.reflect_every, seed=settings.seed)
    return LLMParts(proposer=proposer, reflector=reflector, spend=spend)
