"""The worker protocol: only signed, well-formed, in-order messages for this job are accepted."""

from __future__ import annotations

import json
import os

import pytest

from evaluator.job.protocol import Channel, Checker, Done, Epoch, sign

KEY = b"k" * 32


def checker(**kw) -> Checker:
    return Checker(**({"key": KEY, "job": "job-1", "n_val": 3, "n_test": 0, "num_classes": 4, "epochs": 2} | kw))


def epoch(ch: Channel, n: int, preds=(0, 1, 2)) -> None:
    ch.send("epoch", epoch=n, train_loss=0.5, val_predictions=list(preds), seconds=0.1, images_per_second=10.0)


def run(send, **kw):
    r, w = os.pipe()
    ch = Channel(w, KEY, "job-1")
    send(ch, w)
    os.close(w)
    c = checker(**kw)
    with os.fdopen(r, "rb") as fh:
        for line in fh:
            c.feed(line)
    return c


def honest(ch, w):
    ch.send("ready", params=10, device="cpu", threads=1)
    epoch(ch, 1)
    epoch(ch, 2)
    ch.send("done")


def test_an_honest_job_is_accepted_in_full():
    c = run(honest)
    assert c.rejected == [] and c.finished
    assert [type(m).__name__ for m in c.accepted] == ["Ready", "Epoch", "Epoch", "Done"]
    assert isinstance(c.accepted[-1], Done) and isinstance(c.accepted[1], Epoch)


def forged(body: dict, key: bytes = KEY) -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return sign(key, raw).encode() + b" " + raw + b"\n"


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"type": "epoch", "val_accuracy": 1.0}\n', "bad signature"),
        (forged({"job": "job-1", "seq": 0, "type": "ready", "params": 1, "device": "cpu", "threads": 1}, key=b"guess"), "bad signature"),
        (forged({"job": "job-2", "seq": 0, "type": "ready", "params": 1, "device": "cpu", "threads": 1}), "not 'job-1'"),
        (forged({"job": "job-1", "seq": 5, "type": "ready", "params": 1, "device": "cpu", "threads": 1}), "sequence number 5"),
        (forged({"job": "job-1", "seq": 0, "type": "ready", "params": 1, "device": "cpu", "threads": 1, "val_accuracy": 1.0}), "malformed"),
        (forged({"job": "job-1", "seq": 0, "type": "result", "val_accuracy": 1.0}), "malformed"),
        (forged({"job": "job-1", "seq": 0, "type": "epoch", "epoch": 1, "train_loss": 0.1, "val_predictions": [0, 1, 2],
                 "seconds": 1.0, "images_per_second": 1.0}), "before ready"),
    ],
)
def test_forged_or_foreign_lines_are_rejected(line, reason):
    c = checker()
    assert c.feed(line) is None
    assert reason in c.rejected[0]
    assert c.accepted == []


@pytest.mark.parametrize(
    "send, reason",
    [
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 2)), "epoch 2 out of order"),
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 1, preds=(0, 1))), "2 entries for 3"),
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 1, preds=(0, 1, 9))), "outside [0, 4)"),
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 1), ch.send("done")), "before all 2 epochs"),
        (lambda ch, w: (honest(ch, w), ch.send("ready", params=1, device="cpu", threads=1)), "after the job finished"),
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 1), epoch(ch, 2), epoch(ch, 3)),
         "beyond the 2"),
        (lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1), epoch(ch, 1), epoch(ch, 2),
                        ch.send("test", predictions=[0])), "not asked"),
    ],
)
def test_protocol_order_and_shapes_are_enforced(send, reason):
    c = run(send)
    assert any(reason in r for r in c.rejected), c.rejected


def test_a_rejected_message_does_not_consume_a_sequence_number():
    def forged_first(ch, w):
        os.write(w, forged({"job": "job-1", "seq": 0, "type": "result", "val_accuracy": 1.0}))
        honest(ch, w)

    c = run(forged_first)
    assert len(c.rejected) == 1 and c.finished and len(c.accepted) == 4


def test_final_jobs_must_send_test_predictions():
    c = run(honest, n_test=2)
    assert not c.finished and any("without the test predictions" in r for r in c.rejected)

    def with_test(ch, w):
        ch.send("ready", params=1, device="cpu", threads=1)
        epoch(ch, 1)
        epoch(ch, 2)
        ch.send("test", predictions=[3, 0])
        ch.send("done")

    c = run(with_test, n_test=2)
    assert c.finished and c.rejected == []


