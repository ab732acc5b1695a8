"""Continue a run from its history: the history is the search's checkpoint.

Every step of the search writes what it decided before it acts on it (a candidate is recorded
before its job is submitted; an evaluation and its candidate's final status in one
transaction), so after a crash at any moment the history holds everything that happened and
nothing that did not. A resumed run replays it: finished candidates go through the same
accounting as when they finished (counts, budget, the best, the Pareto front; the proposer
and the early-stop rule observe them again, in the order they finished), and candidates that
were queued or in flight are evaluated again (their evaluation was never recorded), as many as
the budget has left: the others end ``invalid``, not evaluated (a resume with a lower budget, or
candidates queued by a chat session). Nothing is evaluated twice, and nothing recorded is lost. Successive halving's rung bookkeeping lives
in memory: a candidate waiting at a rung when the run stopped trains again from the start.
"""

from __future__ import annotations

from agent.engine.graph import initial_state, tally, tally_rechecks
from agent.engine.state import SearchContext, SearchState
from agent.store import History
from evaluator.records import Purpose, Status


def restore_state(ctx: SearchContext, history: History) -> SearchState:
    run_id = ctx.run.run_id
    candidates, evaluations = history.run_records(run_id)
    latest = {ev.candidate_id: ev for ev in evaluations if ev.purpose is Purpose.SEARCH}  # oldest first: the last wins
    state = initial_state()
    counts: dict[str, int] = {}
    seen, ready, finished, done_without = [], [], [], 0
    for c in candidates:
        if c.canonical_key:
            seen.append(c.canonical_key)
        if c.status in (Status.QUEUED, Status.RUNNING):
            c.status = Status.QUEUED
            ready.append(c)
        elif c.candidate_id in latest and c.status is not Status.INVALID:
            finished.append((c, latest[c.candidate_id]))
        else:  # invalid (rejected before evaluation), or a final status with no evaluation row
            counts[c.status.value] = counts.get(c.status.value, 0) + 1
            done_without += c.status.counts_against_budget
    duplicates = history.count_events(run_id, "duplicate_skipped")
    left = max(0, ctx.budget - done_without - sum(ev.status.counts_against_budget for _, ev in finished))
    if len(ready) > left:  # the budget counts queued candidates too: the ones beyond it are not evaluated
        over = [c.candidate_id for c in ready[left:]]
        history.set_status(over, Status.INVALID, error=f"not evaluated: the run's budget ({ctx.budget} evaluations) "
                                                       "had no room left for it when the run was resumed")
        counts[Status.INVALID.value] = counts.get(Status.INVALID.value, 0) + len(over)
        ready = ready[:left]
    state.update(seen=seen, ready=ready, seq=max((c.seq for c in candidates), default=-1) + 1, counts=counts,
                 evaluations=done_without, duplicates=duplicates, attempts=len(candidates) + duplicates)
    finished.sort(key=lambda pair: (pair[1].created, pair[0].seq))
    state.update(tally(ctx, state, finished))
    rechecked = [ev for ev in evaluations if ev.purpose is Purpose.RECHECK]
    state["rechecks"] = tally_rechecks({}, rechecked)
    state["device_seconds"] += sum(ev.device_seconds for ev in rechecked)
    if ctx.recheck is not None:  # the rounds already due were made; missing seeds come with the next round
        state["recheck_round"] = state["evaluations"] - state["evaluations"] % ctx.recheck.every
    if ctx.early_stop is not None:
        ctx.early_stop.drain()  # what the rule noted while replaying is already in the history
    if ctx.llm_spend is not None:
        totals = history.llm_totals(run_id)
        ctx.llm_spend.calls, ctx.llm_spend.dollars = totals["calls"], totals["cost"] or 0.0
    if ctx.reflector is not None:
        ctx.reflector.last = max((r["after_evaluations"] for r in history.insights(run_id)), default=0)
        ctx.reflector.calls_then = ctx.llm_spend.calls if ctx.llm_spend is not None else 0
    return state
