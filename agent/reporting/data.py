"""What a run report shows, gathered from the history into plain dataclasses.

Only reads: the run's row (``History.get_run``), a few read-only queries (``agent.store.report_rows``),
the LLM accounting (``History.llm_totals``) and the insights. Nothing here renders or draws;
``agent.reporting.figures`` and ``agent.reporting.render`` take a :class:`ReportData` and turn it
into pictures and text. Everything read here came from the history and is untrusted text
(LLM rationales, specs, error messages): the renderers escape it.

Definitions the report relies on:

- an *evaluation* is a candidate that reached a final status other than ``invalid``
  (DESIGN.md's budget unit); evaluations are ordered by the time their search evaluation was
  recorded;
- *best so far* is the highest validation accuracy among ``ok`` candidates (stopped or pruned
  candidates did not train to the end, so their accuracy is not comparable);
- *evaluation time* is the running sum of the search evaluations' seconds (summed over
  workers; for replayed learning curves, the replay's virtual seconds), so runs with
  different worker counts compare fairly;
- the *random-search baseline* is another run of the same task with proposer ``random``:
  the newest finished one, else the newest of any status; the *random-sample average* is the
  mean validation accuracy of its ``ok`` candidates, and the relative improvement is
  ``(best - average) / average`` ("NAS evaluation is frustratingly hard", Yang et al. 2020).
"""

from __future__ import annotations

import json
import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agent.store import History, report_rows
from evaluator.objectives import pareto_front
from evaluator.records import FINAL_STATUSES, Status

COUNTED = frozenset(s.value for s in Status if s.counts_against_budget)  # the budget's evaluations
STOPPED = frozenset({Status.STOPPED_EARLY.value, Status.PRUNED.value})
TOP_CURVES = 6  # learning curves of the best ok candidates
MAX_STOPPED_CURVES = 30  # stopped / pruned curves drawn beside them (the highest at their stop first)
MAX_LINEAGE = 60  # ancestors listed (the nearest first)
PARETO_METRICS = {"latency_ms": "batch-1 latency (ms)", "params": "parameters", "flops": "FLOPs (MACs per image)"}
OBJECTIVE_METRIC = {"latency": "latency_ms", "params": "params", "flops": "flops"}


@dataclass
class CandidateInfo:
    """One candidate as the report shows it."""

    candidate_id: str
    seq: int
    status: str
    proposer: str
    model: str | None
    parents: list[str]
    spec: dict[str, Any]
    spec_text: str  # the arch string, the space's one-line summary, or compact JSON
    rationale: str | None
    error: str | None
    val_accuracy: float | None  # the latest search evaluation's (None for stopped / pruned ones)
    params: int | None
    flops: int | None
    latency_ms: float | None
    finished: datetime | None  # when its (latest) search evaluation was recorded
    eval_seconds: float  # seconds of its search evaluations
    fidelity: float | None  # epochs of its latest search evaluation
    evaluation_id: str | None
    selection: dict[str, Any] | None = None  # why the portfolio's surrogate picked it (prediction, interval)

    @property
    def short_id(self) -> str:
        """``c0005`` for ``<run>-c0005``: enough inside one run's figures."""
        return self.candidate_id.rsplit("-", 1)[-1]


@dataclass
class ProgressPoint:
    evaluations: int  # evaluations so far
    seconds: float  # evaluation seconds so far
    best: float | None  # best ok validation accuracy so far
    value: float | None  # this evaluation's validation accuracy (ok candidates only)
    candidate_id: str


@dataclass
class Baseline:
    """The random-search run this run is compared with."""

    run_id: str
    status: str
    created: datetime
    budget: int
    evaluations: int
    best: float | None
    random_average: float | None  # mean validation accuracy of its ok candidates
    samples: int  # how many ok candidates that average is over
    progress: list[ProgressPoint]

    def best_after(self, evaluations: int) -> float | None:
        """Its best validation accuracy after ``evaluations`` evaluations (or all it made)."""
        best = None
        for p in self.progress:
            if p.evaluations <= evaluations:
                best = p.best
        return best


@dataclass
class Curve:
    candidate_id: str
    short_id: str
    status: str
    val_accuracy: float | None  # final (ok) or at the stop (stopped / pruned)
    points: list[tuple[float, float]]  # (epoch, validation accuracy)
    stopped_at: float | None = None  # the last epoch of a stopped / pruned candidate
    forecast: dict[str, float] | None = None  # the stop's forecast: final_epoch, lower, median, upper


