"""Continue a run from its history: the history is the search's checkpoint.

``resume_settings`` says what a resumed run continues with (its recorded settings, with the
limits given now on top; a flag that would change what the run is, refused), ``run_deadline``
when it stops, and ``check_same_files`` refuses a space file or builder that changed since.
``restore_state`` rebuilds the search's state from what the run recorded.

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

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.config import FIELDS, Settings
from agent.engine.graph import initial_state, tally, tally_rechecks
from agent.engine.state import SearchContext, SearchState
from agent.store.recorder import Recorder
from evaluator.errors import UserInputError
from evaluator.records import Purpose, Status


def restore_state(ctx: SearchContext, history: Recorder) -> SearchState:
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


# What may change when a run is resumed: its limits and how its workers run. Everything else
# (task, space, proposer, seed, objectives, ...) is the run's own and comes from its record.
RESUME_OVERRIDES = ("budget", "minutes", "max_llm_cost", "max_device_seconds", "workers", "warm_workers", "pool",
                    "ray_address", "ray_cpus", "ray_gpus", "ray_retries", "timeout", "memory_mb", "disk_mb", "device",
                    "reflect_every", "directions", "recheck_every", "recheck_top", "recheck_seeds")


# Where this process runs, never taken from the record: the home, secrets, endpoints, caches.
RESUME_LOCAL = ("home", "openai_api_key", "openai_base_url", "model_cache", "llm_timeout", "lock_timeout",
                "llm_price_in", "llm_price_out", "snapshot_every", "snapshots_kept")


def resume_settings(current: Settings, given: dict[str, Any], stored: dict[str, Any]) -> Settings:
    """The settings a resumed run continues with: its recorded ones, with the limits given now
    (``given``: the flags of this command) on top. A flag that would change what the run is
    (another task, seed, proposer...) is refused rather than silently ignored."""
    values = {k: stored[k] for k in FIELDS if k in stored and k not in RESUME_LOCAL}
    for key, value in given.items():
        if value is None or key in RESUME_LOCAL:
            continue
        if key in RESUME_OVERRIDES:
            values[key] = value
            continue
        recorded = stored.get(key)
        if _normal(getattr(current, key)) != _normal(recorded):
            raise UserInputError(f"--{key.replace('_', '-')} {value} differs from the run's own ({recorded}); "
                                 "a resumed run keeps its task, space, proposer, seed and search settings",
                                 hint="drop the flag to continue the run as it was, or start a new run; on resume only "
                                      + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES) + " may change")
    values.pop("unsafe", None)  # a flag of one command only, never restored from a record
    # The run config also holds what the setup resolved under two of these names: the device
    # it ran on ("cuda:0") and the sandbox's description. The setting is what it came from.
    if isinstance(values.get("device"), str):
        values["device"] = values["device"].split(":")[0]
    if values.get("sandbox") not in ("auto", "bwrap", "unshare", "none"):
        values.pop("sandbox", None)
    if stored.get("unsafe") and not given.get("unsafe"):
        raise UserInputError("the run was started with --unsafe (code-mode candidates without network isolation)",
                             hint="pass --unsafe again to resume it that way")
    local = {k: getattr(current, k) for k in RESUME_LOCAL}
    return Settings.model_validate(values | {"unsafe": bool(given.get("unsafe"))}).model_copy(update=local)


def _normal(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def run_deadline(settings: Settings, until: datetime | None, stored: dict[str, Any] | None) -> datetime | None:
    """The run's wall-clock deadline (UTC): given, or --minutes from now, or the one it recorded."""
    if until is not None:
        return until.astimezone(timezone.utc)
    if stored is not None and stored.get("deadline") and (settings.minutes is None
                                                          or settings.minutes == stored.get("minutes")):
        return datetime.fromisoformat(stored["deadline"])
    if settings.minutes is not None:
        return datetime.now(timezone.utc) + timedelta(minutes=settings.minutes)
    return None


def check_same_files(recorded: dict[str, Any], now: dict[str, Any]) -> None:
    """A resumed run reads the space file (and builder) it started with: refuse one that changed."""
    for key, label in (("space_file_sha256", "space file"), ("builder_sha256", "builder")):
        if recorded.get(key) and now.get(key) and recorded[key] != now[key]:
            path = now.get("space_file" if key == "space_file_sha256" else "builder")
            raise UserInputError(f"the {label} {path} changed since the run started (SHA-256 {recorded[key][:12]}... "
                                 f"then, {now[key][:12]}... now): its recorded candidates may no longer fit it",
                                 hint=f"put the {label} back as it was to resume, or start a new run with the new one")
