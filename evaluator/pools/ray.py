"""The Ray evaluation pool: the local pool's sandboxed jobs, on every node of a Ray cluster.

Each slot is a long-lived actor (``CandidateRunner``, ``evaluator.pools.ray_actor``) holding its own one-slot
:class:`~evaluator.pools.training.TrainingPool` on its node: every candidate still runs in a
fresh sandboxed process there, with the same limits, isolation and protocol checks, and the
actor computes the metrics from labels the sandbox never sees. An actor asks the cluster for
one candidate's resources (``Resources``: CPUs, GPUs including fractions, memory), so the
cluster places as many as fit and a GPU goes to one candidate (or to ``1 / gpus`` of them).

Data travel once: the coordinator puts the data set in Ray's object store, each node fetches it
once, and the first actor on a node writes the arrays to the node's disk (under a lock) for every
actor there. Records travel back: actors return events and evaluations, and the coordinator,
the only writer of the history, records them. Checkpoints (multi-fidelity) and a final job's
weights come back to the coordinator too, so losing a node loses neither.

Failure: an actor or node lost in the middle of a job (the process killed, the machine gone)
is replaced, and its job goes back to the front of the queue, up to ``retries`` times; each
loss is reported as a ``lost`` event (node, error, attempt). A job that loses its worker more
often finishes ``failed`` with every loss named. A job finishes exactly once: a dead actor
sends nothing more, and a finished event already received stands.
"""

from __future__ import annotations

import queue
import secrets
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evaluator.data.base import Dataset
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.pools.ray_actor import actor_class, fingerprint
from evaluator.pools.ray_cluster import Cluster
from evaluator.records import Evaluation, Purpose, Status
from sandbox.isolation import Isolation
from sandbox.limits import Limits

POLL_SECONDS = 1.0  # how long one poll of an actor waits for its job's next event
START_RETRIES = 3  # first actors whose process died while starting, replaced before the pool gives up
START_TIMEOUT = 180.0  # seconds to wait for an actor to start before saying the cluster has no room for it
STUCK_CHECK = 5.0  # while jobs wait for a replacement actor, how often to check whether it can start at all


@dataclass(frozen=True)
class Resources:
    """What one candidate asks the cluster for (one actor holds them while it lives)."""

    cpus: float = 1.0
    gpus: float = 0.0  # a fraction shares one GPU: 0.5 puts two candidates on each GPU
    memory_mb: int | None = None  # reserved on the node (Ray's "memory" resource); the job's own limit is Limits.memory_mb

    def __post_init__(self) -> None:
        if self.cpus <= 0:
            raise ValueError(f"cpus={self.cpus} must be positive")
        if self.gpus < 0 or (self.gpus > 1 and self.gpus != int(self.gpus)):
            raise ValueError(f"gpus={self.gpus}: a fraction of one GPU (0.25, 0.5) or a whole number")

    def slots(self, cluster: dict[str, float]) -> int:
        """How many candidates the cluster's totals hold at once."""
        fits = [cluster.get("CPU", 0.0) / self.cpus]
        if self.gpus:
            fits.append(cluster.get("GPU", 0.0) / self.gpus)
        if self.memory_mb:
            fits.append(cluster.get("memory", 0.0) / (self.memory_mb * 2**20))
        return int(min(fits) + 1e-9)

    def describe(self) -> str:
        mem = f", {self.memory_mb} MB" if self.memory_mb else ""
        return f"{self.cpus:g} CPU, {self.gpus:g} GPU{mem}"


@dataclass
class _Slot:
    """One actor as the coordinator sees it."""

    handle: Any
    ready_ref: Any  # info(), resolved once the actor has started
    info: dict[str, Any] | None = None
    job: _Pending | None = None
    poll_ref: Any = None
    submit_ref: Any = None
    cancel_after_submit: tuple[Status, str | None] | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Pending:
    job: Job
    token: str
    losses: list[str] = field(default_factory=list)  # why each earlier attempt ended: node and error
    submitted: float = field(default_factory=time.monotonic)  # when the coordinator took the job
    dispatched: float | None = None  # when it was handed to an actor (the last attempt's)