@dataclass
class CurvesData:
    top: list[Curve]
    stopped: list[Curve]
    stopped_total: int  # stopped / pruned candidates that have a curve (only MAX_STOPPED_CURVES drawn)
    max_epochs: float | None  # the run's full training length, when it is known


@dataclass
class ParetoData:
    metric: str  # latency_ms, params or flops
    label: str
    points: list[tuple[str, float, float]]  # (candidate id, metric value, validation accuracy): every ok candidate
    front: list[str]  # the non-dominated ones in these two objectives, by increasing metric
    missing: int  # ok candidates without the metric (not drawn)


@dataclass
class LineageNode:
    candidate_id: str
    short_id: str
    depth: int  # 0: the best itself; 1: its parents; ...
    val_accuracy: float | None
    status: str
    proposer: str
    parents: list[str]  # the parents inside the run


@dataclass
class Lineage:
    best_id: str
    nodes: list[LineageNode]  # the best first, then its ancestors by depth and creation order
    outside: list[str]  # parents that are not candidates of this run
    truncated: int  # ancestors beyond MAX_LINEAGE, not listed


@dataclass
class FinalReport:
    candidate_id: str
    test_accuracy: float | None
    test_accuracy_std: float | None
    seeds: list[int] | None
    source: str | None


@dataclass
class ReportData:
    run_id: str
    task: str
    space: str
    proposer: str
    status: str
    seed: int
    budget: int
    created: datetime
    finished: datetime | None
    evaluations: int
    counts: dict[str, int]
    wall_seconds: float | None
    wall_note: str  # how wall_seconds was measured
    stop_reason: str | None
    summary: dict[str, Any]
    config: dict[str, Any]
    candidates: list[CandidateInfo]
    best: CandidateInfo | None
    final: FinalReport | None
    progress: list[ProgressPoint]
    baseline: Baseline | None
    baseline_note: str  # which run, or why there is none
    curves: CurvesData
    pareto: ParetoData | None
    pareto_note: str
    lineage: Lineage | None
    lineage_note: str
    llm: dict[str, Any]
    llm_models: list[dict[str, Any]]  # backend, model, calls
    operators: dict[str, Any] | None
    proposers: list[dict[str, Any]]  # per proposer of the run's candidates: candidates, ok, best, mean
    insights: list[dict[str, Any]]
    failures: list[tuple[str, int, str]]  # (first line of an error, how many, one candidate with it)
    top: list[CandidateInfo] = field(default_factory=list)  # ok candidates by validation accuracy

    @property
    def relative_improvement(self) -> float | None:
        """``(best - random-sample average) / random-sample average``, where a baseline exists."""
        if self.baseline is None or self.best is None or not self.baseline.random_average:
            return None
        return (self.best.val_accuracy - self.baseline.random_average) / self.baseline.random_average


# -- reading -----------------------------------------------------------------------------

def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _spec_text(space: Any, spec: dict[str, Any], valid: bool) -> str:
    """The arch string (nb201), the space's one-line summary (layers, code), else compact JSON."""
    from evaluator.errors import ArchAgentError

    if valid and space is not None:
        try:
            extra = space.extra_fields(spec)
            text = extra.get("arch") or extra.get("summary") or space.summary(spec)
        except (ArchAgentError, KeyError, TypeError, ValueError):  # a spec this version cannot read: show it raw
            text = None
        if text:
            return str(text)
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _candidates(history: History, run_id: str, space_name: str) -> list[CandidateInfo]:
    from evaluator.spaces import SPACES, get_space

    space = get_space(space_name) if space_name in SPACES else None  # no task shape: summaries need none
    out = []
    for r in report_rows.candidate_rows(history, run_id):
        spec = _json(r["spec"]) or {}
        measured = _json(r["measurements"]) or {}
        metrics = _json(r["metrics"]) or {}

        def size(key: str) -> float | None:  # the probe's measurement first, as the objectives read it
            return _number(measured.get(key)) if _number(measured.get(key)) is not None else _number(metrics.get(key))

        params, flops = size("params"), size("flops")
        out.append(CandidateInfo(
            candidate_id=r["candidate_id"], seq=int(r["seq"]), status=r["status"], proposer=r["proposer"],
            model=r["model"], parents=[str(p) for p in (_json(r["parents"]) or [])], spec=spec,
            spec_text=_spec_text(space, spec, r["canonical_key"] is not None), rationale=r["rationale"],
            error=r["error"], val_accuracy=r["val_accuracy"], params=None if params is None else int(params),
            flops=None if flops is None else int(flops), latency_ms=size("latency_ms"),
            finished=r["finished"] if r["finished"] is not None else (r["updated"] if r["status"] in COUNTED else None),
            eval_seconds=float(r["seconds"] or 0.0), fidelity=r["fidelity"], evaluation_id=r["evaluation_id"],
            selection=_json(r["selection"]),
        ))
    return out


