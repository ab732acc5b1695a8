"""The records every layer shares: statuses, candidates, evaluations (the agent's own records, runs and
LLM calls among them, are in ``agent.records``).

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
    selection: dict[str, Any] | None = None  # why a surrogate picked it: prediction, interval, acquisition, operator
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
