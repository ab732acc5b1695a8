"""The local evaluation pool: each candidate trains in a fresh worker process.

The pool stages the task's arrays once (training images and labels; validation and test
images without labels), gives each job a scratch folder with copies of them (and, in code
mode, the candidate's ``model.py``: the space's ``network_file``), starts the worker (``evaluator.job.worker``, from the same code
as this process) with ``python -I`` under the limits
of ``sandbox.process`` and the isolation of ``sandbox.isolation`` (no network, read-only
system, the scratch folder the only writable place, the history home and the data set's
source files hidden), checks every message it sends (evaluator.job.protocol), and computes every
metric itself from the predictions and the labels it alone holds. Messages that fail the
checks are counted; a job that sends more than MAX_REJECTED of them is killed, and a message
that arrives after its job ended is ignored. Up to ``capacity`` jobs run at once.

A search job may stop before the end of the schedule and leave a checkpoint, which the pool
keeps under ``workdir/checkpoints`` (outside every job's scratch folder) with the curve so
far; a later job of the same candidate continues from it and its evaluation holds the whole
curve. Search jobs that start afresh can also score the zero-cost proxies the pool was given
(``proxies``) before training; they are recorded in the evaluation's metrics as
``proxy_<name>``.

A final job leaves its trained ``state_dict``; the pool copies it (a regular file only, never
through a link) to ``weights_dir/<candidate>-seed<k>.pt`` beside a ``.json`` of what the
trusted side knows about it (seed, epochs, input shape, classes, the input normalisation the
trainer applied, SHA-256), and records the path in the evaluation's metrics as ``weights``
(or why none was kept as ``weights_error``). The file comes from the sandboxed process: it is
data to check (``torch.load(weights_only=True)``, keys and shapes), never code to run.

With ``warm`` > 0 the pool keeps that many spare workers started ahead of their jobs: each a
held sandboxed process (``sandbox.process.ChildProcess(held=True)``, every limit and layer
applied) with its own fresh scratch folder that already holds the arrays every job gets; it
imports torch and the trainer and warms up (evaluator.job.worker), then waits for its key. ``submit``
hands a job to a living spare when there is one, booted or still booting (writes the job's files
into its scratch folder, then releases the key), and a keeper thread starts a replacement as soon
as a core is left beside the running CPU jobs' threads for half a second (on a machine the jobs
fill: when a job ended and no other came at once); with none, the job starts cold. A spare runs
exactly one job (candidate code is hostile: a process it touched never sees another candidate); one that died
while waiting is discarded and replaced, never given a job; jobs that need an environment of
their own (the tests' fault injection) always start cold. Spares are not jobs: they do not count
in ``in_flight`` or against ``capacity``; ``close()`` kills them and removes their folders.

Every evaluation's metrics hold ``overhead``: seconds measured on this side (``time.monotonic``,
never a time the worker sends) of ``prepare`` (submit: the job's folder and files), ``boot``
(spawn, or a spare's release, to the worker's ready message: the network is built),
``first_step`` (submit to ready: just before proxies and the first training step), ``finish``
(the worker's last message to the evaluation made: process exit, checks, checkpoint and weights
kept, folder removed), and ``warm`` (whether a spare ran the job).

Why one module of this length: one lock guards the running jobs, and submitting a job, checking
its messages, judging how it ended and keeping its checkpoint and weights all act on the same job
record (``_Running``). The spares (``evaluator.pools.spares``) and the files a pool stages and
keeps (``evaluator.pools.staging``) live apart.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.data.base import Dataset
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.job.protocol import Checker, Done, Epoch, Failure, Proxies, Ready, Test
from evaluator.pools.spares import Spare, Spares, end_spare
from evaluator.pools.staging import NotKept, copy_regular_file, default_weights_dir, stage_arrays
from evaluator.records import CurvePoint, Evaluation, Purpose, Status
from evaluator.spaces import space_class
from evaluator.job.worker import CHECKPOINT_IN, CHECKPOINT_OUT, TEST_HOOKS_ENV, WEIGHTS_OUT
from sandbox.isolation import Isolation
from sandbox.environment import clean_env, redact
from sandbox.limits import Limits
from sandbox.process import ChildProcess


PROXY_EXTRAS = ("proxy_seconds", "proxy_undefined")  # the metrics written beside the proxy_<name> scores
MAX_REJECTED = 200  # a job whose worker sends more messages that fail the checks is killed
# The worker runs the same evaluator code as this process (not whatever `python -I -m` would
# find installed: a checkout run from its own folder and an editable install elsewhere differ).
CODE_ROOT = Path(__file__).resolve().parents[2]
WORKER_CODE = (CODE_ROOT / "evaluator", CODE_ROOT / "sandbox")  # what the worker imports: readable in the sandbox
WORKER_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
               "runpy.run_module('evaluator.job.worker', run_name='__main__', alter_sys=True)")
WEIGHTS_FORMAT = 1  # the .json written beside kept weights
SHARED_ARRAYS = ("x_train", "y_train", "x_val")  # what every job's folder holds (a final job also gets x_test)


@dataclass
class _Saved:
    """A candidate's checkpoint, and what its earlier jobs measured."""

    path: Path
    epoch: int
    curve: list[CurvePoint]
    device_seconds: float
    wall_seconds: float
    metrics: dict[str, Any]
    jobs: int


