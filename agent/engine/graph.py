"""The search loop as a langgraph graph:
propose -> validate -> screen -> evaluate -> record -> reflect -> decide
(evaluate -> decide when it returned only for a finished proposal: nothing to record).

Nodes are plain functions of the state and the run's context; each returns only the keys
it changed. The pool is asynchronous: ``evaluate`` submits what fits and collects what has
finished. With successive halving, a free slot goes to a waiting candidate's promotion before
a new one.

Every call to the proposer goes through ``ctx.proposing`` (agent.engine.proposing). When the
pool runs its jobs in the background, ``evaluate`` asks for the next candidate before it waits,
and waits for a finished job or a finished proposal, whichever comes first: a proposal is made
while the pool trains, and goes to a slot as soon as it is validated. It asks for the free
slots plus ``lookahead`` candidates held ready (so a slot freed while the proposer is slower
than training finds one), one candidate per request (each goes to the pool as soon as it is
made). Otherwise (tables, replays) ``propose`` asks and gets its proposals at once, in turn
with the evaluations. Either way the budget counts every candidate under way: validated and
waiting for a slot, in the pool, waiting at a rung, or being proposed.
"""

from __future__ import annotations

import time
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.proposers import ProposalContext
from agent.engine.state import TOP_K, SearchContext, SearchState
from evaluator.errors import SpecError
from evaluator.measure import PROXY_NAMES
from evaluator.objectives import dominates, objective_values
from evaluator.pools.base import Job
from evaluator.records import Candidate, Evaluation, Purpose, Status


def _candidate_id(run_id: str, seq: int) -> str:
    return f"{run_id}-c{seq:04d}"


def _waiting(ctx: SearchContext) -> int:
    return len(ctx.halving.waiting) if ctx.halving is not None else 0


POLL = 0.05  # seconds between looks at the pool while a proposal is being made beside it


def _closing(state: SearchState, ctx: SearchContext) -> bool:
    """No new candidate will be proposed: every remaining evaluation is already under way."""
    pending = len(state["ready"]) + len(state["running"]) + _waiting(ctx) + ctx.proposing.pending
    return bool(state.get("stop_reason")) or state["evaluations"] + pending >= ctx.budget \
        or state["attempts"] >= ctx.max_attempts


