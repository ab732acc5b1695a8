"""The agent's own records: runs, LLM calls and early-stop forecasts (the records every layer
shares, candidates and evaluations, are in ``evaluator.records``). The history stores them
(``agent.store``); their JSON is part of docs/contracts.md."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluator.records import utc_now


class RunStatus(str, Enum):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    task: str
    space: str
    proposer: str
    seed: int
    budget: int = Field(gt=0)
    status: RunStatus = RunStatus.RUNNING
    config: dict[str, Any] = Field(default_factory=dict)
    created: datetime = Field(default_factory=utc_now)
    finished: datetime | None = None
    summary: dict[str, Any] | None = None


class LLMOutcome(str, Enum):
    VALID = "valid"  # parsed into the schema and passed the space's static checks
    SPEC_INVALID = "spec_invalid"  # parsed, but the space rejected the spec
    SCHEMA_INVALID = "schema_invalid"  # the reply did not parse into the schema
    FAILED = "failed"  # the call itself failed (endpoint down, timeout after retries)
    TEXT = "text"  # a call whose reply is free-form by design (reflection)


class LLMCall(BaseModel):
    """One call to an LLM: what was asked, what came back, and what it cost.

    ``proposal`` groups the attempts at one proposal (the first call and its repairs, by
    ``attempt``); reflection calls have none."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    run_id: str
    candidate_id: str | None = None
    proposal: str | None = None
    attempt: int = Field(default=0, ge=0)
    backend: str
    model: str
    template: str  # propose.j2, repair.j2, reflect.j2
    messages: list[dict[str, str]]
    response: str = ""
    mode: str | None = None  # how the schema was enforced: json_schema, json_object, text, grammar
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0)
    cost: float | None = Field(default=None, ge=0)  # dollars, when prices are configured
    retries: int = Field(default=0, ge=0)
    outcome: LLMOutcome
    error: str | None = None
    created: datetime = Field(default_factory=utc_now)


class ForecastRecord(BaseModel):
    """One learning-curve forecast the early-stop rule made for a candidate, and what it did."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    candidate_id: str
    epoch: float = Field(ge=0)  # the last observed epoch
    final_epoch: float = Field(gt=0)  # the epoch whose accuracy is forecast
    method: str  # which model made it (evaluator.early_stop.forecast.Forecast.method)
    reference_curves: int = Field(ge=0)  # finished curves of the run it rests on
    last_value: float = Field(ge=0, le=1)
    mean: float = Field(ge=0, le=1)
    lower: float = Field(ge=0, le=1)  # 10 % quantile: with upper, the 80 % interval
    median: float = Field(ge=0, le=1)
    upper: float = Field(ge=0, le=1)
    incumbent: float | None = Field(default=None, ge=0, le=1)  # best finished val accuracy at the time
    p_beat: float = Field(ge=0, le=1)  # P(final > incumbent)
    action: Literal["continue", "stop", "audit"]  # audit: the rule would stop it; it trains on to be checked
    reason: str
    created: datetime = Field(default_factory=utc_now)