def test_failure_ends_a_job_at_any_point():
    c = run(lambda ch, w: (ch.send("ready", params=1, device="cpu", threads=1),
                           ch.send("failure", kind="nan_loss", message="NaN at epoch 1")))
    assert c.finished and c.accepted[-1].kind == "nan_loss"


def test_channel_cannot_be_redirected_by_monkeypatching_json():
    r, w = os.pipe()
    ch = Channel(w, KEY, "job-1")
    original = json.dumps
    json.dumps = lambda *a, **k: '{"forged": true}'
    try:
        ch.send("ready", params=1, device="cpu", threads=1)
    finally:
        json.dumps = original
    os.close(w)
    c = checker()
    with os.fdopen(r, "rb") as fh:
        for line in fh:
            c.feed(line)
    assert c.rejected == [] and c.accepted[0].params == 1


@pytest.mark.parametrize("exc, memory", [
    (MemoryError(), True),
    (ImportError("libtorch_python.so: failed to map segment from shared object"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (OSError(12, "Cannot allocate memory"), True),
    (RuntimeError("boom"), False),
])
def test_worker_names_memory_failures(exc, memory):
    from evaluator.job.worker import _is_memory_error

    assert _is_memory_error(exc) is memory


def test_a_continued_job_starts_after_its_checkpoint_and_proxies_come_only_when_asked():
    def resumed(ch, w):
        ch.send("ready", params=10, device="cpu", threads=1)
        epoch(ch, 3)
        epoch(ch, 4)
        ch.send("done")

    c = run(resumed, start_epoch=2, epochs=4)
    assert c.rejected == [] and [getattr(m, "epoch", None) for m in c.accepted] == [None, 3, 4, None]
    c = run(resumed, epochs=4)  # a fresh job must start at epoch 1
    assert c.rejected[0].startswith("epoch 3 out of order (expected 1")

    def with_proxies(ch, w):
        ch.send("ready", params=10, device="cpu", threads=1)
        ch.send("proxies", scores={"synflow": 12.5}, errors={"naswot": "singular kernel"}, seconds=0.1)
        epoch(ch, 1)
        epoch(ch, 2)
        ch.send("done")

    c = run(with_proxies, proxies=frozenset({"synflow", "naswot"}))
    assert c.rejected == [] and c.accepted[1].scores == {"synflow": 12.5}
    assert run(with_proxies).rejected[0] == "proxies from a job that was not asked for them"
    assert run(with_proxies, proxies=frozenset({"synflow"})).rejected[0] == "proxies not asked for: ['naswot']"

    def late_proxies(ch, w):
        ch.send("ready", params=10, device="cpu", threads=1)
        epoch(ch, 1)
        ch.send("proxies", scores={"synflow": 1.0}, errors={}, seconds=0.1)

    assert run(late_proxies, proxies=frozenset({"synflow"})).rejected[0] == "proxies after epoch, not right after ready"


# An intermediate process that starts a worker the way a pool does (its channel's reading end
# kept here, its key pipe given by the test) without any parent-death signal, then sleeps.
_POOL_STANDIN = r"""
import os, subprocess, sys, time
key_r = int(sys.argv[1])
channel_r, channel_w = os.pipe()
env = dict(os.environ, ARCHAGENT_CHANNEL_FD=str(channel_w), ARCHAGENT_KEY_FD=str(key_r))
p = subprocess.Popen([sys.executable, "-I", "-m", "evaluator.job.worker", sys.argv[2]], env=env,
                     pass_fds=(channel_w, key_r))
os.close(channel_w)
print(p.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_worker_ends_when_nobody_reads_its_channel_any_more(tmp_path):
    """Whatever killed the pool that started it, and whether or not a parent-death signal reached
    it, a worker does not outlive its channel's reader: here it waits for its key (whose pipe the
    test keeps open), and its pool is SIGKILLed."""
    import signal
    import subprocess
    import sys
    import time

    key_r, key_w = os.pipe()
    try:
        standin = subprocess.Popen([sys.executable, "-c", _POOL_STANDIN, str(key_r), str(tmp_path)],
                                   pass_fds=(key_r,), stdout=subprocess.PIPE, text=True)
        worker = int(standin.stdout.readline())
        time.sleep(1.0)
        assert _alive(worker), "the worker should wait for its key"
        standin.send_signal(signal.SIGKILL)
        standin.wait()
        end = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < end:
            time.sleep(0.1)
        alive = _alive(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, "the worker outlived its pool"
    finally:
        os.close(key_r)
        os.close(key_w)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except OSError:
        return False