def status_counts(candidates: list[CandidateInfo]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c.status] = counts.get(c.status, 0) + 1
    return counts


def first_reaching(points: list[ProgressPoint], value: float) -> ProgressPoint | None:
    """The first evaluation after which the best so far is at least ``value``."""
    return next((p for p in points if p.best is not None and p.best >= value), None)


def progress_of(candidates: list[CandidateInfo]) -> list[ProgressPoint]:
    """Best ok validation accuracy after each evaluation, in the order the evaluations finished."""
    done = sorted((c for c in candidates if c.status in COUNTED),
                  key=lambda c: (c.finished or datetime.max, c.seq))
    points, best, seconds = [], None, 0.0
    for i, c in enumerate(done, 1):
        seconds += c.eval_seconds
        if c.status == Status.OK.value and c.val_accuracy is not None:
            best = c.val_accuracy if best is None else max(best, c.val_accuracy)
        value = c.val_accuracy if c.status == Status.OK.value else None
        points.append(ProgressPoint(evaluations=i, seconds=seconds, best=best, value=value, candidate_id=c.candidate_id))
    return points


def _ranked(candidates: list[CandidateInfo]) -> list[CandidateInfo]:
    ok = [c for c in candidates if c.status == Status.OK.value and c.val_accuracy is not None]
    return sorted(ok, key=lambda c: (-c.val_accuracy, c.seq))


def _baseline(history: History, run: dict[str, Any]) -> tuple[Baseline | None, str]:
    runs = [r for r in history.list_runs()
            if r["task"] == run["task"] and r["proposer"] == "random" and r["run_id"] != run["run_id"]]
    if not runs:
        return None, (f"no random-search baseline: no other run of task {run['task']} with proposer random in this "
                      f"history; agent search --task {run['task']} --proposer random --budget {run['budget']} "
                      "makes one")
    finished = [r for r in runs if r["status"] == "done"]
    chosen = max(finished or runs, key=lambda r: (r["created"], r["run_id"]))
    candidates = _candidates(history, chosen["run_id"], chosen["space"])
    ok = [c.val_accuracy for c in candidates if c.status == Status.OK.value and c.val_accuracy is not None]
    progress = progress_of(candidates)
    baseline = Baseline(run_id=chosen["run_id"], status=chosen["status"], created=chosen["created"],
                        budget=int(chosen["budget"]), evaluations=len(progress), best=max(ok) if ok else None,
                        random_average=statistics.fmean(ok) if ok else None, samples=len(ok), progress=progress)
    others = len(runs) - 1
    note = (f"random-search baseline: run {chosen['run_id']} ({chosen['status']}, {baseline.evaluations} evaluations"
            + (f"; the newest finished of {len(runs)} random runs of this task" if others else "") + ")")
    return baseline, note


def _curves(history: History, run_id: str, candidates: list[CandidateInfo], ranked: list[CandidateInfo],
            max_epochs: float | None) -> CurvesData:
    top = ranked[:TOP_CURVES]
    stopped = [c for c in candidates if c.status in STOPPED and c.evaluation_id]
    wanted = [c.evaluation_id for c in top if c.evaluation_id] + [c.evaluation_id for c in stopped]
    points: dict[str, list[tuple[float, float]]] = {}
    if wanted:
        for r in report_rows.curve_points(history, run_id, wanted):
            points.setdefault(r["evaluation_id"], []).append((float(r["epoch"]), float(r["val_accuracy"])))
    forecasts = {r["candidate_id"]: r for r in report_rows.stop_forecasts(history, run_id)}

    def curve(c: CandidateInfo) -> Curve:
        pts = points.get(c.evaluation_id or "", [])
        out = Curve(candidate_id=c.candidate_id, short_id=c.short_id, status=c.status,
                    val_accuracy=c.val_accuracy if c.status == Status.OK.value else (pts[-1][1] if pts else None),
                    points=pts)
        if c.status in STOPPED and pts:
            out.stopped_at = pts[-1][0]
            f = forecasts.get(c.candidate_id)
            if f is not None:
                out.forecast = {k: float(f[k]) for k in ("final_epoch", "lower", "median", "upper")}
        return out

    stopped_curves = sorted((curve(c) for c in stopped), key=lambda k: -(k.val_accuracy or 0.0))
    stopped_curves = [k for k in stopped_curves if k.points]
    return CurvesData(top=[k for k in map(curve, top) if k.points], stopped=stopped_curves[:MAX_STOPPED_CURVES],
                      stopped_total=len(stopped_curves), max_epochs=max_epochs)


