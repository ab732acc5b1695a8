"""Proposals made beside the evaluations: one thread owns every call to the proposer.

Proposing in turn with the evaluations would leave a freed pool slot idle while the proposer
works (an LLM call can take a minute). Instead the graph asks for a candidate (``request``) and
goes on; a thread of this object's own proposes while the pool trains, and the evaluate node
wakes for the finished batch as it wakes for a finished job (``ready``, ``wait``). The same
thread takes the proposer's observations (``observe``: queued, applied in order between
proposals) and the reflections (``call``: the reflector shares the proposer's model), so a
proposer needs no locks and a local model never runs two generations at once.

On a pool that computes its results inside ``submit`` or ``events`` (tables, curve replays:
``pool.background`` is False) every call runs inline, at once, in the graph's order: a seeded
search proposes exactly what a sequential loop would.

One request is outstanding at a time, and its batch waits here until the graph takes it.
``pending`` is the number of candidates that request is for, from ``request`` until ``take``:
the budget counts them. ``close`` ends the thread's work: a batch finished after it is dropped
(the graph records nothing after its stop) and nothing more is proposed or reflected, while the
outcomes already queued still reach the proposer; a call under way is waited for ``timeout``
seconds at most and then abandoned: the thread is a daemon and never keeps the process alive
(a history write it has under way still ends first: agent.store.database holds the process's
exit for it). An error of the thread that no ``take`` raised is raised by ``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.proposers import Proposal, ProposalContext, Proposer
from evaluator.records import Candidate, Evaluation

CLOSE_WAIT = 2.0  # seconds a closing search waits for a proposal under way before abandoning it


@dataclass
class Batch:
    proposals: list[Proposal]
    wanted: int  # candidates they are for (fewer than the proposals when screening)


class Proposing:
    def __init__(self, proposer: Proposer, *, background: bool, lookahead: int = 0) -> None:
        if lookahead < 0:
            raise ValueError(f"{lookahead=} must be at least 0")
        self.proposer, self.background = proposer, background
        self.lookahead = lookahead if background else 0  # candidates held ready beyond the free slots
        self.pending = 0
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done: Batch | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()  # a batch is done, or the thread failed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed = False  # the thread's error was raised (by take or close)

    # -- the graph's side ------------------------------------------------------------------

    def request(self, asked: int, wanted: int, context: ProposalContext) -> None:
        """Ask for ``asked`` proposals for ``wanted`` candidates; inline, they are made now."""
        if self.pending:
            raise RuntimeError(f"a request for {self.pending} candidate(s) is outstanding; take() it first")
        if asked < 1 or wanted < 1:
            raise ValueError(f"{asked=} and {wanted=} must be at least 1")
        if self.background:
            self._start()
            self._tasks.put(("propose", asked, wanted, context))
        else:
            self._done = self._propose(asked, wanted, context)
            self._ready.set()
        self.pending = wanted

    @property
    def ready(self) -> bool:
        """A batch waits to be taken (or the thread failed: ``take`` raises its error)."""
        return self._ready.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._ready.wait(timeout)

    def take(self) -> Batch | None:
        """The finished batch, once; None while it is being made. Raises what the thread raised."""
        with self._lock:
            if self._error is not None:
                error, self._error = self._error, None
                self._failed = True
                raise error
            if self._failed:
                raise RuntimeError("the proposal thread failed; its error was raised by an earlier take()")
            batch, self._done = self._done, None
            if batch is not None:
                self.pending = 0
                self._ready.clear()
        return batch

    def observe(self, candidate: Candidate, evaluation: Evaluation) -> None:
        """Tell the proposer an outcome: at once, or after whatever the thread has queued."""
        if self._thread is None:  # inline, or nothing proposed yet (a resumed run replaying its history)
            self.proposer.observe(candidate, evaluation)
        else:
            self._tasks.put(("observe", candidate.model_copy(), evaluation))

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` where the proposer runs (the reflector: it uses the proposer's model)."""
        if not self.background:
            fn()
        else:
            self._start()
            self._tasks.put(("call", fn))

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop: nothing made from now on is handed out; wait up to ``timeout`` for a call under way.
        Then raise what the thread raised that no ``take`` has raised yet: a reflection or an
        observation that failed (a history write, say) is reported, not dropped."""
        self._closed = True
        if self._thread is not None:
            self._tasks.put(None)
            self._thread.join(timeout)
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    # -- the thread ------------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError("the proposal thread is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="proposer", daemon=True)
            self._thread.start()

    def _propose(self, asked: int, wanted: int, context: ProposalContext) -> Batch:
        return Batch(proposals=self.proposer.propose(asked, context)[:asked], wanted=wanted)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            if self._closed and task[0] != "observe":  # outcomes still reach the proposer (its statistics)
                continue
            try:
                if task[0] == "propose":
                    batch = self._propose(*task[1:])
                    with self._lock:
                        if not self._closed:
                            self._done = batch
                            self._ready.set()
                elif task[0] == "observe":
                    self.proposer.observe(*task[1:])
                else:
                    task[1]()
            except BaseException as exc:  # raised in the graph's thread by the next take()
                with self._lock:
                    self._error = exc
                    self._ready.set()
                return
