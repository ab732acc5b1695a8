"""The Python API: the CLI's commands as functions returning the same objects.

    import agent
    summary = agent.search("nb201-cifar10", benchmark_dir="../shared/benchdata/nb201",
                           proposer="evolution", budget=100, seed=0)
    print(summary.best.test_accuracy, summary.best.arch)
    runs = agent.history()                     # {"runs": [...]}
    detail = agent.history(run=summary.run_id)  # {"run_id", "candidates": [...]}
    cand = agent.show(summary.best.candidate_id)
    paths = agent.report(summary.run_id)        # {"run_id", "html", "markdown", "figures"}

Keyword arguments are settings (see ``agent.config.Settings``) and take precedence over the
environment and agent.toml, exactly like flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import Settings, load_settings
from agent.store import History
from agent.summaries import RunRow, SearchSummary


def settings_from(**flags: Any) -> Settings:
    return load_settings(flags).settings


def search(task: str | None = None, **settings: Any) -> SearchSummary:
    """Run a search (``agent search``) and return its summary."""
    from agent.engine.runner import run_search

    return run_search(settings_from(task=task, **settings))


def evaluate(task: str | None = None, spec: Any = None, *, final: bool = False, **settings: Any) -> dict[str, Any]:
    """Evaluate one spec or nb201 arch string (``agent eval``) and record it."""
    from agent.engine.evaluate_one import evaluate_one

    return evaluate_one(settings_from(task=task, **settings), spec, final=final)


def _history(home: Path | str | None) -> History:
    s = settings_from(home=home)
    return History(s.home, lock_timeout=s.lock_timeout)


def history(run: str | None = None, *, home: Path | str | None = None) -> dict[str, Any]:
    """``agent history --json``: all runs, or one run's candidates (``run`` may be 'latest')."""
    h = _history(home)
    if run is None:
        rows = h.list_runs()
        return {"runs": [RunRow(**{**r, "created": _iso(r["created"])}).to_json() | {
            k: r[k] for k in ("space", "proposer", "seed", "budget")} for r in rows]}
    info = h.get_run(run)
    candidates = [{**c, "created": _iso(c["created"])} for c in h.run_candidates(info["run_id"])]
    return {"run_id": info["run_id"], "task": info["task"], "status": info["status"], "created": _iso(info["created"]),
            "evaluations": info["evaluations"], "best_val_accuracy": info["best_val_accuracy"],
            "summary": info["summary"], "candidates": candidates,
            "insights": [{**i, "created": _iso(i["created"])} for i in h.insights(info["run_id"], latest=False)]}


def show(candidate_id: str, *, home: Path | str | None = None) -> dict[str, Any]:
    """``agent show ID --json``: the candidate with its spec, evaluations, curve and error."""
    from evaluator.spaces import SPACES, get_space

    h = _history(home)
    row = h.get_candidate(candidate_id)
    for key in ("created", "updated"):
        row[key] = _iso(row[key])
    for ev in row["evaluations"]:
        ev["created"] = _iso(ev["created"])
    if row["space"] in SPACES and row["canonical_key"] is not None:
        config = h.get_run(row["run_id"]).get("config") or {}  # a training task's shape: layers params and FLOPs
        shape = {"input_shape": tuple(config["input_shape"]), "num_classes": config["num_classes"]} \
            if config.get("input_shape") and config.get("num_classes") else {}
        row |= get_space(row["space"], **shape).extra_fields(row["spec"])
    row["llm_calls"] = [{**call, "created": _iso(call["created"])} for call in h.llm_calls(proposal=row["prompt_ref"])] \
        if row.get("prompt_ref") else []
    search_evals = [e for e in row["evaluations"] if e["purpose"] == "search"]
    row["curve"] = search_evals[-1]["curve"] if search_evals else []
    return row


def report(run: str = "latest", out: Path | str | None = None, home: Path | str | None = None) -> dict[str, Any]:
    """``agent report RUN --json``: write the run's HTML report (figures embedded) and its Markdown
    summary (default ``$AGENT_HOME/reports/<run>.html`` and ``.md``; ``out``: a folder or an
    ``.html`` path); returns ``{"run_id", "html", "markdown", "figures"}``."""
    from agent.reporting import write_report

    return write_report(_history(home), run, out=out)


def export(candidate: str, out: Path | str | None = None, onnx: bool = False, *,
           home: Path | str | None = None) -> dict[str, Any]:
    """``agent export ID --json``: write the candidate's standalone export (model.py, recipe.json,
    weights.pt where a final retraining kept them, model.onnx with ``onnx``) and return
    ``{"candidate_id", "out", "files", "params", "weights", "warnings", ...}``."""
    from agent.exporter import export_candidate

    return export_candidate(_history(home), candidate, out=out, onnx=onnx)


def sql(query: str, params: list[Any] | None = None, *, home: Path | str | None = None,
        max_rows: int | None = 1000, timeout: float | None = 30.0) -> dict[str, Any]:
    """``agent sql QUERY --json``: one read-only statement on the history, as ``{"columns", "rows",
    "truncated"}`` with JSON values (times as ISO 8601, JSON columns parsed); ``max_rows=None``: all.
    A query still running after ``timeout`` seconds is stopped (``HistoryError``); None: no limit."""
    from agent.store.json_values import json_rows

    result = _history(home).query_result(query, params, max_rows=max_rows, timeout=timeout)
    return {"columns": result.columns, "rows": json_rows(result.types, result.rows), "truncated": result.truncated}


def snapshots(*, home: Path | str | None = None) -> list[dict[str, Any]]:
    """``agent restore --list --json``: the home's snapshots of the history, newest first."""
    from agent.store.snapshots import snapshots as listed

    return [s.to_json() for s in listed(_history(home).home)]


def restore(snapshot: Path | str | None = None, *, home: Path | str | None = None) -> dict[str, Any]:
    """``agent restore [SNAPSHOT] --json``: put the newest snapshot that opens (or ``snapshot``)
    in place of the history; the replaced file is kept beside it. ``{"restored", "moved_aside"}``."""
    from agent.store.snapshots import restore_snapshot

    snap, aside = restore_snapshot(_history(home), snapshot)
    return {"restored": snap.to_json(), "moved_aside": None if aside is None else str(aside)}


def _iso(value: Any) -> str | None:
    """History times are naive UTC; show them as ISO 8601 with the zone."""
    return None if value is None else value.isoformat() + "Z"
