"""The records every layer shares: statuses, candidates, evaluations, runs.

Units (DESIGN.md, Contracts): accuracies are fractions in [0, 1], latency in milliseconds,
sizes in counts, time in seconds. Tables in percent are converted when they are loaded.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Status(str, Enum):
    """Candidate and evaluation status. ``queued`` and ``running`` are not final."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    INVALID = "invalid"  # rejected before evaluation; never counts against the budget
    FAILED = "failed"  # exception, NaN loss, memory or other limit: the error names which
    TIMEOUT = "timeout"
    STOPPED_EARLY = "stopped_early"
    PRUNED = "pruned"

    @property
    def is_final(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)

    @property
    def counts_against_budget(self) -> bool:
        return self.is_final and self is not Status.INVALID


FINAL_STATUSES = tuple(s for s in Status if s.is_final)


class RunStatus(str, Enum):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class Purpose(str, Enum):
    """Why an evaluation was made: to guide the search, to check a leader with another seed, or
    to report the final choice."""

    SEARCH = "search"  # sees validation only
    FINAL = "final"  # the only place a test split is read; not counted in the budget
    RECHECK = "recheck"  # a top candidate trained again with another seed (validation only); not counted in the budget


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: float = Field(ge=0)
    val_accuracy: float | None = Field(default=None, ge=0, le=1)
    train_loss: float | None = None
    val_loss: float | None = None
    train_accuracy: float | None = Field(default=None, ge=0, le=1)  # the worker's own report (training labels)


class Candidate(BaseModel):
    """One proposed architecture. ``spec`` is the space's proposal, validated and normalised."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str
    run_id: str
    seq: int = Field(ge=0, description="order of creation within the run")
    space: str
    spec: dict[str, Any]
    canonical_key: str | None = None  # None only for invalid specs
    parents: list[str] = Field(default_factory=list)
    proposer: str
    model: str | None = None  # the LLM that proposed it, if any
    rationale: str | None = None
    prompt_ref: str | None = None
    status: Status = Status.QUEUED
    error: str | None = None
    measurements: dict[str, Any] = Field(default_factory=dict)  # before training: params, flops, latency_ms, proxy_*
    created: datetime = Field(default_factory=utc_now)


class Evaluation(BaseModel):
    """The outcome of evaluating one candidate at one fidelity."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str
    purpose: Purpose = Purpose.SEARCH
    status: Status
    fidelity: float | None = Field(default=None, ge=0)
    fidelity_unit: Literal["epochs", "steps"] = "epochs"
    val_accuracy: float | None = Field(default=None, ge=0, le=1)
    test_accuracy: float | None = Field(default=None, ge=0, le=1)
    curve: list[CurvePoint] = Field(default_factory=list)
    # numbers and texts; a few are small dicts of numbers (the training pool's ``overhead`` seconds)
    metrics: dict[str, float | int | str | None | dict[str, float | int | bool | None]] = Field(default_factory=dict)
    source: str | None = None  # where the numbers came from (a table file, a device)
    wall_seconds: float = Field(default=0.0, ge=0)
    device_seconds: float = Field(default=0.0, ge=0)
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