def propose(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    """The proposals made for the pool: asked for now (inline), or made in the background since."""
    ctx = runtime.context
    if state.get("stop_reason"):
        return {"proposals": []}  # one being made is dropped when the search closes
    if not ctx.proposing.background:
        _ask(state, ctx)
    batch = ctx.proposing.take()
    if batch is None:
        return {"proposals": []}
    return {"proposals": batch.proposals, "wanted": batch.wanted, "attempts": state["attempts"] + len(batch.proposals)}


def _ask(state: SearchState, ctx: SearchContext) -> None:
    """Ask for the candidates the pool will want next: its free slots (promotions take them
    first) and the lookahead, within the budget (what is under way counts) and the proposal limit."""
    proposing = ctx.proposing
    if proposing.pending or state.get("stop_reason"):
        return
    queued = len(state["ready"]) + len(state["running"])  # hold or wait for a pool slot
    slots = ctx.pool.capacity - queued
    if ctx.halving is not None and slots > 0:
        slots -= ctx.halving.promotable(_closing(state, ctx))  # promotions take free slots first
    n = min(slots + proposing.lookahead, ctx.budget - state["evaluations"] - queued - _waiting(ctx))
    if proposing.background:
        n = min(n, 1)  # one at a time: each candidate goes to the pool as soon as it is made
    factor = ctx.screen.factor if ctx.screen is not None and ctx.screen.proxy else 1
    asked = min(n * factor, ctx.max_attempts - state["attempts"])
    if n <= 0 or asked <= 0:
        return
    top = state["top"][0] if state["top"] else None
    waiting = [c for c, _ in ctx.halving.waiting.values()] if ctx.halving is not None else []
    pending = tuple((c.candidate_id, c.spec) for c in [*state["running"].values(), *waiting, *state["ready"]])
    context = ProposalContext(seen=frozenset(state["seen"]), evaluations=state["evaluations"], budget=ctx.budget,
                              best=(top["candidate_id"], top["spec"], top["val_accuracy"]) if top else None,
                              pending=pending)
    proposing.request(asked, n, context)


def validate(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    """Untrusted proposals become unique, validated candidates; the rest are recorded."""
    ctx = runtime.context
    if not state["proposals"]:
        return {}
    seen = set(state["seen"])
    seq, ready, new_keys, rejected, events = state["seq"], list(state["ready"]), [], [], []
    counts = dict(state["counts"])
    for p in state["proposals"]:
        common = dict(run_id=ctx.run.run_id, space=ctx.space.name, parents=p.parents,
                      proposer=f"{ctx.proposer.name}:{p.operator}" if p.operator else ctx.proposer.name, model=p.model, rationale=p.rationale, prompt_ref=p.prompt_ref,
                      selection=p.selection)
        try:
            spec = ctx.space.validate(p.spec)
        except SpecError as exc:
            raw = p.spec if isinstance(p.spec, dict) else {"raw": repr(p.spec)[:2000]}
            rejected.append(Candidate(candidate_id=_candidate_id(ctx.run.run_id, seq), seq=seq, spec=raw,
                                      status=Status.INVALID, error=p.error or str(exc), **common))
            counts[Status.INVALID.value] = counts.get(Status.INVALID.value, 0) + 1
            seq += 1
            continue
        key = ctx.space.canonical_key(spec)
        if key in seen:
            events.append({"run_id": ctx.run.run_id, "kind": "duplicate_skipped",
                           "payload": {"canonical_key": key, "parents": p.parents}})
            continue
        seen.add(key)
        new_keys.append(key)
        ready.append(Candidate(candidate_id=_candidate_id(ctx.run.run_id, seq), seq=seq, spec=spec,
                               canonical_key=key, status=Status.QUEUED, **common))
        seq += 1
    if rejected or events:
        ctx.recorder.add_candidates(rejected, events)
    fresh = [c.candidate_id for c in ready[len(state["ready"]):]]
    return {"proposals": [], "ready": ready, "seen": new_keys, "seq": seq, "counts": counts, "fresh": fresh,
            "unrecorded": state["unrecorded"] + fresh, "duplicates": state["duplicates"] + len(events)}


def screen(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    """Measure the new candidates before they train; reject the ones that break a constraint
    or, when screening, rank below the best ``wanted`` by the proxy."""
    ctx = runtime.context
    fresh = set(state.get("fresh", []))
    if ctx.screen is None or not fresh:
        return {}
    new = [c for c in state["ready"] if c.candidate_id in fresh]
    passed, rejected = ctx.screen.check(new, keep=max(1, state.get("wanted", len(new))))
    if not rejected:
        return {}
    ctx.recorder.add_candidates(rejected)
    gone = {c.candidate_id for c in rejected}
    counts = dict(state["counts"])
    counts[Status.INVALID.value] = counts.get(Status.INVALID.value, 0) + len(rejected)
    return {"ready": [c for c in state["ready"] if c.candidate_id not in gone],
            "unrecorded": [cid for cid in state["unrecorded"] if cid not in gone], "counts": counts}


def evaluate(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    """Submit what fits in the pool (promotions first), then collect what has finished."""
    ctx = runtime.context
    ready, running = list(state["ready"]), dict(state["running"])
    stopping = bool(state.get("stop_reason"))
    free = ctx.pool.free_slots() if not stopping else 0
    jobs: list[tuple[Candidate, Job]] = []
    if ctx.halving is not None and free:
        jobs = ctx.halving.promote(free, _closing(state, ctx))
        free -= len(jobs)
    queue, rechecking, round_at = _rechecks_due(state, ctx, running)
    if not stopping:
        while free and queue and queue[0]["candidate_id"] not in rechecking:
            item = queue.pop(0)
            ctx.pool.submit(Job(candidate_id=item["candidate_id"], spec=item["spec"], purpose=Purpose.RECHECK,
                                seed=item["seed"]))
            rechecking[item["candidate_id"]] = item["seed"]
            free -= 1
    submit = ready[:free]
    jobs += [(c, ctx.halving.first_job(c) if ctx.halving is not None else Job(candidate_id=c.candidate_id, spec=c.spec))
             for c in submit]
    # One write for the candidates this step: new ones go in as running when they get a slot (one
    # held for a slot is written when it gets one: a search that stops first drops it, as a proposal);
    # ones already recorded (queued on resume, or waiting at a rung) are marked running.
    unrecorded = set(state["unrecorded"])
    for c, _ in jobs:
        c.status = Status.RUNNING
    new = [c for c, _ in jobs if c.candidate_id in unrecorded]
    if new:
        ctx.recorder.add_candidates(new)
    started = [c.candidate_id for c, _ in jobs if c.candidate_id not in unrecorded]
    if started:
        ctx.recorder.set_status(started, Status.RUNNING)
    for c, job in jobs:
        ctx.pool.submit(job)
        running[c.candidate_id] = c
    waiting = ready[len(submit):]
    proposing = ctx.proposing
    beside = proposing.background and not stopping  # proposals are made while the pool works
    if beside:
        _ask({**state, "ready": waiting, "running": running}, ctx)
    results, paused, rechecked = [], [], []
    # Wait for at least one finished job or finished proposal, or the deadline. Once stopping,
    # wait without a deadline: every cancelled job still reports its final result.
    while (running or rechecking or (beside and proposing.pending)) and not results and not paused \
            and not rechecked:
        if beside and proposing.ready:
            break  # a proposal is made: validate it and give it a slot
        timeout = None if ctx.deadline is None or stopping else ctx.deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            break
        if not running and not rechecking:
            proposing.wait(timeout)
            continue
        if beside and proposing.pending:
            timeout = POLL if timeout is None else min(timeout, POLL)
        for event in ctx.pool.events(timeout=timeout):
            if ctx.on_event is not None:
                ctx.on_event(event)
            if event.kind == "lost":  # a Ray worker or node died under a job; the pool re-queued or failed it
                ctx.recorder.add_candidates([], [{"run_id": ctx.run.run_id, "kind": "worker_lost",
                                                  "payload": {"candidate_id": event.candidate_id, **event.data}}])
            if event.kind == "progress" and ctx.early_stop is not None and event.candidate_id in running \
                    and event.data.get("purpose") == Purpose.SEARCH.value and event.data.get("val_accuracy") is not None:
                decision = ctx.early_stop.on_epoch(event.candidate_id, event.data["epoch"], event.data["val_accuracy"],
                                                   event.data.get("train_accuracy"))
                if decision is not None and decision.stop:
                    ctx.pool.cancel(event.candidate_id, status=Status.STOPPED_EARLY,
                                    reason=ctx.early_stop.stop_message(decision))
            if event.kind == "finished" and event.evaluation is not None \
                    and event.evaluation.purpose is Purpose.RECHECK and event.candidate_id in rechecking:
                rechecking.pop(event.candidate_id)
                rechecked.append(event.evaluation)
            elif event.kind == "finished" and event.candidate_id in running and event.evaluation is not None:
                candidate = running.pop(event.candidate_id)
                if ctx.halving is not None and ctx.halving.arrived(candidate, event.evaluation):
                    paused.append(candidate.candidate_id)
                else:
                    results.append((candidate, event.evaluation))
    if paused:
        ctx.recorder.set_status(paused, Status.QUEUED)  # waiting at a rung for a promotion
    if ctx.halving is not None and ctx.halving.waiting and not running:
        if stopping:
            results += ctx.halving.prune_waiting(f"the search stopped ({state['stop_reason']})")
        elif not waiting and _closing({**state, "ready": waiting, "running": running}, ctx) \
                and not ctx.halving.promotable(closing=True):
            results += ctx.halving.prune_waiting("the search closed with no promotion left (at the end the top "
                                                 "ceil(n/eta) of each rung continue)")
    if ctx.halving is not None:
        events = ctx.halving.drain_events()
        if events:
            ctx.recorder.add_candidates([], events)
    for_proposal = beside and proposing.ready and not results and not paused and not rechecked
    return {"ready": waiting, "running": running, "results": results, "fresh": [], "waiting": _waiting(ctx),
            "for_proposal": for_proposal,
            "unrecorded": [c.candidate_id for c in waiting if c.candidate_id in unrecorded],
            "recheck_queue": queue, "rechecking": rechecking, "recheck_results": rechecked, "recheck_round": round_at}


def _rechecks_due(state: SearchState, ctx: SearchContext, running: dict) -> tuple[list[dict], dict[str, int], int]:
    """The rechecks waiting for a slot, after adding a new round when one is due: every
    ``every`` evaluations, each of the ``top`` best candidates gets its missing seeds (1, 2, ...;
    its search evaluation was seed 0). One recheck per candidate is in the pool at a time."""
    queue, rechecking = list(state.get("recheck_queue", [])), dict(state.get("rechecking", {}))
    round_at = state.get("recheck_round", 0)
    r = ctx.recheck
    if r is None or state.get("stop_reason") or state["evaluations"] < round_at + r.every:
        return queue, rechecking, round_at
    round_at = state["evaluations"] - state["evaluations"] % r.every
    have = state.get("rechecks", {})
    planned = {(q["candidate_id"], q["seed"]) for q in queue} | set(rechecking.items())
    for t in state["top"][:r.top]:
        for seed in range(1 + len(have.get(t["candidate_id"], [])), 1 + r.seeds):
            if (t["candidate_id"], seed) not in planned:
                queue.append({"candidate_id": t["candidate_id"], "spec": t["spec"], "seed": seed})
    # a candidate's next seed waits until its recheck in the pool is done
    queue.sort(key=lambda q: (q["candidate_id"] in rechecking or q["candidate_id"] in running, q["seed"]))
    return queue, rechecking, round_at


def record(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    ctx = runtime.context
    results, rechecked = state["results"], state.get("recheck_results", [])
    if not results and not rechecked:
        return {}
    ctx.recorder.add_evaluations(ctx.run.run_id, [ev for _, ev in results])
    update = tally(ctx, state, results)
    every = ctx.snapshot_every
    if every and update["evaluations"] // every > state["evaluations"] // every:
        ctx.recorder.checkpoint(f"{ctx.run.run_id}-e{update['evaluations']}", ctx.snapshots_kept)
    if rechecked:
        ctx.recorder.add_evaluations(ctx.run.run_id, rechecked, update_status=False)
        update |= {"recheck_results": [], "rechecks": tally_rechecks(state.get("rechecks", {}), rechecked),
                   "device_seconds": update["device_seconds"] + sum(ev.device_seconds for ev in rechecked)}
    if not results:
        return update
    if ctx.early_stop is not None:
        ctx.recorder.add_forecasts(ctx.early_stop.drain())
    if ctx.on_result is not None:
        snapshot = {**state, **update}
        for candidate, ev in results:
            ctx.on_result(candidate, ev, snapshot)
    return update


def tally(ctx: SearchContext, state: SearchState, results: list[tuple[Candidate, Evaluation]]) -> dict:
    """The state after these recorded results: counts, budget, the best, the front; the proposer
    and the early-stop rule learn from them. A resumed run replays its history through this."""
    counts, evaluations, top = dict(state["counts"]), state["evaluations"], list(state["top"])
    front = list(state.get("front", []))
    proxy_scores = list(state.get("proxy_scores", []))
    trained, saved = state.get("epochs_trained", 0), state.get("epochs_saved", 0)
    device_seconds = state.get("device_seconds", 0.0)
    for candidate, ev in results:
        device_seconds += ev.device_seconds
        if ctx.epochs is not None:
            trained += len(ev.curve)
            if ev.status is Status.STOPPED_EARLY or ev.metrics.get("stopped_by") == "asha":
                saved += max(0, ctx.epochs - len(ev.curve))
        if ctx.early_stop is not None:
            ctx.early_stop.on_finished(candidate, ev)
        candidate.status = ev.status
        counts[ev.status.value] = counts.get(ev.status.value, 0) + 1
        if ev.status.counts_against_budget:
            evaluations += 1
        if ev.status is Status.OK and ev.val_accuracy is not None:
            top.append({"candidate_id": candidate.candidate_id, "seq": candidate.seq, "spec": candidate.spec,
                        "val_accuracy": ev.val_accuracy})
            if ctx.objectives.multi:
                front = _front_with(front, ctx, candidate, ev)
            proxies = {k: v for k, v in ev.metrics.items() if k.startswith("proxy_") and k[len("proxy_"):] in PROXY_NAMES}
            if proxies:
                proxy_scores.append({"val_accuracy": ev.val_accuracy, **proxies})
        ctx.proposing.observe(candidate, ev)
    top = sorted(top, key=lambda t: (-t["val_accuracy"], t["seq"]))[:TOP_K]
    return {"results": [], "counts": counts, "evaluations": evaluations, "top": top, "front": front,
            "proxy_scores": proxy_scores, "epochs_trained": trained, "epochs_saved": saved,
            "device_seconds": device_seconds}


def tally_rechecks(rechecks: dict[str, list[float | None]], evaluations: list[Evaluation]) -> dict:
    out = {k: list(v) for k, v in rechecks.items()}
    for ev in evaluations:
        out.setdefault(ev.candidate_id, []).append(ev.val_accuracy if ev.status is Status.OK else None)
    return out


def _front_with(front: list[dict], ctx: SearchContext, candidate: Candidate, ev: Evaluation) -> list[dict]:
    """The Pareto front after an ok candidate arrives (it joins unless dominated; it removes
    the members it dominates). A candidate missing an objective's value cannot be placed."""
    values = objective_values(candidate, ev)
    vector = ctx.objectives.vector(values)
    if vector is None or any(dominates(m["vector"], vector) for m in front):
        return front
    member = {"candidate_id": candidate.candidate_id, "seq": candidate.seq, "spec": candidate.spec,
              "vector": vector, **ctx.objectives.values(values)}
    return sorted([m for m in front if not dominates(vector, m["vector"])] + [member],
                  key=lambda m: (m["vector"], m["seq"]))


def reflect(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    """Every k evaluations, the LLM distils insights into the history for later prompts."""
    ctx = runtime.context
    r = ctx.reflector
    if r is None or state.get("stop_reason") or state["evaluations"] >= ctx.budget or not r.due(state["evaluations"]):
        return {}
    evaluations = state["evaluations"]
    r.last = evaluations  # not due again for ``every`` evaluations, while this one waits for the proposer's turn
    ctx.proposing.call(lambda: r.reflect(evaluations, ctx.budget))  # it shares the proposer's model
    return {}


def decide(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
    ctx = runtime.context
    if state.get("stop_reason"):
        return {}
    reason = None
    if state["evaluations"] >= ctx.budget:
        reason = "budget reached"
    elif ctx.deadline is not None and time.monotonic() >= ctx.deadline:
        reason = "time limit reached"
    elif ctx.max_device_seconds is not None and state.get("device_seconds", 0.0) >= ctx.max_device_seconds:
        reason = f"device time limit reached ({state['device_seconds']:.0f} of {ctx.max_device_seconds:g} s)"
    elif ctx.max_llm_cost is not None and ctx.llm_spend is not None and ctx.llm_spend.dollars >= ctx.max_llm_cost:
        reason = f"LLM cost limit reached (${ctx.llm_spend.dollars:.4f} of ${ctx.max_llm_cost:g})"
    elif state["attempts"] >= ctx.max_attempts and not state["ready"] and not state["running"] and not _waiting(ctx) \
            and not ctx.proposing.pending:
        reason = f"proposal limit reached ({ctx.max_attempts} proposals; the space may be exhausted)"
    if reason is None:
        return {}
    for cid in [*state["running"], *state.get("rechecking", {})]:
        ctx.pool.cancel(cid)  # each cancelled job still reports a final 'pruned' result
    # Candidates that never got a slot: one not yet recorded is dropped, as a proposal; one recorded
    # queued (a resumed run's) ends invalid, not evaluated, so a finished run holds final candidates only.
    unrecorded = set(state["unrecorded"])
    left = [c.candidate_id for c in state["ready"] if c.candidate_id not in unrecorded]
    counts = dict(state["counts"])
    if left:
        ctx.recorder.set_status(left, Status.INVALID, error=f"not evaluated: the search stopped ({reason}) before "
                                                             "it got a pool slot")
        counts[Status.INVALID.value] = counts.get(Status.INVALID.value, 0) + len(left)
    return {"stop_reason": reason, "ready": [], "unrecorded": [], "counts": counts}


def after_evaluate(state: SearchState) -> Literal["record", "decide"]:
    # A step that only made room for a finished proposal has nothing to record or reflect on; the
    # limits are still checked. (So ``record:N`` and ``reflect:N`` crash points stay the N-th results.)
    return "decide" if state.get("for_proposal") else "record"


def route(state: SearchState) -> Literal["continue", "stop"]:
    # A stopping search with candidates still waiting at a rung makes one more round to prune them.
    if state.get("stop_reason") and not state["running"] and not state.get("waiting") and not state.get("rechecking"):
        return "stop"
    return "continue"


NODES = {"propose": propose, "validate": validate, "screen": screen, "evaluate": evaluate, "record": record,
         "reflect": reflect, "decide": decide}


def build_graph():
    graph = StateGraph(SearchState, context_schema=SearchContext)
    for name, node in NODES.items():
        graph.add_node(name, _with_crash_point(name, node))
    graph.add_edge(START, "propose")
    graph.add_edge("propose", "validate")
    graph.add_edge("validate", "screen")
    graph.add_edge("screen", "evaluate")
    graph.add_conditional_edges("evaluate", after_evaluate, {"record": "record", "decide": "decide"})
    graph.add_edge("record", "reflect")
    graph.add_edge("reflect", "decide")
    graph.add_conditional_edges("decide", route, {"continue": "propose", "stop": END})
    return graph.compile()


def _with_crash_point(name: str, node):
    """The node, killing this process (SIGKILL) where ``ctx.crash_points`` says: the test-only
    way to crash a search at a known place, before or after the node's own writes."""
    def run(state: SearchState, runtime: Runtime[SearchContext]) -> dict:
        points = runtime.context.crash_points
        if points is None:
            return node(state, runtime)
        points.reached(name, "before")
        update = node(state, runtime)
        points.reached(name, "after")
        return update

    run.__name__ = name
    return run


SEARCH_GRAPH = build_graph()


def initial_state() -> SearchState:
    return SearchState(proposals=[], ready=[], unrecorded=[], fresh=[], running={}, results=[], seen=[], seq=0,
                       attempts=0, evaluations=0, counts={}, duplicates=0, top=[], front=[], stop_reason=None, epochs_trained=0,
                       epochs_saved=0, wanted=0, waiting=0, proxy_scores=[], device_seconds=0.0,
                       rechecks={}, recheck_queue=[], rechecking={}, recheck_results=[], recheck_round=0,
                       for_proposal=False)