class RayPool(EvaluationPool):
    """The pool interface (evaluator.pools.base) over actors on a Ray cluster; see the module text."""

    seeded = True

    def __init__(self, dataset: Dataset, space: str, *, cluster: Cluster, run_id: str, workdir: Path, epochs: int,
                 resources: Resources = Resources(), workers: int | None = None, limits: Limits = Limits(),
                 threads: int | None = None, proxies: tuple[str, ...] = (), isolation: Isolation | None = None,
                 weights_dir: Path | None = None, retries: int = 2, pool_options: dict[str, Any] | None = None,
                 owns_cluster: bool = False) -> None:
        import ray

        if retries < 0:
            raise ValueError(f"retries={retries} must be 0 or more")
        fits = resources.slots(cluster.resources)
        if fits < 1:
            raise ValueError(f"no node of {cluster.describe()} can hold one candidate's {resources.describe()}: "
                             "ask for less (--ray-cpus, --ray-gpus, --memory-mb) or add nodes")
        self.cluster, self.resources, self.retries, self.owns_cluster = cluster, resources, retries, owns_cluster
        self.isolation = isolation
        self.capacity = min(workers, fits) if workers else fits
        self.epochs, self.space, self.dataset = epochs, space, dataset
        self.workdir = Path(workdir)
        self.weights_dir = Path(weights_dir) if weights_dir is not None else self.workdir / "weights"
        self.notes: list[str] = []
        if workers and workers > fits:
            self.notes.append(f"--workers {workers}: the cluster holds {fits} candidates of {resources.describe()} "
                              f"at once; using {fits}")
        threads = threads or max(1, int(resources.cpus))
        self._config = {"run": f"{run_id}-{secrets.token_hex(3)}", "fingerprint": fingerprint(dataset),
                        "space": space, "epochs": epochs, "limits": limits, "threads": threads,
                        "proxies": tuple(proxies), "isolation": isolation, "pool_options": pool_options or {}}
        self._data = [ray.put(dataset)]  # in a list: Ray passes a nested reference through unresolved
        self._queue: deque[_Pending] = deque()
        self._slots: list[_Slot] = []
        self._local: queue.SimpleQueue[PoolEvent] = queue.SimpleQueue()  # events made here (cancelled in queue, lost)
        self._results: dict[str, Evaluation] = {}
        self._checkpoints: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.lost = 0  # actors lost so far
        self._start_losses = 0  # actors whose process died while they started
        for _ in range(self.capacity):
            self._slots.append(self._new_slot())
        self._wait_ready()

    # -- actors ------------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        options: dict[str, Any] = {"num_cpus": self.resources.cpus, "num_gpus": self.resources.gpus}
        if self.resources.memory_mb:
            options["memory"] = self.resources.memory_mb * 2**20
        handle = actor_class().options(**options).remote(self._config, self._data)
        return _Slot(handle=handle, ready_ref=handle.info.remote())

    def _wait_ready(self) -> None:
        """Wait for the first actors; one whose process died while it started (killed, its node
        lost) is replaced, at most START_RETRIES times in all."""
        import ray

        while True:
            waiting = [s for s in self._slots if s.info is None]
            refs = [s.ready_ref for s in waiting]
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT)
            if not done:
                self.owns_cluster = False  # the caller closes the cluster it gave
                self.close()
                raise RuntimeError(f"no Ray actor started within {START_TIMEOUT:g} s on {self.cluster.describe()} "
                                   f"(each asks for {self.resources.describe()}); `ray status` shows what is free")
            for slot in waiting:
                if slot.ready_ref in done:
                    self._take_info(slot)
            if all(s.info is not None for s in self._slots):
                return

    def _take_info(self, slot: _Slot) -> None:
        import ray

        try:
            slot.info = ray.get(slot.ready_ref)
        except Exception as exc:  # noqa: BLE001 - an actor that cannot start is replaced or reported; say why
            message = _first_line(exc)
            died = isinstance(exc, ray.exceptions.RayActorError) and not exc.actor_init_failed
            if died and self._start_losses < START_RETRIES:  # its process died, not its code: start another
                self._start_losses += 1
                self.lost += 1
                self._slots[self._slots.index(slot)] = self._new_slot()
                return
            self._slots.remove(slot)
            if "ModuleNotFoundError" in str(exc) or "No module named" in str(exc):
                raise RuntimeError(f"a Ray worker cannot import archagent: {message}. Install the same archagent "
                                   "version on every node of the cluster (docs/ray.md)") from None
            raise RuntimeError(f"a Ray actor failed to start: {message}") from None

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """What each started actor said of itself: node id, ip, pid, GPUs, device."""
        return [s.info for s in self._slots if s.info is not None]

    def running_on(self, candidate_id: str) -> list[dict[str, Any]]:
        """The actors (as in ``nodes``) running a job of the candidate now."""
        return [s.info for s in self._slots if s.info is not None and s.job is not None
                and s.job.job.candidate_id == candidate_id and s.submit_ref is None]

    # -- the pool interface ----------------------------------------------------------

    def submit(self, job: Job) -> None:
        stop = self._stop_epoch(job)
        if job.purpose is Purpose.FINAL and (stop != self.epochs or job.resume or job.checkpoint):
            raise ValueError("a final evaluation trains the whole schedule from scratch: no fidelity, checkpoint or resume")
        if job.resume:
            held = self._checkpoints.get(job.candidate_id)
            if held is None or held[1]["epoch"] >= stop:
                have = f"one at epoch {held[1]['epoch']}" if held else "none"
                raise ValueError(f"cannot resume {job.candidate_id} to epoch {stop}: the pool holds {have}")
        self._queue.append(_Pending(job=job, token=secrets.token_hex(4)))
        self._dispatch()

    @property
    def in_flight(self) -> int:
        return len(self._queue) + sum(1 for s in self._slots if s.job is not None)

    def result(self, candidate_id: str) -> Evaluation | None:
        return self._results.get(candidate_id)

    def cancel(self, candidate_id: str, *, status: Status = Status.PRUNED, reason: str | None = None) -> bool:
        hit = False
        for pending in [p for p in self._queue if p.job.candidate_id == candidate_id]:
            self._queue.remove(pending)
            self._finish_here(pending, status, reason or "cancelled by the coordinator before it started")
            hit = True
        for slot in self._slots:
            if slot.job is not None and slot.job.job.candidate_id == candidate_id:
                if slot.submit_ref is not None:  # the actor may not have the job yet: cancel once it has
                    slot.cancel_after_submit = (status, reason)
                else:
                    slot.handle.cancel.remote(candidate_id, status, reason)
                hit = True
        return hit

    def discard(self, candidate_id: str) -> None:
        held = self._checkpoints.pop(candidate_id, None)
        if held is not None:
            held[0].unlink(missing_ok=True)

    def events(self, timeout: float | None = None) -> list[PoolEvent]:
        import ray

        deadline = None if timeout is None else time.monotonic() + timeout
        out = self._drain_local()
        while True:
            self._dispatch()
            out += self._drain_local()
            refs = self._refs()
            if not refs:
                return out
            wait = 0.0 if out else (None if deadline is None else max(0.0, deadline - time.monotonic()))
            if self._queue and any(s.info is None for s in self._slots):
                wait = min(wait, STUCK_CHECK) if wait is not None else STUCK_CHECK
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait)
            for ref in ready:
                out += self._handle(ref)
            self._retire_stuck()
            out += self._drain_local()
            if out or (deadline is not None and time.monotonic() >= deadline):
                return out

    def close(self) -> None:
        import ray

        for pending in list(self._queue):
            self._finish_here(pending, Status.PRUNED, "the pool closed before it started")
        self._queue.clear()
        closing, seen_nodes = [], {}
        for slot in self._slots:  # the last actor of each node also removes the node's staged data
            if slot.info is not None:
                seen_nodes[slot.info["node_id"]] = slot
        for slot in self._slots:
            last = slot.info is not None and seen_nodes.get(slot.info["node_id"]) is slot
            closing.append(slot.handle.close.remote(last))
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=30)
        for slot in self._slots:
            ray.kill(slot.handle, no_restart=True)
        self._slots.clear()
        shutil.rmtree(self.workdir / "checkpoints", ignore_errors=True)
        self._checkpoints.clear()
        if self.owns_cluster:
            self.owns_cluster = False
            self.cluster.close()

    # -- the coordinator's bookkeeping -------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued jobs to idle started actors, start a replacement for a lost one."""
        for slot in self._slots:
            if not self._queue:
                return
            if slot.info is None or slot.job is not None:
                continue
            pending = self._queue.popleft()
            held = self._checkpoints.get(pending.job.candidate_id) if pending.job.resume else None
            checkpoint = (held[0].read_bytes(), held[1]) if held else None
            slot.job, slot.cancel_after_submit = pending, None
            pending.dispatched = time.monotonic()
            slot.submit_ref = slot.handle.submit.remote(pending.job, checkpoint)
            slot.poll_ref = None

    def _refs(self) -> list[Any]:
        refs = []
        for slot in self._slots:
            if slot.info is None:
                refs.append(slot.ready_ref)
                continue
            if slot.submit_ref is not None:
                refs.append(slot.submit_ref)
            elif slot.job is not None:
                if slot.poll_ref is None:
                    slot.poll_ref = slot.handle.poll.remote(POLL_SECONDS)
                refs.append(slot.poll_ref)
        return refs

    def _slot_of(self, ref: Any) -> tuple[_Slot, str]:
        for slot in self._slots:
            for what in ("ready_ref", "submit_ref", "poll_ref"):
                if getattr(slot, what) is not None and getattr(slot, what) == ref:
                    return slot, what
        raise KeyError(ref)

    def _handle(self, ref: Any) -> list[PoolEvent]:
        import ray

        slot, what = self._slot_of(ref)
        try:
            value = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError) as exc:
            return self._lost(slot, exc)
        except ray.exceptions.RayTaskError as exc:  # the actor is fine; the call raised (a refused job)
            if what == "ready_ref":
                self._take_info(slot)  # raises with the reason
            slot.submit_ref = None
            pending, slot.job = slot.job, None
            if pending is not None:
                self._finish_here(pending, Status.FAILED, f"the Ray worker refused the job: {_first_line(exc)}")
            return []
        if what == "ready_ref":
            slot.info = value
            return []
        if what == "submit_ref":
            slot.submit_ref = None
            if slot.cancel_after_submit is not None and slot.job is not None:
                slot.handle.cancel.remote(slot.job.job.candidate_id, *slot.cancel_after_submit)
                slot.cancel_after_submit = None
            return []
        slot.poll_ref = None
        out = []
        node = slot.info.get("ip") if slot.info else None
        for event, extra in value:
            if event.kind == "finished" and event.evaluation is not None:
                evaluation = self._received(event.evaluation, extra)
                if slot.job is not None:
                    evaluation = _with_losses(evaluation, slot.job.losses, node)
                    evaluation = _with_ray_overhead(evaluation, slot.job, extra.get("actor_seconds"))
                event = replace(event, evaluation=evaluation)
                self._results[event.candidate_id] = evaluation
                slot.job = None
            out.append(replace(event, data={**event.data, "node": node}))
        return out

    def _received(self, evaluation: Evaluation, extra: dict[str, Any]) -> Evaluation:
        """Keep what travelled with a finished job at the coordinator: the checkpoint (for the
        candidate's next rung) and a final job's weights (beside the history, as locally)."""
        cid = evaluation.candidate_id
        if "checkpoint" in extra:
            data, facts = extra["checkpoint"]
            path = self.workdir / "checkpoints" / f"{cid}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self._checkpoints[cid] = (path, facts)
        elif evaluation.purpose is Purpose.SEARCH:
            self.discard(cid)
        if "weights" in extra:
            data, facts = extra["weights"]
            keep = self.weights_dir / Path(evaluation.metrics["weights"]).name
            try:
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_bytes(data)
                keep.with_suffix(".json").write_text(facts, encoding="utf-8")
                return evaluation.model_copy(update={"metrics": evaluation.metrics | {"weights": str(keep)}})
            except OSError as exc:
                keep.unlink(missing_ok=True)
                metrics = {k: v for k, v in evaluation.metrics.items() if k != "weights"}
                return evaluation.model_copy(update={"metrics": metrics | {
                    "weights_error": f"the weights could not be kept in {self.weights_dir}: {exc.strerror or exc}"}})
        return evaluation

    def _lost(self, slot: _Slot, exc: BaseException) -> list[PoolEvent]:
        """An actor died (its process killed, its node gone): replace it and re-queue its job."""
        self.lost += 1
        node = slot.info.get("ip") if slot.info else "a node not yet known"
        index = self._slots.index(slot)
        self._slots[index] = self._new_slot()
        pending = slot.job
        if pending is None:
            return []
        why = f"worker on {node} lost: {_first_line(exc)}"
        pending.losses.append(why)
        attempt = len(pending.losses)
        retrying = attempt <= self.retries
        event = PoolEvent(kind="lost", candidate_id=pending.job.candidate_id,
                          data={"node": node, "error": why, "attempt": attempt, "retrying": retrying,
                                "purpose": pending.job.purpose.value, "seed": pending.job.seed})
        if retrying:
            self._queue.appendleft(pending)
        else:
            times = "once" if attempt == 1 else f"{attempt} times"
            self._finish_here(pending, Status.FAILED,
                              f"its Ray worker was lost {times}, and --ray-retries allows {self.retries} "
                              f"retr{'y' if self.retries == 1 else 'ies'}: " + "; ".join(pending.losses))
        return [event]

    def _retire_stuck(self) -> None:
        """A replacement actor the cluster could not place within START_TIMEOUT (its node is
        gone for good and no other has room): give up its slot while others work; with none
        left, fail the queued jobs rather than wait for ever."""
        import ray

        now = time.monotonic()
        stuck = [s for s in self._slots if s.info is None and now - s.started > START_TIMEOUT]
        if not stuck:
            return
        alive = [s for s in self._slots if s.info is not None]
        for slot in stuck if alive else []:
            ray.kill(slot.handle, no_restart=True)
            self._slots.remove(slot)
            self.capacity = max(1, self.capacity - 1)
            self.notes.append(f"a lost Ray worker could not be replaced within {START_TIMEOUT:g} s "
                              f"({self.resources.describe()} free nowhere); going on with {len(self._slots)}")
        if not alive:
            while self._queue:
                self._finish_here(self._queue.popleft(), Status.FAILED,
                                  f"no Ray worker could be started within {START_TIMEOUT:g} s after the cluster lost "
                                  f"its workers ({self.cluster.describe()}; each candidate asks for "
                                  f"{self.resources.describe()}); `ray status` shows what is free")
            for slot in stuck:
                slot.started = now  # keep waiting for a node to join; fail what queues meanwhile

    def _finish_here(self, pending: _Pending, status: Status, error: str) -> None:
        job = pending.job
        evaluation = Evaluation(candidate_id=job.candidate_id, purpose=job.purpose, status=status, fidelity=0.0,
                                metrics={"seed": job.seed, "worker_losses": len(pending.losses)},
                                source="ray pool", wall_seconds=0.0, device_seconds=0.0, error=error)
        self._results[job.candidate_id] = evaluation
        self._local.put(PoolEvent(kind="finished", candidate_id=job.candidate_id, evaluation=evaluation))

    def _drain_local(self) -> list[PoolEvent]:
        out = []
        while True:
            try:
                out.append(self._local.get_nowait())
            except queue.Empty:
                return out


