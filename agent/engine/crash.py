"""Deterministic crash points for the crash-safety tests.

``AGENT_TEST_CRASH_AT`` lists where the coordinator kills itself with SIGKILL, the way a
power cut or the OOM killer would stop it: comma-separated ``NODE[:N][:before|after]`` items.
NODE is a graph node (propose, validate, screen, evaluate, record, reflect, decide) or
``final`` (the final report, after its evaluations are recorded) or ``commit`` (inside the
history: after a write transaction's COMMIT, before the file is closed, so the write is only in
DuckDB's write-ahead log); N counts that node's
visits in this process (default 1; when proposals are made beside the pool, each finished
proposal adds a visit of propose, validate, screen, evaluate and decide, while record and
reflect are visited only for results); ``after`` (default) fires once the node's own writes are
done but before the graph takes its state update, ``before`` on entry. Unset, nothing
happens: the search never reads the variable again.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from dataclasses import dataclass, field

from evaluator.errors import UserInputError

ENV = "AGENT_TEST_CRASH_AT"
PLACES = ("propose", "validate", "screen", "evaluate", "record", "reflect", "decide", "final", "commit")


@dataclass
class CrashPoints:
    points: frozenset[tuple[str, int, str]]
    visits: Counter = field(default_factory=Counter)

    @classmethod
    def from_env(cls, environ=os.environ) -> "CrashPoints | None":
        text = environ.get(ENV, "").strip()
        if not text:
            return None
        points = set()
        for item in (t.strip() for t in text.split(",") if t.strip()):
            parts = item.split(":")
            place, count, when = parts[0], 1, "after"
            for extra in parts[1:]:
                if extra in ("before", "after"):
                    when = extra
                elif extra.isdigit() and int(extra) > 0:
                    count = int(extra)
                else:
                    raise UserInputError(f"{ENV}: bad item {item!r}", hint="use NODE[:N][:before|after], e.g. record:2")
            if place not in PLACES:
                raise UserInputError(f"{ENV}: unknown place {place!r} in {item!r}", hint="places: " + ", ".join(PLACES))
            points.add((place, count, when))
        return cls(frozenset(points))

    def arm(self) -> None:
        """Make the ``commit`` points fire inside the history (agent.store.database.after_commit)."""
        if any(place == "commit" for place, _, _ in self.points):
            from agent.store import database

            database.after_commit(self.committed)

    def committed(self) -> None:
        self.reached("commit", "before")
        self.reached("commit", "after")

    def reached(self, place: str, when: str) -> None:
        if when == "before":
            self.visits[place] += 1
        if (place, self.visits[place], when) in self.points:
            os.kill(os.getpid(), signal.SIGKILL)
