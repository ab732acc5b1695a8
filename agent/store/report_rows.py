"""The reads behind ``agent report`` (agent.reporting.data): one query each, read-only, through
the same connection rules as every read of the history. Values come back as DuckDB gives them
(JSON columns as text); the report turns them into its own records."""

from __future__ import annotations

from typing import Any

from agent.store.history import History

_CANDIDATES = """
    WITH s AS (SELECT candidate_id, arg_max(evaluation_id, created) AS evaluation_id, sum(wall_seconds) AS seconds
               FROM evaluations WHERE run_id = ? AND purpose = 'search' GROUP BY candidate_id)
    SELECT c.candidate_id, c.seq, c.status, c.proposer, c.model, c.parents, c.spec, c.canonical_key, c.rationale,
           c.error, c.measurements, c.selection, c.updated, e.val_accuracy, e.metrics, e.fidelity, e.created AS finished,
           s.seconds, s.evaluation_id
    FROM candidates c LEFT JOIN s ON s.candidate_id = c.candidate_id
                      LEFT JOIN evaluations e ON e.evaluation_id = s.evaluation_id
    WHERE c.run_id = ? ORDER BY c.seq
"""


def _rows(history: History, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    columns, rows, _ = history.query(sql, params)
    return [dict(zip(columns, row)) for row in rows]


def candidate_rows(history: History, run_id: str) -> list[dict[str, Any]]:
    """Every candidate of the run (by seq) with its latest search evaluation and the seconds of all of them."""
    return _rows(history, _CANDIDATES, [run_id, run_id])


def curve_points(history: History, run_id: str, evaluation_ids: list[str]) -> list[dict[str, Any]]:
    """The validation curve points of these evaluations, by evaluation and epoch."""
    return _rows(history, "SELECT cu.evaluation_id, cu.epoch, cu.val_accuracy FROM curves cu "
                          "JOIN evaluations e ON e.evaluation_id = cu.evaluation_id "
                          "WHERE e.run_id = ? AND list_contains(?, cu.evaluation_id) AND cu.val_accuracy IS NOT NULL "
                          "ORDER BY cu.evaluation_id, cu.epoch", [run_id, evaluation_ids])


def stop_forecasts(history: History, run_id: str) -> list[dict[str, Any]]:
    """For each candidate the early-stop rule stopped, the forecast it stopped on (its latest)."""
    return _rows(history, "SELECT candidate_id, arg_max(final_epoch, epoch) AS final_epoch, arg_max(lower, epoch) AS "
                          "lower, arg_max(median, epoch) AS median, arg_max(upper, epoch) AS upper FROM forecasts "
                          "WHERE run_id = ? AND action = 'stop' GROUP BY candidate_id", [run_id])


def final_rows(history: History, run_id: str) -> list[dict[str, Any]]:
    """The run's ok final evaluations with a test accuracy, oldest first."""
    return _rows(history, "SELECT candidate_id, test_accuracy, metrics FROM evaluations WHERE run_id = ? AND "
                          "purpose = 'final' AND status = 'ok' AND test_accuracy IS NOT NULL ORDER BY created", [run_id])


def llm_models(history: History, run_id: str) -> list[dict[str, Any]]:
    """The backends and models the run's LLM calls went to, with their call counts."""
    return _rows(history, "SELECT backend, model, count(*) AS calls FROM llm_calls WHERE run_id = ? "
                          "GROUP BY backend, model ORDER BY calls DESC, model", [run_id])
