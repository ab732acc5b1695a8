"""The search graph's state (changes every step) and context (fixed for a run)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from agent.engine.crash import CrashPoints
from agent.engine.early_stop import EarlyStopMonitor
from agent.engine.halving import HalvingMonitor
from agent.engine.proposing import Proposing
from agent.engine.screen import Screen
from agent.store.recorder import Recorder
from agent.proposers import Proposal, Proposer
from agent.reflection import LLMSpend, Reflector
from evaluator.objectives import Objectives
from evaluator.pools.base import EvaluationPool, PoolEvent
from agent.records import Run
from evaluator.records import Candidate, Evaluation
from evaluator.spaces import SearchSpace


@dataclass
class SearchContext:
    run: Run
    space: SearchSpace
    proposer: Proposer
    pool: EvaluationPool
    recorder: Recorder
    budget: int
    deadline: float | None  # time.monotonic() value, or None for no wall-clock limit
    max_attempts: int  # proposals (valid or not) the proposer may make in all
    on_result: Callable[[Candidate, Evaluation, "SearchState"], None] | None = None
    on_event: Callable[[PoolEvent], None] | None = None  # every pool event (started, per-epoch progress, finished)
    reflector: Reflector | None = None  # LLM reflection every k evaluations
    llm_spend: LLMSpend | None = None  # set when the proposer uses an LLM
    max_llm_cost: float | None = None  # dollars; the search stops once the spend reaches it
    epochs: int | None = None  # epochs a search candidate trains for; None when the pool looks results up
    early_stop: EarlyStopMonitor | None = None  # --early-stop forecast|both
    halving: HalvingMonitor | None = None  # --early-stop asha|both
    screen: Screen | None = None  # measurements before training: constraints, latency, proxy screening
    guidance: Any = None  # agent.engine.guidance.Guidance: the portfolio's surrogate, proxy evidence and priors
    objectives: Objectives = Objectives()
    max_device_seconds: float | None = None  # the search stops once its evaluations used this much device time
    recheck: Recheck | None = None  # the top candidates trained again with other seeds, every so many evaluations
    crash_points: CrashPoints | None = None  # tests: kill the process at chosen nodes (AGENT_TEST_CRASH_AT)
    snapshot_every: int = 0  # evaluations between snapshots of the history (0: none during the run)
    snapshots_kept: int = 5
    # every call to the proposer (and the reflector) goes through it: beside the pool's jobs when the
    # pool runs them in the background, else inline; None: inline (built from ``proposer``)
    proposing: Proposing | None = None

    def __post_init__(self) -> None:
        if self.proposing is None:
            self.proposing = Proposing(self.proposer, background=False)


class SearchState(TypedDict, total=False):
    proposals: list[Proposal]  # from the proposer, not yet validated
    wanted: int  # candidates the last proposals are for (fewer than the proposals when screening)
    ready: list[Candidate]  # validated and unique, waiting for a pool slot
    unrecorded: list[str]  # ids in ``ready`` not yet written to the history (written when they get a slot)
    fresh: list[str]  # ids in ``ready`` validated this step, not yet screened
    running: dict[str, Candidate]  # submitted to the pool
    waiting: int  # successive halving: candidates waiting at a rung for a promotion (held by ctx.halving)
    results: list[tuple[Candidate, Evaluation]]  # finished since the last record step
    for_proposal: bool  # the last evaluate step returned only for a finished proposal (nothing to record)
    seen: Annotated[list[str], operator.add]  # canonical keys in the run, in order
    seq: int  # next candidate sequence number
    attempts: int  # proposals made so far
    evaluations: int  # final statuses other than invalid: what the budget counts
    counts: dict[str, int]  # candidates by final status
    duplicates: int  # proposals dropped because their key was already in the run
    top: list[dict[str, Any]]  # best ok candidates by validation accuracy, best first
    front: list[dict[str, Any]]  # multi-objective: the Pareto front of the ok candidates so far
    proxy_scores: list[dict[str, Any]]  # ok candidates' validation accuracy and the proxies their workers scored
    stop_reason: str | None  # set once the search should wind down
    epochs_trained: int  # training epochs of search candidates (training tasks)
    epochs_saved: int  # epochs early stopping did not spend: the stopped candidates' remaining epochs
    rechecks: dict[str, list[float | None]]  # candidate -> validation accuracy of each recheck (other seeds)
    recheck_queue: list[dict[str, Any]]  # rechecks waiting for a pool slot: {"candidate_id", "spec", "seed"}
    rechecking: dict[str, int]  # candidate -> the seed of its recheck in the pool
    recheck_results: list[Evaluation]  # rechecks finished since the last record step
    recheck_round: int  # evaluations at the last round of rechecks
    device_seconds: float  # device time of the run's recorded evaluations (for --max-device-seconds)


TOP_K = 5
UNBOUNDED_BUDGET = 1_000_000  # a run bounded by time only (agent loop --hours): large enough never to be the limit


@dataclass(frozen=True)
class Recheck:
    """Every ``every`` evaluations, the ``top`` best candidates train ``seeds`` more times."""

    every: int
    top: int
    seeds: int
