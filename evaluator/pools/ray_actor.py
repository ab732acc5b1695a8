"""The coordinator's Ray actor, one per slot of the Ray pool (``evaluator.pools.ray``), and the
node's copy of the data it trains on: ``CandidateRunner`` holds a one-slot
:class:`~evaluator.pools.training.TrainingPool` on its node, so every candidate still runs in a
fresh sandboxed process there, and the actor computes the metrics from labels the sandbox never
sees. Its methods are called by the coordinator only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from evaluator.data.base import Dataset
from evaluator.pools.base import Job, PoolEvent
from evaluator.records import Status
from sandbox.isolation import Isolation
from sandbox.limits import Limits

NODE_ROOT = Path(tempfile.gettempdir()) / "archagent-ray"  # per node: staged data, actors' job folders


def fingerprint(dataset: Dataset) -> str:
    """Names the staged arrays on a node: equal data sets share them."""
    h = hashlib.sha256(dataset.name.encode())
    for array in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.x_test):
        h.update(str((array.shape, str(array.dtype))).encode())
        h.update(memoryview(array.reshape(-1)).cast("B") if array.flags.c_contiguous else array.tobytes())
    return h.hexdigest()[:16]


def remove_left_roots(root: Path) -> None:
    """Remove what earlier coordinators of the same run left on this node (their folders are
    ``<run id>-<token>``; a run has one live coordinator at a time, and Ray ends an actor when its
    coordinator dies, so a sibling of ``root`` is from a coordinator that was killed)."""
    run = root.name.rsplit("-", 1)[0]
    try:
        siblings = list(root.parent.iterdir())
    except OSError:
        return
    for other in siblings:
        if other != root and other.name.rsplit("-", 1)[0] == run:
            shutil.rmtree(other, ignore_errors=True)


def stage_on_node(dataset: Dataset, root: Path, print_: str) -> Path:
    """The node's copy of the arrays, written by the first actor that needs it (a file lock
    orders the actors of one node; a ``complete`` mark makes a half-written copy redo)."""
    from evaluator.pools.staging import stage_arrays

    folder = root / "data" / print_
    folder.mkdir(parents=True, exist_ok=True)
    with open(root / "data" / f"{print_}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "complete").exists():
            stage_arrays(dataset, folder)
            (folder / "complete").write_text("ok\n")
    return folder


class CandidateRunner:
    """One slot of the Ray pool (made into a Ray actor by ``_actor_class``): a one-slot
    training pool on this node. Every method is called by the coordinator only."""

    def __init__(self, config: dict[str, Any], data: list[Any]) -> None:
        import ray

        from evaluator.pools.training import TrainingPool

        self.ray = ray
        ctx = ray.get_runtime_context()
        self.node_id, self.ip = ctx.get_node_id(), ray.util.get_node_ip_address()
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        self.received = time.monotonic()
        dataset: Dataset = ray.get(data[0])  # from the node's object store: fetched over the network once per node
        self.root = NODE_ROOT / config["run"]
        remove_left_roots(self.root)
        staged = stage_on_node(dataset, self.root, config["fingerprint"])
        device = "cuda" if self.gpu_ids else "cpu"
        isolation: Isolation | None = config["isolation"]
        if isolation is not None and device == "cuda":  # this node's GPU device files, not the coordinator's
            isolation = replace(isolation, devices=tuple(str(d) for d in sorted(Path("/dev").glob("nvidia*"))))
        limits: Limits = config["limits"]
        self.workdir = self.root / "actors" / secrets.token_hex(4)
        self.pool = TrainingPool(dataset, config["space"], workdir=self.workdir, epochs=config["epochs"], capacity=1,
                                 limits=limits, device=device, threads=config["threads"], proxies=config["proxies"],
                                 isolation=isolation, weights_dir=self.workdir / "weights", staged=staged,
                                 **config.get("pool_options", {}))

    def info(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "ip": self.ip, "pid": os.getpid(), "gpus": self.gpu_ids,
                "device": self.pool.device}

    def submit(self, job: Job, checkpoint: tuple[bytes, dict[str, Any]] | None = None) -> None:
        self.received = time.monotonic()
        if checkpoint is not None:
            self.pool.adopt_checkpoint(job.candidate_id, *checkpoint)
        self.pool.submit(job)

    def poll(self, timeout: float) -> list[tuple[PoolEvent, dict[str, Any]]]:
        """The job's events since the last poll (waiting up to ``timeout`` s for one), each with
        what travels beside a finished one: the checkpoint it left, the weights it kept."""
        out = []
        for event in self.pool.events(timeout=timeout):
            extra: dict[str, Any] = {}
            if event.kind == "finished" and event.evaluation is not None:
                extra["actor_seconds"] = time.monotonic() - self.received  # the job's time on this node
                taken = self.pool.take_checkpoint(event.candidate_id)
                if taken is not None:
                    extra["checkpoint"] = taken
                weights = event.evaluation.metrics.get("weights")
                if weights:
                    pt = Path(weights)
                    extra["weights"] = (pt.read_bytes(), pt.with_suffix(".json").read_text(encoding="utf-8"))
                    pt.unlink(missing_ok=True)
                    pt.with_suffix(".json").unlink(missing_ok=True)
            out.append((event, extra))
        return out

    def cancel(self, candidate_id: str, status: Status, reason: str | None) -> bool:
        return self.pool.cancel(candidate_id, status=status, reason=reason)

    def close(self, last_on_node: bool) -> None:
        self.pool.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if last_on_node:
            shutil.rmtree(self.root, ignore_errors=True)


_ACTOR = None


def actor_class():
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(max_restarts=0, max_concurrency=4)(CandidateRunner)
    return _ACTOR
