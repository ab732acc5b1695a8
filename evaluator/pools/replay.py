"""Curve replay: recorded per-epoch curves of NAS-Bench-201 cells, replayed as training.

A curves file (CSV) has one row per cell: ``arch_str`` (the NAS-Bench-201 arch string),
``val_accs`` (a JSON list of validation accuracies in percent, one per epoch) and optionally
``train_accs`` (training accuracy at the same epochs) and ``arch_i``. The team's copy,
``../shared/benchdata/curves/nb201_cifar10valid_200archs_curves.csv``, holds 200 cells of 200
epochs on cifar10-valid.

``CurvePool`` evaluates a cell by replaying its recorded curve epoch by epoch, exactly as a
training worker reports one: a ``started`` event, a ``progress`` event per epoch (validation
and training accuracy), a ``finished`` event with the whole curve. It honours everything a
training pool does for the search: ``fidelity`` (stop at an epoch), ``checkpoint`` / ``resume``
(continue where the candidate stopped), ``cancel`` (stop now, with the epochs so far) and its
capacity. Time is virtual: every epoch of every job takes ``seconds_per_epoch`` (recorded as the
evaluation's seconds), and the events of concurrent jobs come out in the order they would
happen, so early stopping, successive halving and several workers behave as they would on real
training, in milliseconds. With ``realtime`` the replay keeps the wall clock instead: every epoch
takes ``seconds_per_epoch`` real seconds from its job's submission, and ``events`` waits for the
next one as a training pool waits for its workers, so jobs progress while the coordinator does
other work (a search then proposes beside them: ``background``). A final evaluation has nothing to replay (no test split): it reports
the cell's last validation accuracy and no test accuracy. The task
``curves:FILE`` searches the file's cells this way (agent.engine.runner); bench/ uses it to
compare stopping policies inside the real search loop.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.records import CurvePoint, Evaluation, Purpose, Status
from evaluator.tables.curves import CurveTable


@dataclass
class _Job:
    job: Job
    arch: str
    next_epoch: int
    stop_epoch: int
    curve: list[CurvePoint] = field(default_factory=list)
    cancelled: tuple[Status, str] | None = None


class CurvePool(EvaluationPool):
    """Replays recorded curves as a training pool would report them (see the module docstring)."""

    def __init__(self, table: CurveTable, capacity: int = 1, seconds_per_epoch: float = 1.0,
                 realtime: bool = False) -> None:
        from evaluator.spaces.nb201 import Nb201Space

        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be at least 1")
        if seconds_per_epoch <= 0:
            raise ValueError(f"seconds_per_epoch={seconds_per_epoch} must be positive")
        self.table, self.capacity, self.seconds_per_epoch = table, capacity, seconds_per_epoch
        self.realtime = self.background = realtime
        self._t0 = time.monotonic()
        self.epochs = table.epochs
        self._space = Nb201Space()
        self._clock = 0.0
        self._queue: list[tuple[float, int, str]] = []  # (virtual time of its next event, order, candidate)
        self._jobs: dict[str, _Job] = {}
        self._saved: dict[str, list[CurvePoint]] = {}  # checkpoints: the curve a candidate stopped at
        self._results: dict[str, Evaluation] = {}
        self._order = 0
        self._started: list[PoolEvent] = []

    def submit(self, job: Job) -> None:
        stop = self._stop_epoch(job)
        arch = self._space.canonical_key(job.spec)
        if job.purpose is Purpose.FINAL:  # nothing to replay: a curves file has no test split
            val = self.table.val.get(arch)
            self._results[job.candidate_id] = evaluation = Evaluation(
                candidate_id=job.candidate_id, purpose=job.purpose, status=Status.OK if val else Status.FAILED,
                fidelity=float(self.epochs), val_accuracy=val[-1] if val else None,
                source=f"{self.table.path.name} has no test split: there is no test accuracy to report",
                error=None if val else f"cell {arch} is not in the curves file {self.table.path}")
            self._started.append(PoolEvent(kind="finished", candidate_id=job.candidate_id, evaluation=evaluation))
            return
        prefix = self._saved.pop(job.candidate_id, []) if job.resume else []
        if job.resume and (not prefix or len(prefix) >= stop):
            raise ValueError(f"cannot resume {job.candidate_id} to epoch {stop}: the pool holds "
                             f"{f'one at epoch {len(prefix)}' if prefix else 'none'}")
        run = _Job(job=job, arch=arch, next_epoch=len(prefix) + 1, stop_epoch=stop, curve=list(prefix))
        self._jobs[job.candidate_id] = run
        self._started.append(PoolEvent(kind="started", candidate_id=job.candidate_id,
                                       data={"purpose": job.purpose.value, "seed": job.seed, "epochs": stop,
                                             "from_epoch": len(prefix)}))
        self._push(job.candidate_id, self._now() if self.realtime else self._clock)  # the first epoch starts now

    def _push(self, candidate_id: str, start: float) -> None:
        """The job's next epoch, started at ``start``, ends an epoch's time later."""
        self._order += 1
        heapq.heappush(self._queue, (start + self.seconds_per_epoch, self._order, candidate_id))

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def events(self, timeout: float | None = None) -> list[PoolEvent]:
        out, self._started = self._started, []
        if self.realtime:
            return out + self._due(0.0 if out else timeout)
        while self._queue and not any(e.kind in ("progress", "finished") for e in out):
            when, _, cid = heapq.heappop(self._queue)
            run = self._jobs.get(cid)
            if run is None:
                continue
            self._clock = max(self._clock, when)
            out += self._step(run)
        return out

    def _due(self, timeout: float | None) -> list[PoolEvent]:
        """Real time: the events due now, after waiting up to ``timeout`` for the next one."""
        if self._queue and (timeout is None or timeout > 0):
            wait = self._queue[0][0] - self._now()
            if wait > 0:
                time.sleep(wait if timeout is None else min(wait, timeout))
        out = []
        while self._queue and self._queue[0][0] <= self._now():
            when, _, cid = heapq.heappop(self._queue)
            run = self._jobs.get(cid)
            if run is None:
                continue
            self._clock = max(self._clock, when)
            out += self._step(run)
        return out

    def _step(self, run: _Job) -> list[PoolEvent]:
        cid = run.job.candidate_id
        val = self.table.val.get(run.arch)
        if val is None:
            return [self._finish(run, Status.FAILED, f"cell {run.arch} is not in the curves file {self.table.path}")]
        if run.cancelled is not None:
            return [self._finish(run, *run.cancelled)]
        e = run.next_epoch
        train = self.table.train[run.arch][e - 1] if self.table.train is not None else None
        run.curve.append(CurvePoint(epoch=e, val_accuracy=val[e - 1], train_accuracy=train))
        progress = PoolEvent(kind="progress", candidate_id=cid,
                             data={"epoch": e, "epochs": run.stop_epoch, "val_accuracy": val[e - 1],
                                   "train_accuracy": train, "purpose": run.job.purpose.value, "seed": run.job.seed})
        if e >= run.stop_epoch:
            if run.job.checkpoint and e < self.epochs:
                self._saved[cid] = list(run.curve)
            return [progress, self._finish(run, Status.OK, None)]
        run.next_epoch += 1
        self._push(cid, self._clock)
        return [progress]

    def _finish(self, run: _Job, status: Status, error: str | None) -> PoolEvent:
        cid = run.job.candidate_id
        del self._jobs[cid]
        last = run.curve[-1].val_accuracy if run.curve else None
        evaluation = Evaluation(
            candidate_id=cid, purpose=run.job.purpose, status=status, fidelity=float(len(run.curve)),
            val_accuracy=last if status is Status.OK else None, curve=run.curve,
            source=f"replayed from {self.table.path.name}", wall_seconds=self.seconds_per_epoch * len(run.curve),
            device_seconds=self.seconds_per_epoch * len(run.curve), error=error, metrics={"epochs": len(run.curve)})
        self._results[cid] = evaluation
        return PoolEvent(kind="finished", candidate_id=cid, evaluation=evaluation)

    def result(self, candidate_id: str) -> Evaluation | None:
        return self._results.get(candidate_id)

    def cancel(self, candidate_id: str, *, status: Status = Status.PRUNED, reason: str | None = None) -> bool:
        run = self._jobs.get(candidate_id)
        if run is None:
            return False
        run.cancelled = (status, reason or "cancelled by the coordinator")
        return True

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    def discard(self, candidate_id: str) -> None:
        self._saved.pop(candidate_id, None)
