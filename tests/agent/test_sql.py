"""`agent sql`: read-only queries on the history as JSON, CSV or a table; everything that would change
the history or reach outside it is refused, and the file is unchanged afterwards."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timezone

import pytest

import agent
from agent.store import History, HistoryError
from evaluator.errors import NotFoundError
from agent.records import Run
from evaluator.records import Candidate, Evaluation, Purpose, Status
from tests.conftest import run_cli

RUN = "20260102-030405-abcdef"


@pytest.fixture
def home(tmp_path):
    """A history with one run, three candidates and their evaluations."""
    home = tmp_path / "home"
    h = History(home)
    h.create_run(Run(run_id=RUN, task="digits", space="layers", proposer="random", seed=0, budget=3,
                     config={"epochs": 2}, created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)))
    spec = {"stages": [{"channels": 16}]}
    h.add_candidates([Candidate(candidate_id=f"{RUN}-c000{i}", run_id=RUN, seq=i, space="layers", spec=spec,
                                canonical_key=f"k{i}", proposer="random", status=Status.RUNNING) for i in range(3)])
    h.add_evaluations(RUN, [Evaluation(candidate_id=f"{RUN}-c000{i}", status=Status.OK, fidelity=2.0,
                                       val_accuracy=0.5 + i / 10, metrics={"params": 1000 * (i + 1), "seed": 0})
                            for i in range(3)])
    h.add_evaluations(RUN, [Evaluation(candidate_id=f"{RUN}-c0002", purpose=Purpose.FINAL, status=Status.OK,
                                       test_accuracy=0.75, metrics={"seed": 0})], update_status=False)
    return home


def counts(home) -> dict[str, int]:
    return {t: History(home).query(f"SELECT count(*) FROM {t}")[1][0][0] for t in ("runs", "candidates", "evaluations")}


def test_select_prints_json_with_json_safe_values(home):
    out = run_cli("sql", "SELECT candidate_id, status, val_accuracy, metrics, created, 1.5 AS d, [1, 2] AS l "
                         "FROM evaluations WHERE purpose = 'search' ORDER BY candidate_id", "--json", home=home)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["columns"] == ["candidate_id", "status", "val_accuracy", "metrics", "created", "d", "l"]
    assert result["truncated"] is False and len(result["rows"]) == 3
    first = result["rows"][0]
    assert first[:3] == [f"{RUN}-c0000", "ok", 0.5]
    assert first[3] == {"params": 1000, "seed": 0}  # a JSON column, parsed
    assert datetime.fromisoformat(first[4].replace("Z", "+00:00")).tzinfo is not None and first[4].endswith("Z")
    assert first[5:] == [1.5, [1, 2]]
    # the Python API returns the same object
    assert agent.sql("SELECT count(*) AS n FROM candidates", home=home) == {"columns": ["n"], "rows": [[3]],
                                                                            "truncated": False}


def test_csv_and_max_rows(home):
    out = run_cli("sql", "SELECT candidate_id, metrics FROM evaluations WHERE purpose = 'search' ORDER BY candidate_id",
                  "--csv", "--max-rows", "2", home=home)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["candidate_id", "metrics"] and len(rows) == 3  # the header and 2 of 3 rows
    assert rows[1][0] == f"{RUN}-c0000" and json.loads(rows[1][1]) == {"params": 1000, "seed": 0}
    assert "only the first 2 rows are shown" in out.stderr and "--max-rows" in out.stderr
    table = run_cli("sql", "SELECT candidate_id, status FROM candidates ORDER BY seq", home=home)
    assert table.returncode == 0 and f"{RUN}-c0002" in table.stdout and "3 rows" in table.stdout
    assert agent.sql("SELECT * FROM candidates", home=home, max_rows=1)["truncated"] is True


REFUSED = (
    "DELETE FROM candidates",
    "INSERT INTO meta VALUES ('owner', 'me')",
    "UPDATE runs SET status = 'failed'",
    "DROP TABLE evaluations",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "COPY candidates TO '{tmp}/stolen.csv'",
    "SELECT * FROM read_csv('{tmp}/secret.csv')",
    "SET enable_external_access = true",
    "SELECT 1; DELETE FROM runs",
)


def test_statements_that_write_or_reach_outside_are_refused_and_change_nothing(home, tmp_path):
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    before, digest = counts(home), hashlib.sha256((home / "history.duckdb").read_bytes()).hexdigest()
    for statement in REFUSED:
        with pytest.raises(HistoryError) as err:
            agent.sql(statement.format(tmp=tmp_path), home=home)
        assert "read-only" in err.value.hint and "candidates" in err.value.hint, statement
    assert counts(home) == before and hashlib.sha256((home / "history.duckdb").read_bytes()).hexdigest() == digest
    assert not (tmp_path / "stolen.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_the_cli_refuses_with_a_message_and_a_non_zero_exit(home):
    before = counts(home)
    out = run_cli("sql", "DELETE FROM candidates", home=home)
    assert out.returncode == 1 and out.stdout == ""
    assert 'error: the query failed' in out.stderr and "DELETE" in out.stderr and "read-only" in out.stderr
    assert counts(home) == before


def test_no_history_says_where_it_looked(tmp_path):
    out = run_cli("sql", "SELECT 1", home=tmp_path / "nothing")
    assert out.returncode == 2 and f"no history yet at {tmp_path / 'nothing' / 'history.duckdb'}" in out.stderr
    assert "run a search first" in out.stderr
    with pytest.raises(NotFoundError):
        agent.sql("SELECT 1", home=tmp_path / "nothing")


@pytest.mark.parametrize("statement", ["COMMIT", "begin;", "ROLLBACK", "BEGIN TRANSACTION"])
def test_transaction_statements_are_refused_by_name(home, statement):
    """COMMIT and ROLLBACK used to end in an internal error (no transaction active)."""
    out = run_cli("sql", statement, home=home)
    assert out.returncode == 1 and "internal error" not in out.stderr
    assert "is a transaction statement, not a query" in out.stderr and "hint: give a SELECT" in out.stderr


def test_a_query_past_its_time_limit_is_stopped_and_lets_the_writers_in(home):
    endless = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"
    with pytest.raises(HistoryError, match="ran past its time limit of 0.5 s") as info:
        agent.sql(endless, home=home, timeout=0.5)
    assert "--timeout" in info.value.hint
    out = run_cli("sql", "--timeout", "0.5", endless, home=home)
    assert out.returncode == 1 and "ran past its time limit of 0.5 s" in out.stderr
    History(home, lock_timeout=5).set_status([f"{RUN}-c0000"], Status.OK)  # the file is free again
    with pytest.raises(ValueError, match="timeout=0"):
        agent.sql("SELECT 1", home=home, timeout=0)
