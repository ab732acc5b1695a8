"""The worker's messages and the trusted side's checks.

The worker sends one JSON object a line on its private channel, each signed with an HMAC
over a key it received before any candidate code ran; the trusted side accepts a line only
when the signature is right, the job id is this job's, the sequence number is the next one,
the message is of a known type with exactly its fields, and it comes in protocol order:

    ready -> [proxies] -> epoch s+1 -> epoch s+2 ... -> epoch e -> [test] -> done   (or failure at any point)

where a fresh job starts at s = 0 and a job that continues a checkpoint at the checkpoint's
epoch, and e is the epoch the job was asked to stop after. Messages carry predictions, never
metrics: the trusted side computes every metric against labels the worker never had.
Anything else is rejected and counted, never used. The exceptions are what the worker can
know from the training side alone (it holds the training labels anyway): an epoch's
``train_loss`` and ``train_accuracy``, and the zero-cost proxies of the untrained network on
a training batch. They are recorded, shown and feed the learning-curve forecast; they never
choose a candidate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_LINE_BYTES = 16 * 1024 * 1024  # a line longer than this is rejected unread


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    job: str
    seq: int = Field(ge=0)


class Ready(_Msg):
    type: Literal["ready"]
    params: int = Field(ge=0)
    device: str = Field(max_length=200)
    threads: int = Field(ge=1)


class Epoch(_Msg):
    type: Literal["epoch"]
    epoch: int = Field(ge=1)
    train_loss: float
    train_accuracy: float | None = Field(default=None, ge=0, le=1)  # the epoch's running accuracy on its batches
    val_predictions: list[int]
    seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)


class Proxies(_Msg):
    type: Literal["proxies"]
    scores: dict[str, Annotated[float, Field(allow_inf_nan=False)]]  # proxy name -> score of the untrained network (evaluator.measure.proxies)
    errors: dict[str, str]  # proxy name -> why it is undefined for this network
    seconds: float = Field(ge=0)


class Test(_Msg):
    type: Literal["test"]
    predictions: list[int]


class Failure(_Msg):
    type: Literal["failure"]
    kind: Literal["exception", "nan_loss", "memory"]
    message: str = Field(max_length=8000)


class Done(_Msg):
    type: Literal["done"]


Message = Annotated[Union[Ready, Proxies, Epoch, Test, Failure, Done], Field(discriminator="type")]
_MESSAGE = TypeAdapter(Message)


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


# -- worker side ------------------------------------------------------------------------

class Channel:
    """The worker's sending end. ``send`` is a closure made at creation over the functions it
    needs, so candidate code that later monkeypatches json, os, hmac, this module or this
    class cannot change what an existing channel sends."""

    def __init__(self, fd: int, key: bytes, job: str) -> None:
        dumps, write, signer, seq = json.dumps, os.write, sign, [0]

        def send(type_: str, **fields: Any) -> None:
            body = dumps({"job": job, "seq": seq[0], "type": type_, **fields},
                         separators=(",", ":"), allow_nan=False).encode()
            view = memoryview(signer(key, body).encode() + b" " + body + b"\n")
            while view:
                view = view[write(fd, view):]
            seq[0] += 1

        self.send = send


# -- trusted side -----------------------------------------------------------------------

@dataclass
class Checker:
    """Accepts the messages of one job, in order; everything else lands in ``rejected``."""

    key: bytes
    job: str
    n_val: int
    n_test: int  # 0 when this job must not send test predictions
    num_classes: int
    epochs: int  # the epoch the job stops after
    start_epoch: int = 0  # the epoch of the checkpoint it continues (0: a fresh start)
    proxies: frozenset[str] = frozenset()  # the proxies it was asked for (none: no proxies message)
    accepted: list[Any] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # reasons, in arrival order

    def feed(self, line: bytes) -> Any | None:
        """The accepted message, or None (the reason is appended to ``rejected``)."""
        reason, msg = self._check(line)
        if reason is not None:
            self.rejected.append(reason)
            return None
        self.accepted.append(msg)
        return msg

    @property
    def finished(self) -> bool:
        return bool(self.accepted) and isinstance(self.accepted[-1], (Done, Failure))

    def _check(self, line: bytes) -> tuple[str | None, Any]:
        if len(line) > MAX_LINE_BYTES:
            return f"line of {len(line)} bytes is too long", None
        mac, _, body = line.rstrip(b"\n").partition(b" ")
        if not hmac.compare_digest(mac, sign(self.key, body).encode()):
            return "bad signature", None
        try:
            msg = _MESSAGE.validate_json(body)
        except ValidationError as exc:
            return f"malformed message: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}", None
        if msg.job != self.job:
            return f"message for job {msg.job!r}, not {self.job!r}", None
        if msg.seq != len(self.accepted):
            return f"sequence number {msg.seq}, expected {len(self.accepted)}", None
        if self.finished:
            return f"{msg.type} after the job finished", None
        return self._check_order(msg), msg

    def _check_order(self, msg: Any) -> str | None:
        previous = self.accepted[-1] if self.accepted else None
        if isinstance(msg, Failure):
            return None
        if isinstance(msg, Ready):
            return None if previous is None else "ready sent twice"
        if previous is None:
            return f"{msg.type} before ready"
        if isinstance(msg, Proxies):
            if not self.proxies:
                return "proxies from a job that was not asked for them"
            if not isinstance(previous, Ready):
                return f"proxies after {previous.type}, not right after ready"
            unknown = (set(msg.scores) | set(msg.errors)) - self.proxies
            if unknown:
                return f"proxies not asked for: {sorted(unknown)}"
            if any(len(text) > 500 for text in msg.errors.values()):
                return "a proxy error text longer than 500 characters"
            return None
        if isinstance(msg, Epoch):
            expected = previous.epoch + 1 if isinstance(previous, Epoch) else self.start_epoch + 1
            if not isinstance(previous, (Ready, Proxies, Epoch)) or msg.epoch != expected:
                return f"epoch {msg.epoch} out of order (expected {expected} after {previous.type})"
            if msg.epoch > self.epochs:
                return f"epoch {msg.epoch} beyond the {self.epochs} asked for"
            return _predictions_problem(msg.val_predictions, self.n_val, self.num_classes, "val_predictions")
        trained = isinstance(previous, Epoch) and previous.epoch == self.epochs
        if isinstance(msg, Test):
            if self.n_test == 0:
                return "test predictions from a job that was not asked for them"
            if not trained:
                return "test predictions before training finished"
            return _predictions_problem(msg.predictions, self.n_test, self.num_classes, "predictions")
        # Done
        if not trained and not isinstance(previous, Test):
            return f"done after {previous.type}, before all {self.epochs} epochs"
        if self.n_test and not isinstance(previous, Test):
            return "done without the test predictions"
        return None


def _predictions_problem(preds: list[int], n: int, num_classes: int, name: str) -> str | None:
    if len(preds) != n:
        return f"{name} has {len(preds)} entries for {n} inputs"
    if preds and (min(preds) < 0 or max(preds) >= num_classes):
        return f"{name} holds a class outside [0, {num_classes})"
    return None