def _pareto(candidates: list[CandidateInfo], objectives: list[str]) -> tuple[ParetoData | None, str]:
    ok = [c for c in candidates if c.status == Status.OK.value and c.val_accuracy is not None]
    value = {"latency_ms": lambda c: c.latency_ms, "params": lambda c: c.params, "flops": lambda c: c.flops}
    asked = [OBJECTIVE_METRIC[o] for o in objectives if o in OBJECTIVE_METRIC]
    order = asked + [m for m in ("latency_ms", "params") if m not in asked]
    metric = next((m for m in order if any(value[m](c) is not None for c in ok)), None)
    if metric is None:
        return None, (f"no Pareto front: none of the {len(ok)} ok candidate(s) has a latency or parameter count "
                      "recorded" if ok else "no Pareto front: no candidate finished ok")
    pts = [(c.candidate_id, float(value[metric](c)), float(c.val_accuracy)) for c in ok if value[metric](c) is not None]
    if len(pts) < 2:
        return None, f"no Pareto front: only {len(pts)} ok candidate has {PARETO_METRICS[metric]} recorded"
    front = pareto_front((cid, (x, -acc)) for cid, x, acc in pts)
    by_id = {cid: (x, acc) for cid, x, acc in pts}
    front.sort(key=lambda cid: (by_id[cid][0], -by_id[cid][1]))
    return ParetoData(metric=metric, label=PARETO_METRICS[metric], points=pts, front=front,
                      missing=len(ok) - len(pts)), ""


def _lineage(candidates: list[CandidateInfo], best: CandidateInfo | None) -> tuple[Lineage | None, str]:
    if best is None:
        return None, "no lineage: no candidate finished ok"
    by_id = {c.candidate_id: c for c in candidates}
    depth = {best.candidate_id: 0}
    queue, outside = deque([best.candidate_id]), []
    while queue:  # breadth first: every ancestor at its shortest distance
        current = queue.popleft()
        for p in by_id[current].parents:
            if p not in by_id:
                if p not in outside:
                    outside.append(p)
            elif p not in depth:
                depth[p] = depth[current] + 1
                queue.append(p)
    if len(depth) == 1:
        extra = f"; its parents {', '.join(outside)} are not in this run" if outside else ""
        return None, (f"no lineage: the best candidate {best.candidate_id} has no parents in this run (proposer "
                      f"{best.proposer}){extra}")
    ordered = sorted(depth, key=lambda cid: (depth[cid], by_id[cid].seq))
    kept = ordered[:MAX_LINEAGE + 1]
    nodes = [LineageNode(candidate_id=cid, short_id=by_id[cid].short_id, depth=depth[cid],
                         val_accuracy=by_id[cid].val_accuracy, status=by_id[cid].status, proposer=by_id[cid].proposer,
                         parents=[p for p in by_id[cid].parents if p in by_id])
             for cid in kept]
    return Lineage(best_id=best.candidate_id, nodes=nodes, outside=outside, truncated=len(ordered) - len(kept)), ""


