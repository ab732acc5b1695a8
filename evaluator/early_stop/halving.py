"""Asynchronous successive halving (ASHA; Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning") across the candidates of one search.

Every candidate starts at the lowest rung: it trains to the first rung's epochs, then waits
with a checkpoint. Whenever a pool slot is free the scheduler first looks for a promotion,
from the highest rung down: a waiting candidate is promoted to the next rung when it ranks in
the top ``1 / eta`` of all candidates that reached its rung so far (``floor(n / eta)`` of
them). It then continues from its checkpoint to the next rung's epochs; the last rung is the
end of the schedule, where a candidate finishes ``ok``. With nothing to promote, a new
candidate starts. Decisions never wait for a rung to fill (that is what makes it
asynchronous): a candidate that arrives early may be promoted on little evidence, one that
arrives late competes with everything before it.

A search has a budget of candidates, so it ends: once no new candidate will come (the
``closing`` phase), the rungs promote the top ``ceil(n / eta)`` instead, so at least one
candidate always trains to the end, and whatever still waits when nothing more can be
promoted is final: ``pruned`` at its rung.

The scheduler keeps no clock and starts nothing; the search graph asks it what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evaluator.errors import UserInputError


MAX_HALVINGS = 3  # default rungs reach down to max_epochs / eta^3 at most


def default_rungs(max_epochs: int, eta: int) -> tuple[int, ...]:
    """Hyperband's geometric rungs below the end of the schedule: ``max_epochs / eta^k`` for
    k = 1 .. min(3, floor(log_eta(max_epochs))), rounded, in increasing order (15 epochs, eta 3:
    2, 5; 200 epochs: 7, 22, 67). The end of the schedule is the implicit last rung, not listed.

    Why at most three halvings (bench/early_stop_curves.py, 200 NAS-Bench-201 curves of 200
    epochs, 20 seeds of 50 candidates, one worker): rungs 2, 7, 22, 67 saved 16.3x at 0.18 points
    of mean regret (1.7 worst); 7, 22, 67 saved 7.0x at 0.035 (0.27 worst), against 3.2x at 0.05
    for the learning-curve forecast rule. A rung at 1% of the schedule ranks candidates on
    accuracies that their later epochs still reorder."""
    if max_epochs < 2 or eta < 2:
        return ()
    s_max = min(MAX_HALVINGS, int(math.floor(math.log(max_epochs) / math.log(eta) + 1e-9)))
    return tuple(sorted({max(1, round(max_epochs / eta**k)) for k in range(1, s_max + 1)} - {max_epochs}))


def check_rungs(rungs: tuple[int, ...], max_epochs: int, eta: int) -> tuple[int, ...]:
    """Validated, sorted rungs below ``max_epochs``; errors name the fix."""
    if eta < 2:
        raise UserInputError(f"reduction factor {eta} must be at least 2", hint="pass --reduction-factor 3 (the usual)")
    if not rungs:
        raise UserInputError(f"no rung fits below the schedule's {max_epochs} epochs",
                             hint="train longer (--epochs) or give --rungs with values between 1 and epochs - 1")
    out = tuple(sorted(set(int(r) for r in rungs)))
    bad = [r for r in out if not 1 <= r < max_epochs]
    if bad:
        raise UserInputError(f"rungs {bad} are not between 1 and {max_epochs - 1} epochs (the schedule has {max_epochs})",
                             hint=f"give --rungs as increasing epochs below {max_epochs}, e.g. "
                                  f"{','.join(str(r) for r in default_rungs(max_epochs, eta)) or '1'}")
    return out


@dataclass
class _Rung:
    epochs: int
    results: dict[str, float] = field(default_factory=dict)  # candidate -> validation accuracy at this rung
    promoted: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class RungDecision:
    """What the scheduler did with a candidate at a rung (for the history's events)."""

    candidate_id: str
    rung: int  # index into the rungs
    epochs: int
    value: float
    rank: int  # 1 = best of the rung so far
    of: int  # candidates that reached the rung so far
    action: str  # "wait", "promote", "prune"
    next_epochs: int | None = None


class SuccessiveHalving:
    def __init__(self, max_epochs: int, rungs: tuple[int, ...] | None = None, eta: int = 3) -> None:
        rungs = default_rungs(max_epochs, eta) if rungs is None else rungs
        self.max_epochs, self.eta = max_epochs, eta
        self.rungs = [_Rung(e) for e in check_rungs(tuple(rungs), max_epochs, eta)]
        self.waiting: dict[str, int] = {}  # candidate -> the rung index it waits at

    @property
    def first_epochs(self) -> int:
        """Where every new candidate stops first."""
        return self.rungs[0].epochs

    def next_epochs(self, rung: int) -> int:
        """The epochs a candidate promoted from ``rung`` trains to."""
        return self.rungs[rung + 1].epochs if rung + 1 < len(self.rungs) else self.max_epochs

    def rung_of(self, epochs: float) -> int | None:
        """The rung index whose epochs these are, or None (the end of the schedule)."""
        return next((i for i, r in enumerate(self.rungs) if r.epochs == int(epochs)), None)

    def reached(self, candidate_id: str, epochs: float, value: float) -> RungDecision:
        """A candidate finished the job that took it to a rung; it now waits there."""
        i = self.rung_of(epochs)
        if i is None:
            raise ValueError(f"{epochs} epochs is not a rung ({[r.epochs for r in self.rungs]})")
        rung = self.rungs[i]
        rung.results[candidate_id] = float(value)
        self.waiting[candidate_id] = i
        rank, of = self._rank(rung, candidate_id)
        return RungDecision(candidate_id, i, rung.epochs, float(value), rank, of, "wait")

    def promotions(self, slots: int, *, closing: bool, commit: bool = True) -> list[RungDecision]:
        """Up to ``slots`` candidates to continue now, the highest rungs first; with
        ``commit=False`` only says who they would be."""
        out: list[RungDecision] = []
        for i in reversed(range(len(self.rungs))):
            rung = self.rungs[i]
            quota = (math.ceil if closing else math.floor)(len(rung.results) / self.eta)
            ranked = sorted(rung.results, key=lambda c: (-rung.results[c], c))[:quota]
            for cid in ranked:
                if len(out) >= slots:
                    return out
                if cid in rung.promoted or self.waiting.get(cid) != i:
                    continue
                if commit:
                    rung.promoted.add(cid)
                    del self.waiting[cid]
                rank, of = self._rank(rung, cid)
                out.append(RungDecision(cid, i, rung.epochs, rung.results[cid], rank, of, "promote", self.next_epochs(i)))
        return out

    def prune_waiting(self) -> list[RungDecision]:
        """Close the search: every waiting candidate is final at its rung."""
        out = []
        for cid, i in sorted(self.waiting.items(), key=lambda item: (-item[1], item[0])):
            rung = self.rungs[i]
            rank, of = self._rank(rung, cid)
            out.append(RungDecision(cid, i, rung.epochs, rung.results[cid], rank, of, "prune"))
        self.waiting.clear()
        return out

    def forget(self, candidate_id: str) -> None:
        """A candidate that ended otherwise (failed, stopped) waits nowhere."""
        self.waiting.pop(candidate_id, None)

    def quota_text(self, closing: bool) -> str:
        return f"top {'ceil' if closing else 'floor'}(n/{self.eta}) of each rung continue"

    def report(self) -> dict:
        """The summary's view: per rung, how many reached it and how many were promoted."""
        return {"eta": self.eta, "rungs": [{"epochs": r.epochs, "reached": len(r.results), "promoted": len(r.promoted)}
                                           for r in self.rungs], "max_epochs": self.max_epochs}

    @staticmethod
    def _rank(rung: _Rung, candidate_id: str) -> tuple[int, int]:
        value = rung.results[candidate_id]
        return 1 + sum(v > value for v in rung.results.values()), len(rung.results)
