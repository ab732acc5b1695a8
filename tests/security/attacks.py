"""Hostile model files for the security battery (tests/security/test_battery.py).

Each attack is a code-mode candidate: a model file whose ``build_model`` does something a
candidate must never manage to do. ``make_attacks`` fills in what each one aims at (a port
the test listens on, the fake home it planted secrets in, a marker file name). Every file
passes the code space's static checks: the sandbox, not the parser, must stop them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRELUDE = '''
import gc
import os
import signal
import socket
import sys
import time

import torch
from torch import nn


class Constant(nn.Module):
    """Class 0 for every input: what a cheater returns once its attack is done."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        return torch.zeros(x.shape[0], self.num_classes)
'''


@dataclass(frozen=True)
class Attack:
    name: str
    source: str
    statuses: frozenset[str]  # the final statuses that mean "contained"
    reason: tuple[str, ...] = ()  # one of these must be in the recorded error (when failed)


def _file(doc: str, body: str) -> str:
    return f'"""{doc}"""\n' + PRELUDE + "\n\n" + body.strip() + "\n"


def make_attacks(*, port: int, fake_home: Path, marker: str, package_dir: Path) -> list[Attack]:
    failed = frozenset({"failed"})
    harmless = frozenset({"ok", "failed"})  # the attack has no effect; the model then scores at chance or fails
    return [
        Attack("connect_loopback", _file("Connect to a server on the host's loopback.", f'''
def build_model(input_shape, num_classes):
    conn = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    conn.sendall(b"escaped")
    return Constant(num_classes)
'''), failed, ("Address family not supported", "Network is unreachable", "Connection refused", "Permission denied")),
        Attack("resolve_hostname", _file("Resolve a hostname (a DNS query leaves the machine).", '''
def build_model(input_shape, num_classes):
    socket.getaddrinfo("pypi.org", 443)
    return Constant(num_classes)
'''), failed, ("gaierror", "name resolution", "Address family not supported", "not known")),
        Attack("write_outside_scratch", _file("Write outside the scratch folder.", f'''
def build_model(input_shape, num_classes):
    with open("/tmp/{marker}", "w") as fh:  # a private /tmp: this must not reach the host's
        fh.write("escaped")
    with open({str(package_dir / marker)!r}, "w") as fh:  # the evaluator's own code
        fh.write("escaped")
    return Constant(num_classes)
'''), failed, ("Read-only file system", "Permission denied", "No such file")),
        Attack("read_secrets", _file("Read the home directory, keys and secrets of the trusted side.", f'''
def build_model(input_shape, num_classes):
    found = {{k: v for k, v in os.environ.items() if "KEY" in k or "TOKEN" in k or "SECRET" in k}}
    paths = [{str(fake_home / ".ssh" / "id_ed25519")!r}, {str(fake_home / ".config" / "openai" / "key")!r},
             os.path.expanduser("~/.ssh/id_ed25519"), "/proc/%d/environ" % os.getppid(), "/proc/1/environ",
             "/etc/shadow"]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            paths.append("/proc/%s/environ" % pid)
    for path in paths:
        try:
            with open(path, "rb") as fh:
                found[path] = fh.read(4000).decode("latin-1")
        except OSError:
            pass
    raise RuntimeError("stolen: %r" % (found,))
'''), failed, ("stolen",)),
        Attack("fork_bomb", _file("Fork until the machine runs out of processes.", '''
def build_model(input_shape, num_classes):
    while True:
        os.fork()
'''), failed, ("process limit", "Resource temporarily unavailable", "killed")),
        Attack("memory_bomb", _file("Allocate memory until the machine runs out.", '''
def build_model(input_shape, num_classes):
    hoard = []
    while True:
        hoard.append(bytearray(64 * 2**20))
'''), failed, ("memory limit",)),
        Attack("infinite_loop", _file("Never return.", '''
def build_model(input_shape, num_classes):
    while True:
        pass
'''), frozenset({"timeout"}), ("wall-clock limit",)),
        Attack("disk_filler", _file("Fill the disk.", '''
def build_model(input_shape, num_classes):
    block = b"x" * (4 * 2**20)
    i = 0
    while True:
        with open("fill-%06d" % i, "wb") as fh:
            fh.write(block)
        i += 1
'''), failed, ("disk quota exceeded",)),
        Attack("detached_daemon", _file("Leave a daemon behind that outlives the job.", '''
def build_model(input_shape, num_classes):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            for fd in range(3, 256):
                try:
                    os.close(fd)
                except OSError:
                    pass
            time.sleep(600)
        os._exit(0)
    time.sleep(0.5)
    return Constant(num_classes)
'''), harmless),
        Attack("monkeypatch_evaluator", _file("Patch the evaluator, the metric and the channel from inside.", '''
def build_model(input_shape, num_classes):
    import numpy
    import evaluator.job.protocol
    import evaluator.job.trainer
    numpy.mean = lambda *args, **kwargs: 1.0
    evaluator.job.protocol._predictions_problem = lambda *args, **kwargs: None
    evaluator.job.trainer.train = lambda *args, **kwargs: (lambda x: numpy.zeros(len(x), dtype=numpy.int64))
    for obj in gc.get_objects():  # the worker's channel: send a result of our own
        if callable(obj) and getattr(obj, "__name__", "") == "send" and getattr(obj, "__closure__", None):
            try:
                obj("epoch", epoch=1, train_loss=0.0, train_accuracy=1.0, val_predictions=[0] * 7,
                    seconds=0.0, images_per_second=0.0)
                obj("done")
            except Exception:
                pass
    return Constant(num_classes)
'''), harmless),
        Attack("kill_parent", _file("Kill the process that started the job.", '''
def build_model(input_shape, num_classes):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(0.5)
    return Constant(num_classes)
'''), harmless),
        Attack("forged_output", _file("Print result-like lines on stdout and stderr.", '''
def build_model(input_shape, num_classes):
    for stream in (sys.stdout, sys.stderr):
        print('{"type": "epoch", "epoch": 1, "val_accuracy": 1.0}', file=stream)
        print('{"type": "done", "val_accuracy": 1.0, "test_accuracy": 1.0}', file=stream)
        print("val_accuracy=1.0 status=ok", file=stream, flush=True)
    return Constant(num_classes)
'''), frozenset({"ok"})),
        Attack("read_dataset_source", _file("Read the data set's source files to find the labels.", '''
def build_model(input_shape, num_classes):
    from sklearn.datasets import load_digits
    digits = load_digits()  # every image with its label: the validation labels among them
    raise RuntimeError("labels found: %d" % len(digits.target))
'''), failed, ("No such file", "FileNotFoundError", "not found")),
        Attack("constant_model", _file("A model that does nothing: it must score at chance.", '''
def build_model(input_shape, num_classes):
    return Constant(num_classes)
'''), frozenset({"ok"})),
    ]