def _proposers(candidates: list[CandidateInfo]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for c in candidates:
        row = rows.setdefault(c.proposer, {"proposer": c.proposer, "candidates": 0, "evaluations": 0, "ok": 0,
                                           "invalid": 0, "vals": []})
        row["candidates"] += 1
        row["evaluations"] += c.status in COUNTED
        row["ok"] += c.status == Status.OK.value
        row["invalid"] += c.status == Status.INVALID.value
        if c.status == Status.OK.value and c.val_accuracy is not None:
            row["vals"].append(c.val_accuracy)
    out = []
    for row in rows.values():
        vals = row.pop("vals")
        out.append(row | {"best": max(vals) if vals else None, "mean": statistics.fmean(vals) if vals else None})
    return sorted(out, key=lambda r: (-r["candidates"], r["proposer"]))


def _failures(candidates: list[CandidateInfo]) -> list[tuple[str, int, str]]:
    groups: dict[str, list[str]] = {}
    for c in candidates:
        if c.status in (Status.FAILED.value, Status.TIMEOUT.value, Status.INVALID.value) and c.error:
            first = c.error.strip().splitlines()[0] if c.error.strip() else c.error
            groups.setdefault(f"{c.status}: {first[:300]}", []).append(c.candidate_id)
    return sorted(((text, len(ids), ids[0]) for text, ids in groups.items()), key=lambda g: (-g[1], g[0]))[:10]


def _final(history: History, run_id: str, summary: dict[str, Any], best: CandidateInfo | None) -> FinalReport | None:
    chosen = summary.get("best") or {}
    if chosen.get("candidate_id"):
        return FinalReport(candidate_id=chosen["candidate_id"], test_accuracy=chosen.get("test_accuracy"),
                           test_accuracy_std=chosen.get("test_accuracy_std"), seeds=chosen.get("seeds"),
                           source=chosen.get("test_source"))
    rows = report_rows.final_rows(history, run_id)
    if best is not None:
        rows = [r for r in rows if r["candidate_id"] == best.candidate_id] or rows
    if not rows:
        return None
    cid = rows[-1]["candidate_id"]
    accs = [float(r["test_accuracy"]) for r in rows if r["candidate_id"] == cid]
    seeds = [(_json(r["metrics"]) or {}).get("seed") for r in rows if r["candidate_id"] == cid]
    return FinalReport(candidate_id=cid, test_accuracy=statistics.fmean(accs),
                       test_accuracy_std=statistics.stdev(accs) if len(accs) > 1 else None,
                       seeds=[int(s) for s in seeds] if all(isinstance(s, int) for s in seeds) else None,
                       source=f"final evaluations recorded so far ({len(accs)})")


def gather(history: History, run: str, *, now: datetime | None = None) -> ReportData:
    """Everything the report shows of ``run`` (an id or 'latest'); NotFoundError for an unknown run."""
    info = history.get_run(run)
    run_id = info["run_id"]
    summary = info.get("summary") or {}
    config = info.get("config") or {}
    candidates = _candidates(history, run_id, info["space"])
    ranked = _ranked(candidates)
    chosen = (summary.get("best") or {}).get("candidate_id")  # the search's own choice, where it made one
    best = next((c for c in ranked if c.candidate_id == chosen), ranked[0] if ranked else None)
    found = status_counts(candidates)
    counts = {s.value: found.get(s.value, 0) for s in Status if s in FINAL_STATUSES or found.get(s.value)}
    progress = progress_of(candidates)
    if summary.get("wall_seconds") is not None:
        wall, wall_note = float(summary["wall_seconds"]), "the search's own clock, final evaluation included"
    elif info.get("finished") is not None:
        wall, wall_note = (info["finished"] - info["created"]).total_seconds(), "from the run's start to its end"
    else:
        current = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
        wall, wall_note = max(0.0, (current - info["created"]).total_seconds()), "so far: the run has not finished"
    stop_reason = summary.get("stop_reason")
    if stop_reason is None:
        stop_reason = {"running": "still running", "interrupted": "interrupted (Ctrl-C, SIGTERM or a lost process)",
                       "failed": "the search failed (see `agent history --run RUN` for errors)"}.get(info["status"])
    baseline, baseline_note = _baseline(history, info)
    epochs = config.get("epochs")
    pareto, pareto_note = _pareto(candidates, list(summary.get("objectives") or config.get("objectives") or []))
    lineage, lineage_note = _lineage(candidates, best)
    return ReportData(
        run_id=run_id, task=info["task"], space=info["space"], proposer=info["proposer"], status=info["status"],
        seed=int(info["seed"]), budget=int(info["budget"]), created=info["created"], finished=info.get("finished"),
        evaluations=int(info["evaluations"]), counts=counts, wall_seconds=wall, wall_note=wall_note,
        stop_reason=stop_reason, summary=summary, config=config, candidates=candidates, best=best,
        final=_final(history, run_id, summary, best), progress=progress, baseline=baseline, baseline_note=baseline_note,
        curves=_curves(history, run_id, candidates, ranked, float(epochs) if isinstance(epochs, (int, float)) else None),
        pareto=pareto, pareto_note=pareto_note, lineage=lineage, lineage_note=lineage_note,
        llm=history.llm_totals(run_id),
        llm_models=report_rows.llm_models(history, run_id),
        operators=(summary.get("operators") or {}).get("operators") or None,
        proposers=_proposers(candidates), insights=history.insights(run_id, latest=False),
        failures=_failures(candidates), top=ranked,
    )


__all__ = ["Baseline", "CandidateInfo", "Curve", "CurvesData", "FinalReport", "Lineage", "LineageNode", "ParetoData",
           "ProgressPoint", "ReportData", "first_reaching", "gather", "progress_of"]