def _with_losses(evaluation: Evaluation, losses: list[str], node: str | None) -> Evaluation:
    metrics = evaluation.metrics | {"node": node}
    if losses:
        metrics |= {"worker_losses": len(losses), "worker_lost": "; ".join(losses)[:1000]}
    return evaluation.model_copy(update={"metrics": metrics, "source": f"{evaluation.source} (ray)"})


def _with_ray_overhead(evaluation: Evaluation, pending: _Pending, actor_seconds: float | None) -> Evaluation:
    """Add what the cluster cost to the job's overhead (the node's pool measured the rest):
    ``ray_queue``, from the coordinator taking the job to handing it to an actor (earlier lost
    attempts included), and ``ray_transport``, the round trips between the coordinator and the
    actor (from the hand-over to the record's arrival, less the job's time on the node)."""
    now = time.monotonic()
    overhead = dict(evaluation.metrics.get("overhead") or {})
    dispatched = pending.dispatched or pending.submitted
    overhead["ray_queue"] = round(dispatched - pending.submitted, 4)
    if actor_seconds is not None:
        overhead["ray_transport"] = round(max(0.0, now - dispatched - actor_seconds), 4)
    return evaluation.model_copy(update={"metrics": evaluation.metrics | {"overhead": overhead}})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:  # Ray's messages start with a banner; the cause is the last "Error: ..." line
        if "Error:" in ln or "error:" in ln:
            text = ln.strip()
    return (lines[0] if text == str(exc).strip() and lines else text)[:300]
