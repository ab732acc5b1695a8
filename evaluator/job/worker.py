"""The worker: ``python -I -m evaluator.job.worker JOB_DIR``, a fresh process per candidate.

It imports the libraries every job needs (``PRELOAD``: numpy, torch, the model builders, the
trainer, the proxies; our code, no candidate's) and trains a toy network for one step (torch
loads much of itself at the first optimizer step), then reads its message key and opens its
channel, then reads ``job.json`` and the arrays the trusted side put in JOB_DIR (training images with labels; validation and test images
without), builds the candidate, trains it and sends predictions (see evaluator.job.protocol).
It never holds a validation or test label and never computes a metric.

In code mode the candidate is ``model.py`` in JOB_DIR: its ``build_model(input_shape,
num_classes)`` is imported and called here, in the sandbox, and nowhere else. A declared space
(``--space-file``) is trained the same way through its builder, ``builder.py`` in JOB_DIR:
``build_model(choices, input_shape, num_classes)``. Whatever that
code does to this process (monkeypatching the trainer, forging messages, printing result-like
lines) cannot raise its score: the labels it would need are not in the sandbox.

Before the first step of a fresh start it scores the untrained network with the zero-cost
proxies the job asks for (``proxies``), on a seeded batch of training images. A job may stop
before the end of the schedule (``stop_epoch``) and leave a checkpoint in JOB_DIR
(``save_checkpoint``), and a later job may continue from it (``start_epoch`` > 0, the
checkpoint copied in by the trusted side).

A final job (``save_weights``) also leaves the trained network's ``state_dict`` in JOB_DIR
(``weights_out.pt``, tensors on the CPU); the trusted side copies it out and treats it as
untrusted data.

A pre-started ("warm") worker is the same program started before its job exists: it imports
``PRELOAD``, warms up, and then blocks reading its key until the pool has written the job into JOB_DIR
and released it (``sandbox.process.ChildProcess(held=True)``). Nothing of the job, and no
candidate code, is read before the key.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import sys
import threading
import time
import traceback
from pathlib import Path

from evaluator.job.protocol import Channel

TEST_HOOKS_ENV = "ARCHAGENT_TEST_HOOKS"  # set by the pool only when a test asks for fault injection
CHECKPOINT_IN = "checkpoint_in.pt"  # the checkpoint a continuing job starts from (put there by the pool)
CHECKPOINT_OUT = "checkpoint_out.pt"  # the checkpoint a job that stops early leaves behind
WEIGHTS_OUT = "weights_out.pt"  # a final job's trained state_dict, copied out by the pool
ORPHANED_EXIT = 70  # the exit status of a worker whose pool went away (nobody would read it)
PROXY_BATCH = 64  # training images the zero-cost proxies see
# What every job imports, loaded before the key is read (a held worker is then ready to train at
# once): our own modules and their libraries only. The builders of every space are loaded, since
# the space is in job.json, which is read after the key; the code builder module is ours, the
# candidate's file is imported only inside run().
PRELOAD = ("numpy", "torch", "evaluator.models", "evaluator.models.layers_net", "evaluator.models.nb201_net",
           "evaluator.models.code", "evaluator.job.trainer", "evaluator.measure.proxies")


def _preload() -> BaseException | None:
    """Import ``PRELOAD`` and warm the trainer up; the exception that stopped it (reported once
    the channel is open), or None."""
    try:
        for name in PRELOAD:
            importlib.import_module(name)
        _warm_up()
    except BaseException as exc:  # noqa: BLE001 - e.g. torch does not fit the memory limit: run() reports it
        return exc
    return None


def _warm_up() -> None:
    """Train a toy network for one step with each optimizer the trainer knows, on the CPU: torch
    loads much of itself lazily at the first optimizer step (torch._dynamo, sympy: about 1.4 s on
    2 cores), which would otherwise fall between the ready message and a job's first step. Every
    job reseeds torch before it builds its network, so this changes no result."""
    import numpy as np
    import torch
    from torch import nn

    from evaluator.job.trainer import TrainConfig, train

    x, y = np.zeros((8, 1, 4, 4), dtype=np.uint8), np.zeros(8, dtype=np.int64)
    for optimizer in ("sgd", "adam", "adamw"):
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(4, 2))
        train(net, x, y, x[:2], 255.0, TrainConfig.from_spec({"optimizer": optimizer, "batch_size": 4}, epochs=1,
                                                             threads=torch.get_num_threads()), lambda report: None)


def _read_key(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _is_memory_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text \
        or "cannot allocate memory" in text or "bad_alloc" in text \
        or "failed to map segment" in text  # a shared library (torch's) that no longer fits the address space


def run(job_dir: Path, channel: Channel) -> None:
    import numpy as np
    import torch

    from evaluator.models import build_model
    from evaluator.job.trainer import TrainConfig, train

    job = json.loads((job_dir / "job.json").read_text())
    if job.get("test_inject") and os.environ.get(TEST_HOOKS_ENV) == "1":
        exec(compile(job["test_inject"], "<test_inject>", "exec"), {"__name__": "__test_inject__"})  # noqa: S102

    load = lambda name: np.load(job_dir / f"{name}.npy", mmap_mode="r", allow_pickle=False)  # noqa: E731
    x_train, y_train, x_val = load("x_train"), load("y_train"), load("x_val")
    cfg = TrainConfig.from_spec(job["training"], epochs=job["epochs"], seed=job["seed"],
                                device=job["device"], threads=job["threads"])
    torch.manual_seed(cfg.seed)
    # In code mode this imports the candidate's file: candidate code runs from here on, after the
    # channel is open, the key is read and the training data are loaded.
    options = {"path": job_dir / job["network_file"]} if job["network_file"] else {}
    model = build_model(job["space"], job["spec"], tuple(job["input_shape"]), job["num_classes"], **options)
    channel.send("ready", params=sum(p.numel() for p in model.parameters()), device=cfg.device, threads=cfg.threads)

    def score_proxies(model, xs, ys) -> None:
        from evaluator.measure.proxies import compute_proxies, ProxyError

        started = time.perf_counter()
        pick = torch.randperm(len(xs), generator=torch.Generator().manual_seed(cfg.seed))[:PROXY_BATCH].to(xs.device)
        scores, errors = {}, {}
        for name in job["proxies"]:  # one at a time: an undefined proxy says why, the others still count
            try:
                scores |= compute_proxies(model, xs[pick], ys[pick], [name], seed=cfg.seed)
            except ProxyError as exc:
                errors[name] = str(exc)[:500]
            except Exception as exc:  # noqa: BLE001 - candidate code: a proxy it breaks is recorded, never fails it
                errors[name] = f"{type(exc).__name__}: {exc}"[:500]
        channel.send("proxies", scores=scores, errors=errors, seconds=time.perf_counter() - started)

    start = job.get("start_epoch", 0)
    predict = train(model, x_train, y_train, x_val, job["x_scale"], cfg, lambda r: channel.send(
        "epoch", epoch=r.epoch, train_loss=r.train_loss, train_accuracy=r.train_accuracy, val_predictions=r.val_predictions.tolist(),
        seconds=r.seconds, images_per_second=r.images_per_second),
        stop_epoch=job.get("stop_epoch"), resume_from=job_dir / CHECKPOINT_IN if start else None,
        save_to=job_dir / CHECKPOINT_OUT if job.get("save_checkpoint") else None,
        on_start=score_proxies if job.get("proxies") else None)
    if job["want_test"]:
        channel.send("test", predictions=predict(load("x_test")).tolist())
    if job.get("save_weights"):  # before done: once the pool reads done, the file is whole
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        torch.save(state, job_dir / WEIGHTS_OUT)
    channel.send("done")


def _exit_when_orphaned(fd: int) -> None:
    """End this process as soon as nobody reads its channel: the pool (or Ray actor) that started
    it is gone, whatever killed it. The parent-death signals of the sandbox should have ended it
    already; this does not depend on them (a sandbox's init process was once found alive 36
    minutes after its Ray actor was killed). A pipe's writing end reports POLLERR once its last
    reader closes, so a thread waits for that, started before anything else runs."""
    exit_, poll, fatal = os._exit, select.poll(), select.POLLERR | select.POLLHUP | select.POLLNVAL
    poll.register(fd, 0)  # no events asked for: the errors are reported anyway

    def watch() -> None:
        while True:
            try:
                events = poll.poll()
            except InterruptedError:
                continue
            if any(ev & fatal for _, ev in events):
                exit_(ORPHANED_EXIT)

    threading.Thread(target=watch, name="exit-when-orphaned", daemon=True).start()


def main(argv: list[str]) -> int:
    from sandbox.process import CHANNEL_FD_ENV, KEY_FD_ENV

    if len(argv) != 2 or CHANNEL_FD_ENV not in os.environ:
        print("usage: python -m evaluator.job.worker JOB_DIR (started by the evaluation pool)", file=sys.stderr)
        return 2
    _exit_when_orphaned(int(os.environ[CHANNEL_FD_ENV]))
    preload_error = _preload()
    key = _read_key(int(os.environ.pop(KEY_FD_ENV)))  # a held worker waits here for its job
    job_dir = Path(argv[1])
    job_id = json.loads((job_dir / "job.json").read_text())["job"]
    channel = Channel(int(os.environ.pop(CHANNEL_FD_ENV)), key, job_id)
    del key

    try:
        if preload_error is not None:
            raise preload_error
        run(job_dir, channel)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the process ends
        trainer = sys.modules.get("evaluator.job.trainer")  # imported inside run(): torch may not load
        if trainer is not None and isinstance(exc, trainer.NonFiniteLoss):
            channel.send("failure", kind="nan_loss", message=str(exc))
            return 1
        kind = "memory" if _is_memory_error(exc) else "exception"
        tail = "".join(traceback.format_exception(exc)[-6:])[-6000:]
        try:
            channel.send("failure", kind=kind, message=f"{type(exc).__name__}: {exc}\n{tail}")
        except BaseException:  # noqa: BLE001 - even sending may fail without memory
            pass
        return 1
    return 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - a stream the candidate replaced or closed: nothing more to say
            pass


if __name__ == "__main__":
    # Every message is sent and every file closed when main() returns: the process ends at once.
    # A normal interpreter exit after training spends 1-2.5 s (measured on 2 cores) tearing torch
    # down, which every job would wait for. Bound here, before candidate code could replace it.
    _exit = os._exit
    code = main(sys.argv)
    _flush()
    _exit(code)
