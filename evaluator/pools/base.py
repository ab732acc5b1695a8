"""The asynchronous evaluation-pool interface.

The coordinator submits jobs and collects events; it never waits on one candidate while
another could be proposed. Backends: tabular (in-process lookups, here), a local process
pool (``evaluator.pools.training``) and Ray later. Workers never touch the history: they hand back
:class:`~evaluator.records.Evaluation` records and the coordinator writes them.

Contract:

- ``submit(job)`` returns at once; at most ``capacity`` jobs are in flight.
- ``events(timeout)`` returns the events that happened since the last call, blocking up to
  ``timeout`` seconds for at least one when jobs are in flight. A job ends with exactly one
  ``finished`` event carrying its evaluation (whatever its status).
- ``result(candidate_id)`` is the candidate's latest finished evaluation, or None while its
  first job runs.
- ``cancel(candidate_id, status=..., reason=...)`` stops a job; it then finishes with that status
  (``pruned`` by default; ``stopped_early`` when an early-stop rule stopped it) and the reason as
  its error text.
- Multi-fidelity (training pools): a search job with ``fidelity`` below the pool's ``epochs``
  trains only that far, on the full schedule's learning rates; with ``checkpoint`` it leaves a
  checkpoint, and a later job of the same candidate with ``resume`` continues from it (its
  evaluation then holds the whole curve). ``discard(candidate_id)`` drops a checkpoint that will
  not be continued.
- Events of other kinds may come (a Ray pool reports ``lost`` when a worker dies and its job is
  queued again); a coordinator passes them on to whoever shows progress and otherwise ignores them.
- ``background``: whether jobs make progress on their own, between calls (training processes,
  Ray workers). Pools that compute results inside ``submit`` or ``events`` (table lookups, curve
  replays in virtual time) say False; the search then proposes in turn with the evaluations, in a
  reproducible order, instead of beside them (agent.engine.proposing).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from evaluator.records import Evaluation, Purpose, Status


@dataclass(frozen=True)
class Job:
    candidate_id: str
    spec: dict[str, Any]
    purpose: Purpose = Purpose.SEARCH
    fidelity: float | None = None  # epochs to train to; None: the task's (the end of the schedule)
    seed: int = 0  # training seed (final evaluations retrain with several)
    checkpoint: bool = False  # keep a checkpoint at ``fidelity`` so a later job can continue
    resume: bool = False  # continue the candidate's checkpoint instead of starting afresh


@dataclass(frozen=True)
class PoolEvent:
    kind: Literal["started", "progress", "finished"]
    candidate_id: str
    evaluation: Evaluation | None = None  # set on "finished"
    data: dict[str, Any] = field(default_factory=dict)  # "progress": epoch, val_accuracy, ...


class EvaluationPool(ABC):
    capacity: int = 1
    epochs: int | None = None  # a training pool's epochs per search job; None where results are looked up
    seeded: bool = False  # whether another training seed gives another result (not for tables and replays)
    background: bool = True  # jobs progress between calls; False where submit/events compute the results

    @abstractmethod
    def submit(self, job: Job) -> None: ...

    @abstractmethod
    def events(self, timeout: float | None = None) -> list[PoolEvent]: ...

    @abstractmethod
    def result(self, candidate_id: str) -> Evaluation | None: ...

    @abstractmethod
    def cancel(self, candidate_id: str, *, status: Status = Status.PRUNED, reason: str | None = None) -> bool: ...

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    def free_slots(self) -> int:
        return max(0, self.capacity - self.in_flight)

    def _stop_epoch(self, job: Job) -> int:
        """A training pool's checks of a submission: a free slot, and a fidelity within its
        epochs. Returns the epoch the job stops at."""
        if self.in_flight >= self.capacity:
            raise RuntimeError(f"pool is full ({self.capacity} jobs); submit when free_slots() > 0")
        stop = int(job.fidelity or self.epochs)
        if not 1 <= stop <= self.epochs:
            raise ValueError(f"fidelity={job.fidelity} must be between 1 and the pool's {self.epochs} epochs")
        return stop

    def discard(self, candidate_id: str) -> None:
        """Forget the candidate's checkpoint; pools that keep none have nothing to do."""

    def close(self) -> None:
        """Release workers; the default pool holds none."""