@dataclass
class _Running:
    job: Job
    checker: Checker
    process: ChildProcess
    scratch: Path
    started: float  # submit() began (time.monotonic, as every time below)
    cancelled: bool = False
    stop_status: Status = Status.PRUNED  # the status a cancelled job finishes with
    stop_reason: str | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    device_seconds: float = 0.0
    images_per_second: float = 0.0
    start_epoch: int = 0
    stop_epoch: int = 0
    saved: _Saved | None = None  # the checkpoint this job continues
    proxies: Proxies | None = None
    closed: bool = False  # the job ended: nothing it sends counts any more
    warm: bool = False  # a spare ran it
    launched: float | None = None  # the process was spawned, or the spare released
    ready_at: float | None = None  # its ready message arrived
    last_message_at: float | None = None  # its last accepted message arrived


def pool_cores() -> int:
    """The cores this process's jobs share: ``OMP_NUM_THREADS`` when it is set (a process told to
    use that many keeps its jobs within them: a shared machine, parallel test workers; torch's
    threads on more cores than a process gets wait for each other at every step, several times
    slower), else ``os.cpu_count()``."""
    try:
        cores = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:  # unset, or a list of per-level counts
        cores = 0
    return cores if cores > 0 else os.cpu_count() or 1


def job_threads(capacity: int) -> int:
    """Threads of each job when the pool is given none: the cores (``pool_cores``) shared among
    the ``capacity`` jobs that run at once."""
    return max(1, pool_cores() // capacity)


def remove_left_jobs(workdir: Path) -> None:
    """Remove the job folders a killed process left in ``workdir``. A workdir belongs to one pool
    at a time (a run's folder: one process works on a run at a time; an actor's: made fresh), so
    whatever is there when a pool starts is from a process that is gone: its sandboxes ended with
    it (parent-death signals), its folders did not."""
    jobs = workdir / "jobs"
    if jobs.is_dir():
        for left in jobs.iterdir():
            shutil.rmtree(left, ignore_errors=True)


class TrainingPool(EvaluationPool):
    seeded = True
    def __init__(
        self,
        dataset: Dataset,
        space: str,
        *,
        workdir: Path,
        epochs: int,
        capacity: int = 1,
        limits: Limits = Limits(),
        device: str = "cpu",
        threads: int | None = None,
        test_inject: dict[str, str] | None = None,  # candidate-id suffix -> code; tests only
        proxies: tuple[str, ...] = (),  # zero-cost proxies search jobs score before training
        isolation: Isolation | None = None,  # the sandbox's layers (sandbox.isolation); None: process limits only
        weights_dir: Path | None = None,  # where final jobs' trained weights are kept (default_weights_dir)
        staged: Path | None = None,  # a folder already holding the arrays (stage_arrays), shared with other pools
        warm: int = 0,  # spare workers kept started ahead of their jobs; 0: every job starts cold
        builder_source: str | None = None,  # a declared space's builder: its network_file in every job
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be at least 1")
        if warm < 0:
            raise ValueError(f"warm={warm} must be 0 (no spares) or more")
        self.space_class = space_class(space)
        # a network file that the specs do not carry (a space file's builder) is given to the pool, and only then
        given = self.space_class.network_file is not None and not self.space_class.runs_candidate_code
        if given != (builder_source is not None):
            raise ValueError(f"builder_source is given exactly for a space built from a file of its own (space {space!r})")
        self.dataset, self.space, self.epochs, self.capacity = dataset, space, epochs, capacity
        self.builder_source = builder_source
        # The CUDA driver reserves far more address space than it uses: on a GPU the memory
        # limit is enforced on resident memory only (sandbox.process.Limits).
        self.limits = replace(limits, address_space=False) if device.startswith("cuda") else limits
        self.device = device
        self.threads = threads or job_threads(capacity)
        self.workdir = Path(workdir)
        remove_left_jobs(self.workdir)
        self.test_inject = test_inject or {}
        self.proxies = tuple(proxies)
        # the sandbox must let the worker read its own code, wherever this checkout lives
        self.isolation = None if isolation is None else replace(isolation, readable=(*isolation.readable, *WORKER_CODE))
        self.weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir(self.workdir)
        self._normalisation: dict[str, Any] | None = None
        self._checkpoints: dict[str, _Saved] = {}
        self._events: queue.Queue[PoolEvent] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self._results: dict[str, Evaluation] = {}
        self._lock = threading.Lock()
        self._own_staged = staged is None
        self._staged = stage_arrays(dataset, self.workdir / "data") if staged is None else Path(staged)
        self.warm = warm
        self._cores = pool_cores()
        self.spares = Spares(warm, start=self._start_spare, may_start=self._core_idle)

    # -- data ------------------------------------------------------------------------

    def _scratch(self, name: str) -> Path:
        """A job's own folder, the only place it may write, holding copies of the arrays every job
        sees (copies, not links: a job that wrote into a linked file would change every later
        job's data)."""
        scratch = self.workdir / "jobs" / name
        scratch.mkdir(parents=True)
        for array in SHARED_ARRAYS:
            shutil.copyfile(self._staged / f"{array}.npy", scratch / f"{array}.npy")
        return scratch

    def _job_files(self, job: Job, scratch: Path) -> None:
        """What only this job gets: the test inputs (a final job), and the file the worker builds the
        network from where the space has one (code mode: the candidate's model file; a declared
        space: its builder)."""
        if job.purpose is Purpose.FINAL:
            shutil.copyfile(self._staged / "x_test.npy", scratch / "x_test.npy")
        network_file = self.space_class.network_file
        if network_file is not None:
            source = self.space_class.network_source(job.spec)
            (scratch / network_file).write_text(self.builder_source if source is None else source, encoding="utf-8")

    def _process(self, scratch: Path, holder: dict[str, _Running], *, key: bytes | None = None,
                 extra_env: dict[str, str] | None = None) -> ChildProcess:
        """The worker of one job in ``scratch``; without ``key``, a held one (a spare) that waits for it."""
        threads_env = {k: str(self.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        if not self.device.startswith("cuda"):
            threads_env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job never touches (or holds memory on) a GPU

        def on_message(line: bytes) -> None:
            run = holder.get("run")
            if run is not None:  # a held worker sends nothing before its key: a line without a job is dropped
                self._on_message(run, line)

        return ChildProcess(
            [sys.executable, "-I", "-c", WORKER_BOOT, str(CODE_ROOT), str(scratch)], cwd=scratch,
            env=clean_env(threads_env | (extra_env or {}), home=scratch), limits=self.limits, key=key,
            on_message=on_message, threads=self.threads, isolation=self.isolation, held=key is None,
        )

    # -- the pool interface ----------------------------------------------------------

    def submit(self, job: Job) -> None:
        submitted = time.monotonic()
        stop = self._stop_epoch(job)
        if job.purpose is Purpose.FINAL and (stop != self.epochs or job.resume or job.checkpoint):
            raise ValueError("a final evaluation trains the whole schedule from scratch: no fidelity, checkpoint or resume")
        saved = self._checkpoints.get(job.candidate_id) if job.resume else None
        if job.resume and (saved is None or saved.epoch >= stop):
            have = f"one at epoch {saved.epoch}" if saved else "none"
            raise ValueError(f"cannot resume {job.candidate_id} to epoch {stop}: the pool holds {have}")
        start = saved.epoch if saved else 0
        job_id = f"{job.candidate_id}-{job.purpose.value}-s{job.seed}-{secrets.token_hex(3)}"
        key = secrets.token_bytes(32)
        want_test = job.purpose is Purpose.FINAL
        proxies = self.proxies if job.purpose is Purpose.SEARCH and not saved else ()
        spec = {"job": job_id, "space": self.space, "spec": job.spec, "network_file": self.space_class.network_file,
                "training": self.space_class.recipe_of(job.spec), "input_shape": list(self.dataset.input_shape),
                "num_classes": self.dataset.num_classes, "x_scale": self.dataset.x_scale, "epochs": self.epochs,
                "stop_epoch": stop, "start_epoch": start, "save_checkpoint": job.checkpoint and stop < self.epochs,
                "proxies": list(proxies), "seed": job.seed, "device": self.device, "threads": self.threads,
                "want_test": want_test, "save_weights": want_test}
        extra_env = {}
        inject = next((code for suffix, code in self.test_inject.items() if job.candidate_id.endswith(suffix)), None)
        if inject is not None:
            spec["test_inject"] = inject
            extra_env[TEST_HOOKS_ENV] = "1"
        spare = self.spares.take() if inject is None else None  # fault injection needs its own environment: cold
        scratch = spare.scratch if spare is not None else self._scratch(job_id)
        try:
            self._job_files(job, scratch)
            if saved is not None:  # a copy: the job may write to it, the kept one must not change
                shutil.copyfile(saved.path, scratch / CHECKPOINT_IN)
            (scratch / "job.json").write_text(json.dumps(spec))
        except BaseException:
            if spare is not None:  # e.g. a full disk: the spare never runs this half-written job
                end_spare(spare)
            raise
        checker = Checker(key=key, job=job_id, n_val=len(self.dataset.y_val),
                          n_test=len(self.dataset.y_test) if want_test else 0,
                          num_classes=self.dataset.num_classes, epochs=stop, start_epoch=start,
                          proxies=frozenset(proxies))
        if spare is not None:
            holder, process = spare.holder, spare.process
        else:
            holder = {}
            process = self._process(scratch, holder, key=key, extra_env=extra_env)
        run = _Running(job=job, checker=checker, process=process, scratch=scratch, started=submitted,
                       curve=list(saved.curve) if saved else [], device_seconds=saved.device_seconds if saved else 0.0,
                       start_epoch=start, stop_epoch=stop, saved=saved, warm=spare is not None)
        holder["run"] = run
        with self._lock:
            self._running[job.candidate_id] = run
        run.launched = time.monotonic()
        if spare is not None:
            process.release(key)
            self.spares.wake()  # the keeper starts its replacement
        else:
            process.start()
        self._events.put(PoolEvent(kind="started", candidate_id=job.candidate_id,
                                   data={"job": job_id, "purpose": job.purpose.value, "seed": job.seed, "epochs": stop,
                                         "from_epoch": start}))
        threading.Thread(target=self._finish, args=(run,), daemon=True).start()

    def events(self, timeout: float | None = None) -> list[PoolEvent]:
        out = []
        try:
            out.append(self._events.get(timeout=timeout) if self.in_flight or not self._events.empty()
                       else self._events.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def result(self, candidate_id: str) -> Evaluation | None:
        with self._lock:
            return self._results.get(candidate_id)

    def cancel(self, candidate_id: str, *, status: Status = Status.PRUNED, reason: str | None = None) -> bool:
        with self._lock:
            run = self._running.get(candidate_id)
        if run is None:
            return False
        run.stop_status, run.stop_reason = status, reason
        run.cancelled = True
        run.process.kill()
        return True

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)

    def discard(self, candidate_id: str) -> None:
        with self._lock:
            saved = self._checkpoints.pop(candidate_id, None)
        if saved is not None:
            saved.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.spares.close()
        for cid in list(self._running):
            self.cancel(cid)
        if self._own_staged:
            shutil.rmtree(self._staged, ignore_errors=True)
        shutil.rmtree(self.workdir / "checkpoints", ignore_errors=True)
        self._checkpoints.clear()

    # -- spares (evaluator.pools.spares keeps them) ------------------------------------

    def _start_spare(self) -> Spare:
        scratch = self._scratch(f"spare-{secrets.token_hex(4)}")
        holder: dict[str, _Running] = {}
        process = self._process(scratch, holder)
        try:
            process.start()
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return Spare(process=process, scratch=scratch, holder=holder)

    def _core_idle(self) -> bool:
        """Whether a spare may start now: a core is left beside the threads of the jobs running.
        A spare's start (torch's import, the warm-up) on a core a job's threads use slows that job
        several times over (torch's threads wait for each other at every step): 3.8 s of
        training instead of 0.6 s for a digits candidate on 2 cores, measured by
        bench/pool_overhead.py. So on a machine the jobs fill, the next spare starts when a job ends.
        Jobs on a GPU leave the cores to the spares."""
        if self.device.startswith("cuda"):
            return True
        with self._lock:
            busy = self.threads * len(self._running)
        return self._cores - busy >= 1

    # -- one job ---------------------------------------------------------------------

    def _on_message(self, run: _Running, line: bytes) -> None:
        if run.closed:  # late: the job's evaluation is already made
            return
        arrived = time.monotonic()
        msg = run.checker.feed(line)
        if msg is not None:
            run.last_message_at = arrived
            if isinstance(msg, Ready):
                run.ready_at = arrived
        if len(run.checker.rejected) > MAX_REJECTED and not run.cancelled:
            run.stop_status, run.stop_reason = Status.FAILED, (
                f"the worker sent more than {MAX_REJECTED} messages that failed the protocol checks "
                f"(first: {run.checker.rejected[0][:200]}); the job was killed")
            run.cancelled = True
            run.process.kill()
            return
        if isinstance(msg, Proxies):
            run.proxies = msg
        elif isinstance(msg, Epoch):
            val = float(np.mean(np.asarray(msg.val_predictions) == self.dataset.y_val))
            run.curve.append(CurvePoint(epoch=msg.epoch, val_accuracy=val, train_loss=msg.train_loss,
                                        train_accuracy=msg.train_accuracy))
            run.device_seconds += msg.seconds
            run.images_per_second = msg.images_per_second
            self._events.put(PoolEvent(kind="progress", candidate_id=run.job.candidate_id,
                                       data={"epoch": msg.epoch, "epochs": run.checker.epochs, "val_accuracy": val,
                                             "train_loss": msg.train_loss, "train_accuracy": msg.train_accuracy,
                                             "purpose": run.job.purpose.value,
                                             "seed": run.job.seed}))

    def _finish(self, run: _Running) -> None:
        result = run.process.wait()
        run.closed = True  # from here on, a message still in the pipe is late and ignored
        evaluation = self._evaluation(run, result)
        evaluation = self._keep_checkpoint(run, evaluation)
        evaluation = self._keep_weights(run, evaluation)
        shutil.rmtree(run.scratch, ignore_errors=True)
        evaluation = evaluation.model_copy(update={"metrics": evaluation.metrics | {"overhead": self._overhead(run)}})
        with self._lock:  # the event is queued before the slot frees, so no reader can miss it
            self._results[run.job.candidate_id] = evaluation
            self._events.put(PoolEvent(kind="finished", candidate_id=run.job.candidate_id, evaluation=evaluation))
            self._running.pop(run.job.candidate_id, None)
        self.spares.wake()  # a core may be free for a spare now

    @staticmethod
    def _overhead(run: _Running) -> dict[str, float | bool | None]:
        """Where the job's time outside training went, in seconds (see the module's docstring);
        None where the worker never got that far."""
        now = time.monotonic()

        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round(max(0.0, b - a), 4)

        return {"prepare": span(run.started, run.launched), "boot": span(run.launched, run.ready_at),
                "first_step": span(run.started, run.ready_at), "finish": span(run.last_message_at, now),
                "warm": run.warm}

    def _evaluation(self, run: _Running, result: Any) -> Evaluation:
        accepted = run.checker.accepted
        ready = next((m for m in accepted if isinstance(m, Ready)), None)
        test = next((m for m in accepted if isinstance(m, Test)), None)
        failure = next((m for m in accepted if isinstance(m, Failure)), None)
        done = any(isinstance(m, Done) for m in accepted)
        metrics: dict[str, Any] = dict(run.saved.metrics) if run.saved else {}
        peak = max(result.peak_rss_mb, float(metrics.get("peak_memory_mb") or 0.0))
        metrics |= {"seed": run.job.seed, "params": ready.params if ready else metrics.get("params"),
                    "epochs": len(run.curve), "images_per_second": round(run.images_per_second, 1),
                    "peak_memory_mb": peak,
                    "rejected_messages": len(run.checker.rejected) + int(metrics.get("rejected_messages") or 0)}
        if run.saved:
            metrics |= {"jobs": run.saved.jobs + 1, "resumed_from_epoch": run.start_epoch}
        if run.proxies is not None:
            metrics |= {f"proxy_{name}": round(value, 6) for name, value in run.proxies.scores.items()}
            metrics |= {f"proxy_{name}": None for name in run.proxies.errors}
            metrics[PROXY_EXTRAS[0]] = round(run.proxies.seconds, 4)
            if run.proxies.errors:
                metrics[PROXY_EXTRAS[1]] = "; ".join(f"{k}: {v}" for k, v in sorted(run.proxies.errors.items()))[:1000]
        if run.checker.rejected:
            metrics["first_rejection"] = run.checker.rejected[0][:300]
        tail = result.tail_text[-3000:]
        status, error = Status.OK, None
        limits = self.limits
        if run.cancelled:
            status, error = run.stop_status, run.stop_reason or "cancelled by the coordinator"
        elif result.pids_limited:  # before memory: a fork bomb's copies also add up to a large resident total
            said = f" It said: {failure.message[:1000]}" if failure is not None else ""
            status, error = Status.FAILED, (f"process limit ({limits.max_processes} processes and threads) reached: "
                                            f"the job kept starting processes and was stopped.{said} "
                                            f"Last output:\n{tail}")
        elif result.memory_exceeded or result.oom_killed:
            peak = f"resident memory reached {result.peak_rss_mb:g} MB and " if result.memory_exceeded else ""
            status, error = Status.FAILED, (f"memory limit ({limits.memory_mb} MB) exceeded: {peak}the job was killed. "
                                            f"Last output:\n{tail}")
        elif result.disk_exceeded:
            quota = self.isolation.scratch_quota_mb if self.isolation else None
            status, error = Status.FAILED, (f"disk quota exceeded: the job wrote more than {quota} MB into its scratch "
                                            f"folder and was killed. Last output:\n{tail}")
        elif result.timed_out:
            status, error = Status.TIMEOUT, (f"wall-clock limit of {limits.wall_seconds:g} s exceeded; "
                                             f"the process group was killed. Last output:\n{tail}")
        elif failure is not None:
            what = {"nan_loss": "NaN loss", "memory": f"memory limit ({limits.memory_mb} MB) exceeded",
                    "exception": "the candidate raised"}[failure.kind]
            status, error = Status.FAILED, f"{what}: {failure.message}"
        elif not done:
            how = f"was killed by {result.killed_by}" if result.killed_by else f"exited with code {result.returncode}"
            hint = " (likely the memory limit)" if result.killed_by == "SIGKILL" else ""
            rejected = run.checker.rejected
            if rejected:
                hint += (f" before finishing: {len(rejected)} of its messages were rejected (first: {rejected[0][:200]}), "
                         f"so its results were not used")
            else:
                hint += " before finishing"
            status, error = Status.FAILED, f"the worker {how}{hint}. Last output:\n{tail}"
        if error is not None:
            error = redact(error)  # a secret the candidate found never reaches the history
        if result.layers:
            metrics["sandbox"] = ", ".join(result.layers)
        val = run.curve[-1].val_accuracy if run.curve else None
        test_acc = None
        if status is Status.OK and test is not None:
            test_acc = float(np.mean(np.asarray(test.predictions) == self.dataset.y_test))
        return Evaluation(
            candidate_id=run.job.candidate_id, purpose=run.job.purpose, status=status,
            fidelity=float(len(run.curve)), val_accuracy=val if status is Status.OK else None,
            test_accuracy=test_acc, curve=run.curve, metrics=metrics, source=f"trained on {self.device}",
            wall_seconds=result.wall_seconds + (run.saved.wall_seconds if run.saved else 0.0),
            device_seconds=run.device_seconds, error=error,
        )

    def _keep_checkpoint(self, run: _Running, evaluation: Evaluation) -> Evaluation:
        """After a job that stopped early to be continued, move its checkpoint out of the scratch
        folder; after any other job, the candidate's old checkpoint is no longer needed."""
        cid = run.job.candidate_id
        wanted = run.job.checkpoint and run.stop_epoch < self.epochs and evaluation.status is Status.OK
        if not wanted:
            if run.job.purpose is Purpose.SEARCH:
                self.discard(cid)
            return evaluation
        produced = run.scratch / CHECKPOINT_OUT
        if produced.is_symlink() or not produced.is_file():
            self.discard(cid)
            return evaluation.model_copy(update={
                "status": Status.FAILED, "val_accuracy": None,
                "error": f"the worker finished epoch {run.stop_epoch} but left no checkpoint to continue from"})
        keep = self.workdir / "checkpoints" / f"{cid}.pt"
        keep.parent.mkdir(parents=True, exist_ok=True)
        os.replace(produced, keep)
        with self._lock:
            self._checkpoints[cid] = _Saved(path=keep, epoch=run.stop_epoch, curve=list(run.curve),
                                            device_seconds=run.device_seconds, wall_seconds=evaluation.wall_seconds,
                                            metrics=dict(evaluation.metrics), jobs=int(evaluation.metrics.get("jobs", 1)))
        return evaluation

    def _keep_weights(self, run: _Running, evaluation: Evaluation) -> Evaluation:
        """After an ok final job, copy the weights it left out of its scratch folder (which is
        deleted next) and record where they are; say why when there are none to keep."""
        if run.job.purpose is not Purpose.FINAL or evaluation.status is not Status.OK:
            return evaluation
        cid, seed = run.job.candidate_id, run.job.seed
        keep = self.weights_dir / f"{cid}-seed{seed}.pt"
        try:
            digest, size = copy_regular_file(run.scratch / WEIGHTS_OUT, keep)
            if self._normalisation is None:
                self._normalisation = self.dataset.input_normalisation()
            facts = {"format": WEIGHTS_FORMAT, "candidate_id": cid, "seed": seed, "epochs": self.epochs,
                     "space": self.space, "input_shape": list(self.dataset.input_shape),
                     "num_classes": self.dataset.num_classes, "input": self._normalisation, "device": self.device,
                     "sha256": digest, "bytes": size,
                     "note": "written by the sandboxed worker: untrusted data; load with torch.load(weights_only=True)"}
            keep.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        except NotKept as exc:
            return evaluation.model_copy(update={"metrics": evaluation.metrics | {"weights_error": str(exc)}})
        except OSError as exc:  # e.g. a full disk: the evaluation stands, the weights are not kept
            keep.unlink(missing_ok=True)
            return evaluation.model_copy(update={"metrics": evaluation.metrics | {
                "weights_error": f"the weights could not be kept in {self.weights_dir}: {exc.strerror or exc}"}})
        return evaluation.model_copy(update={"metrics": evaluation.metrics | {"weights": str(keep)}})


    # -- checkpoints that travel (the Ray pool keeps them at the coordinator) -------------

    def take_checkpoint(self, candidate_id: str) -> tuple[bytes, dict[str, Any]] | None:
        """Hand over the candidate's checkpoint (its bytes and what its jobs measured) and
        forget it here; None when the pool holds none."""
        with self._lock:
            saved = self._checkpoints.pop(candidate_id, None)
        if saved is None:
            return None
        data = saved.path.read_bytes()
        saved.path.unlink(missing_ok=True)
        facts = {"epoch": saved.epoch, "curve": [p.model_dump() for p in saved.curve],
                 "device_seconds": saved.device_seconds, "wall_seconds": saved.wall_seconds,
                 "metrics": saved.metrics, "jobs": saved.jobs}
        return data, facts

    def adopt_checkpoint(self, candidate_id: str, data: bytes, facts: dict[str, Any]) -> None:
        """Hold a checkpoint another pool made (``take_checkpoint``), so a resume job of the
        candidate continues from it. The bytes came from a sandboxed job: the worker that
        loads them is sandboxed too."""
        keep = self.workdir / "checkpoints" / f"{candidate_id}.pt"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_bytes(data)
        saved = _Saved(path=keep, epoch=int(facts["epoch"]), curve=[CurvePoint(**p) for p in facts["curve"]],
                       device_seconds=float(facts["device_seconds"]), wall_seconds=float(facts["wall_seconds"]),
                       metrics=dict(facts["metrics"]), jobs=int(facts["jobs"]))
        with self._lock:
            self._checkpoints[candidate_id] = saved
