"""The search summary (``agent search --json``; docs/contracts.md): counts, the best and the top
candidates, the Pareto front, what early stopping, halving, screening and the LLM did, how well
each zero-cost proxy ranked the run's candidates, and the rechecks."""

from __future__ import annotations

import statistics
import time
from typing import Any

from agent.engine.final_report import validation_seeds
from agent.engine.state import SearchContext, SearchState
from agent.records import RunStatus
from agent.summaries import BestCandidate, SearchSummary
from evaluator.records import FINAL_STATUSES


def search_summary(ctx: SearchContext, state: SearchState, best: BestCandidate | None, started: float, *,
                   warnings: list[str]) -> SearchSummary:
    counts = {s.value: state["counts"].get(s.value, 0) for s in FINAL_STATUSES}
    top = [{"candidate_id": t["candidate_id"], "val_accuracy": t["val_accuracy"], **ctx.space.extra_fields(t["spec"])}
           for t in state["top"]]
    return SearchSummary(
        run_id=ctx.run.run_id, status=RunStatus.DONE.value, task=ctx.run.task, space=ctx.space.name,
        proposer=ctx.proposer.name, seed=ctx.run.seed, budget=ctx.budget, evaluations=state["evaluations"],
        counts=counts, duplicates_skipped=state["duplicates"], proposals=state["attempts"],
        stop_reason=state["stop_reason"], best=best, top=top, wall_seconds=round(time.monotonic() - started, 3),
        home=str(ctx.recorder.home) if ctx.recorder.home is not None else None, warnings=warnings,
        llm=ctx.recorder.llm_totals(ctx.run.run_id) if ctx.llm_spend is not None else None,
        operators=ctx.proposer.stats(),
        epochs_trained=state.get("epochs_trained") if ctx.epochs is not None else None,
        epochs_saved=state.get("epochs_saved") if ctx.epochs is not None else None,
        early_stop=ctx.early_stop.report() if ctx.early_stop is not None else None,
        asha=ctx.halving.report() if ctx.halving is not None else None,
        objectives=list(ctx.objectives.names),
        pareto=[{"candidate_id": m["candidate_id"], **{k: v for k, v in m.items() if k in _OBJECTIVE_KEYS},
                 **ctx.space.extra_fields(m["spec"])}
                for m in sorted(state.get("front", []), key=lambda m: (-m["val_accuracy"], m["seq"]))]
        if ctx.objectives.multi else None,
        pretraining=ctx.screen.report() if ctx.screen is not None else None,
        proxies=_proxy_quality(state.get("proxy_scores", [])),
        rechecks=_recheck_report(state),
        surrogate=ctx.guidance.stats() | (ctx.proposer.stats() or {}).get("surrogate", {}) if ctx.guidance is not None else None,
    )


def _recheck_report(state: SearchState) -> dict[str, Any] | None:
    """Each rechecked candidate's recheck accuracies, and its mean with the search's (while it is in the top)."""
    top = {t["candidate_id"]: t for t in state["top"]}
    return {cid: {"val_accuracies": vals, "val_accuracy_mean":
                  statistics.fmean(validation_seeds(state, top[cid])) if cid in top else None}
            for cid, vals in state.get("rechecks", {}).items()} or None


_OBJECTIVE_KEYS = ("val_accuracy", "latency_ms", "params", "flops")


PROXY_MIN_CANDIDATES = 5  # fewer ok candidates give no rank correlation worth printing


def _proxy_quality(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How well each zero-cost proxy the workers scored ranked this run's ok candidates: the
    Spearman correlation with their validation accuracy (undefined scores rank last)."""
    if not rows:
        return None
    from evaluator.measure.proxies import PROXY_NAMES, spearman

    out = {}
    for name in PROXY_NAMES:
        key = f"proxy_{name}"
        if not any(key in r for r in rows):
            continue
        scored = [r for r in rows if key in r]
        floor = min((r[key] for r in scored if r[key] is not None), default=0.0) - 1.0
        values = [r[key] if r[key] is not None else floor for r in scored]
        vals = [r["val_accuracy"] for r in scored]
        enough = len(scored) >= PROXY_MIN_CANDIDATES and len(set(vals)) > 1 and len(set(values)) > 1
        rho = spearman(values, vals) if enough else None
        out[name] = {"spearman_val_accuracy": None if rho is None else round(rho, 3), "candidates": len(scored),
                     "undefined": sum(r[key] is None for r in scored)}
    return out or None
