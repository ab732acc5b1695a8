"""Spare workers: held sandboxed processes started ahead of their jobs, so a job's worker has
imported torch and warmed up before the job comes (``TrainingPool(warm=N)``; the training pool's
docstring says what a spare is and may do).

``Spares`` keeps up to ``count`` of them with a keeper thread: it starts one when the pool says
one may start (a core is left beside the running jobs' threads, and has stayed free for
``SPARE_IDLE_GRACE_SECONDS``), replaces the ones that died waiting (pausing longer each time
spares keep dying unused), and stops making spares when one cannot be started at all (every job
then starts cold, and a cold start raises the same error where the caller sees it).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.process import ChildProcess

SPARE_POLL_SECONDS = 1.0  # how often the keeper looks for spares that died while waiting
SPARE_BACKOFF_SECONDS = 30.0  # the longest pause before replacing spares that keep dying unused
SPARE_IDLE_GRACE_SECONDS = 0.5  # a core left free this long (no job came for it) may start a spare


@dataclass
class Spare:
    """A held worker waiting for a job, in its own fresh scratch folder holding the shared arrays."""

    process: ChildProcess
    scratch: Path
    holder: dict[str, Any]  # the job's run once it has one: where its messages go


def end_spare(spare: Spare) -> None:
    """Kill a spare that never got a job (or died waiting) and remove its folder."""
    spare.process.kill()
    spare.process.wait()
    shutil.rmtree(spare.scratch, ignore_errors=True)


class Spares:
    """Up to ``count`` spares, made by ``start`` when ``may_start()`` says a core is free."""

    def __init__(self, count: int, *, start: Callable[[], Spare], may_start: Callable[[], bool]) -> None:
        self.count, self._start, self._may_start = count, start, may_start
        self.ready: list[Spare] = []  # ready for a job, oldest first
        self._dead: list[Spare] = []  # found dead while waiting: the keeper ends them
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._wake = threading.Event()  # the keeper has work: a spare was taken or found dead, a core freed
        self._keeper: threading.Thread | None = None
        if count:
            self._keeper = threading.Thread(target=self._keep, name="spare-keeper", daemon=True)
            self._keeper.start()

    def take(self) -> Spare | None:
        """The oldest spare still alive, or None; the dead ones found go to the keeper."""
        with self._lock:
            while self.ready:
                spare = self.ready.pop(0)
                if spare.process.poll() is None:
                    return spare
                self._dead.append(spare)  # died while waiting (killed, out of memory): never given a job
                self._wake.set()
        return None

    def wake(self) -> None:
        """Something changed the keeper should look at: a spare was taken, a job ended."""
        self._wake.set()

    def close(self) -> None:
        """Stop the keeper, kill every spare and remove their folders."""
        self._closing.set()
        self._wake.set()
        if self._keeper is not None:
            self._keeper.join()
        with self._lock:
            spares, self.ready, self._dead = self.ready + self._dead, [], []
        for spare in spares:
            end_spare(spare)

    def _keep(self) -> None:
        """The keeper thread (see the module docstring)."""
        deaths = 0
        while not self._closing.is_set():
            self._wake.clear()
            with self._lock:
                alive = []
                for spare in self.ready:
                    (alive if spare.process.poll() is None else self._dead).append(spare)
                self.ready, dead, self._dead = alive, self._dead, []
                missing = self.count - len(self.ready)
            for spare in dead:
                end_spare(spare)
            deaths += len(dead)
            if dead and self._closing.wait(min(SPARE_BACKOFF_SECONDS, 0.5 * 2 ** deaths)):
                break
            if missing <= 0 or not self._may_start():
                self._wake.wait(SPARE_POLL_SECONDS)
                continue
            # A job that ended is often followed at once by the next (a queue of proposals): that one
            # starts cold on the free core rather than beside a spare's start. Spares fill idle time.
            if self._closing.wait(SPARE_IDLE_GRACE_SECONDS) or not self._may_start():
                continue
            try:
                spare = self._start()
            except Exception:  # noqa: BLE001 - e.g. the sandbox is unavailable: submit() starts cold and raises it
                return
            with self._lock:
                if not self._closing.is_set():
                    self.ready.append(spare)
                    spare = None
            if spare is not None:
                end_spare(spare)
            if not dead:
                deaths = 0
