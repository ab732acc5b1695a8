"""Reflection: every k evaluations the LLM distils "what helped, what failed" into insights.

The reflect prompt shows the run's best candidates beside the others and the failures, with
the previous insights; the model answers ``{"insights": [...]}`` (bounded, so constrained
decoding terminates). The set is stored in the history (``insights``) and replaces the
previous one in later propose prompts. Every call is recorded in ``llm_calls`` with
template ``reflect.j2`` and no proposal. A reflection that fails (an unparseable reply, an
endpoint error) is recorded and the search goes on with the insights it had. A reflection is
skipped while the model has made no proposal since the last one (a portfolio that has stopped
picking its LLM operators does not pay for insights nobody reads); it happens once the model
proposes again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, create_model

from agent.llm.base import LLMBackend, LLMError
from agent.prompting import HistoryView, Prompts
from agent.proposers.llm import call_record
from agent.store.recorder import Recorder
from agent.records import LLMCall, LLMOutcome

INSIGHT_CHARS = 120  # short: a 0.5B model on 2 cores writes about 10 tokens a second


@dataclass
class LLMSpend:
    """A run's LLM spend so far, counted as calls are recorded (for --max-llm-cost)."""

    calls: int = 0
    dollars: float = 0.0

    def add(self, calls: Sequence[LLMCall]) -> None:
        self.calls += len(calls)
        self.dollars += sum(c.cost or 0.0 for c in calls)


def insights_schema(max_insights: int) -> type[BaseModel]:
    item = Annotated[str, StringConstraints(min_length=1, max_length=INSIGHT_CHARS)]
    return create_model("Insights", insights=(list[item], Field(min_length=1, max_length=max_insights)))


class Reflector:
    def __init__(self, *, backend: LLMBackend, recorder: Recorder, record: Callable[[list[LLMCall]], None],
                 spend: LLMSpend, run_id: str,
                 history: Callable[[int, int], HistoryView], task: dict[str, Any], space_name: str,
                 space_description: str, every: int, prompts: Prompts | None = None, max_insights: int = 4,
                 max_tokens: int = 200, token_budget: int = 3000, temperature: float = 0.3, seed: int = 0) -> None:
        if every < 1:
            raise ValueError(f"{every=} must be at least 1")
        self.backend, self.recorder, self.record, self.run_id, self.history = backend, recorder, record, run_id, history
        self.context = dict(task, space=space_name, space_description=space_description)
        self.every, self.prompts, self.max_insights = every, prompts or Prompts(), max_insights
        self.max_tokens, self.token_budget, self.temperature, self.seed = max_tokens, token_budget, temperature, seed
        self.schema = insights_schema(max_insights)
        self.spend = spend
        self.last = 0  # evaluations at the last reflection
        self.calls_then = 0  # the run's LLM calls right after the last reflection

    def due(self, evaluations: int) -> bool:
        return evaluations - self.last >= self.every and self.spend.calls > self.calls_then

    def reflect(self, evaluations: int, budget: int) -> list[str] | None:
        """Ask for insights now; return them (None when this reflection failed)."""
        self.last = evaluations
        call_id = f"{self.run_id}-r{evaluations:04d}"
        messages = self.prompts.reflect_messages(history=self.history(evaluations, budget), token_budget=self.token_budget,
                                                 max_insights=self.max_insights, **self.context)
        try:
            reply = self.backend.complete(messages, self.schema, max_tokens=self.max_tokens,
                                          temperature=self.temperature, seed=self.seed + evaluations)
        except LLMError as exc:
            self.record([call_record(self.backend, self.run_id, call_id, "reflect.j2", messages, None,
                                     LLMOutcome.FAILED, str(exc))])
            self.calls_then = self.spend.calls
            return None
        outcome = LLMOutcome.VALID if reply.value is not None else LLMOutcome.SCHEMA_INVALID
        self.record([call_record(self.backend, self.run_id, call_id, "reflect.j2", messages, reply,
                                                 outcome, reply.error)])
        self.calls_then = self.spend.calls
        if reply.value is None:
            return None
        texts = [" ".join(t.split()) for t in reply.value.insights]
        texts = [t for i, t in enumerate(texts) if t and t not in texts[:i]]
        self.recorder.add_insights(self.run_id, call_id, texts, after_evaluations=evaluations, call_id=call_id)
        return texts
