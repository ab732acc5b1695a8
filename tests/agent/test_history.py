"""The DuckDB history: schema declared once, versioned upgrades, short transactions."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

import agent.store.database as store
from agent.store import History, HistoryError
from agent.store.schema import SCHEMA_VERSION, TABLES, Migration
from evaluator.errors import NotFoundError
from agent.records import LLMCall, LLMOutcome, Run, RunStatus
from evaluator.records import Candidate, CurvePoint, Evaluation, Purpose, Status
from tests.conftest import ROOT

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _load_sql(path: Path, db: Path) -> None:
    con = duckdb.connect(str(db))
    try:
        for stmt in path.read_text().split(";\n"):
            body = "\n".join(line for line in stmt.splitlines() if not line.startswith("--")).strip()
            if body:
                con.execute(body)
    finally:
        con.close()


def _columns(db: Path) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return out


def _declared() -> dict[str, list[tuple[str, str]]]:
    return {t.name: [(c.name, c.type) for c in t.columns] for t in TABLES}


def _run(run_id: str = "r1", budget: int = 3) -> Run:
    return Run(run_id=run_id, task="nb201-cifar10", space="nb201", proposer="random", seed=0, budget=budget)


def _candidate(run_id: str, seq: int, status: Status = Status.QUEUED) -> Candidate:
    return Candidate(candidate_id=f"{run_id}-c{seq:04d}", run_id=run_id, seq=seq, space="nb201",
                     spec={"edge_1_0": "none"}, canonical_key=f"key{seq}", proposer="random", status=status)


def test_new_database_has_the_declared_schema(tmp_path):
    h = History(tmp_path)
    h.create_run(_run())
    assert h.schema_version() == SCHEMA_VERSION
    assert _columns(h.path) == _declared()


def test_version_1_database_upgrades_and_keeps_every_row(tmp_path):
    _load_sql(ASSETS / "history_v1.sql", tmp_path / store.DB_NAME)
    h = History(tmp_path)
    runs = h.list_runs()
    assert [r["run_id"] for r in runs] == ["20261122-120000-aaaaaa"]
    assert runs[0]["evaluations"] == 1  # the invalid candidate does not count
    assert runs[0]["best_val_accuracy"] == pytest.approx(0.85)
    cand = h.get_candidate("20261122-120000-aaaaaa-c0000")
    assert [e["purpose"] for e in cand["evaluations"]] == ["search", "final"]
    assert cand["evaluations"][0]["curve"] == [{"epoch": 12.0, "val_accuracy": 0.85, "train_loss": None, "val_loss": None,
                                                  "train_accuracy": None}]
    assert h.schema_version() == SCHEMA_VERSION
    assert _columns(h.path) == _declared()
    h.add_event("20261122-120000-aaaaaa", "note", {"ok": True})  # still writable after the upgrade
    assert h.events("20261122-120000-aaaaaa")[-1]["kind"] == "note"


def test_version_2_database_upgrades_with_its_llm_calls_and_takes_insights(tmp_path):
    _load_sql(ASSETS / "history_v2.sql", tmp_path / store.DB_NAME)
    h = History(tmp_path)
    run = "20261122-120000-aaaaaa"
    assert [c["call_id"] for c in h.llm_calls(run)] == [f"{run}-pabc-a0"]
    assert h.llm_totals(run)["calls"] == 1 and h.llm_totals(run)["valid_rate"] == 1.0
    assert h.schema_version() == SCHEMA_VERSION and _columns(h.path) == _declared()
    assert h.insights(run) == []
    h.add_insights(run, f"{run}-r0010", ["convs beat pooling", "skips help"], after_evaluations=10)
    h.add_insights(run, f"{run}-r0020", ["3x3 everywhere"], after_evaluations=20, call_id=f"{run}-r0020")
    assert [(i["text"], i["after_evaluations"]) for i in h.insights(run)] == [("3x3 everywhere", 20)]
    assert [i["text"] for i in h.insights(run, latest=False)] == ["convs beat pooling", "skips help", "3x3 everywhere"]
    assert h.insights("another-run") == []


def test_version_3_database_upgrades_with_its_insights_and_takes_forecasts(tmp_path):
    from agent.records import ForecastRecord

    _load_sql(ASSETS / "history_v3.sql", tmp_path / store.DB_NAME)
    h = History(tmp_path)
    run = "20261122-120000-aaaaaa"
    assert [i["text"] for i in h.insights(run)] == ["convolutions beat pooling"]
    assert h.schema_version() == SCHEMA_VERSION and _columns(h.path) == _declared()
    cand = h.get_candidate(f"{run}-c0000")
    assert cand["evaluations"][0]["curve"][0]["train_accuracy"] is None and cand["forecasts"] == []
    rows = [ForecastRecord(run_id=run, candidate_id=f"{run}-c0000", epoch=e, final_epoch=12, method="run-calibrated",
                           reference_curves=3, last_value=0.5, mean=0.6, lower=0.55, median=0.6, upper=0.65,
                           incumbent=0.9 if e > 5 else None, p_beat=0.01, action="stop" if e > 5 else "continue",
                           reason="r") for e in (5.0, 6.0)]
    h.add_forecasts(rows)
    got = h.get_candidate(f"{run}-c0000")["forecasts"]
    assert [(f["epoch"], f["action"], f["incumbent"]) for f in got] == [(5.0, "continue", None), (6.0, "stop", 0.9)]
    assert len(h.forecasts(run)) == 2 and h.forecasts("another") == []
    h.add_evaluations(run, [Evaluation(candidate_id=f"{run}-c0000", status=Status.OK, val_accuracy=0.8,
                                       curve=[CurvePoint(epoch=1, val_accuracy=0.8, train_accuracy=0.75)])],
                      update_status=False)
    curves = [e["curve"] for e in h.get_candidate(f"{run}-c0000")["evaluations"]]
    assert {"epoch": 1.0, "val_accuracy": 0.8, "train_loss": None, "val_loss": None, "train_accuracy": 0.75} in sum(curves, [])


def test_version_4_database_upgrades_with_its_forecasts_and_takes_measurements(tmp_path):
    _load_sql(ASSETS / "history_v4.sql", tmp_path / store.DB_NAME)
    h = History(tmp_path)
    run = "20261122-120000-aaaaaa"
    stopped = h.get_candidate(f"{run}-c0002")
    assert stopped["status"] == "stopped_early" and stopped["measurements"] == {}
    assert [(f["epoch"], f["action"]) for f in stopped["forecasts"]] == [(1.0, "stop")]
    assert stopped["evaluations"][0]["curve"][0]["train_accuracy"] == 0.45
    assert h.schema_version() == SCHEMA_VERSION and _columns(h.path) == _declared()
    measured = Candidate(candidate_id=f"{run}-c0003", run_id=run, seq=3, space="nb201", spec={"a": 1}, canonical_key="k3",
                         proposer="evolution", status=Status.INVALID, error="batch-1 latency 2.1 ms exceeds --max-latency-ms 1",
                         measurements={"params": 1200, "flops": 34000, "latency_ms": 2.1, "proxy_synflow": 3.5})
    h.add_candidates([measured])
    rows = {r["candidate_id"]: r for r in h.run_candidates(run)}
    assert rows[f"{run}-c0003"]["measurements"] == measured.measurements
    assert rows[f"{run}-c0000"]["measurements"] == {}
    assert h.get_candidate(f"{run}-c0003")["measurements"]["latency_ms"] == 2.1


def test_migrations_apply_in_order_and_keep_data(tmp_path, monkeypatch):
    """The upgrade machinery itself: a pretend version 2 adds a column to an existing file."""
    h = History(tmp_path)
    h.create_run(_run())
    step = Migration(SCHEMA_VERSION + 1, "add runs.note", ("ALTER TABLE runs ADD COLUMN note VARCHAR DEFAULT 'n/a'",))
    monkeypatch.setattr(store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS + (step,))
    h2 = History(tmp_path)
    assert h2.schema_version() == SCHEMA_VERSION
    assert [r["run_id"] for r in h2.list_runs()] == ["r1"]
    assert h2.schema_version() == SCHEMA_VERSION + 1
    assert ("note", "VARCHAR") in _columns(h2.path)["runs"]


def test_database_newer_than_the_code_is_refused(tmp_path):
    h = History(tmp_path)
    h.create_run(_run())
    con = duckdb.connect(str(h.path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(HistoryError, match="schema version 99") as info:
        History(tmp_path).list_runs()
    assert "upgrade archagent" in info.value.hint


def test_foreign_duckdb_file_is_refused_and_left_alone(tmp_path):
    con = duckdb.connect(str(tmp_path / store.DB_NAME))
    con.execute("CREATE TABLE mine (x INT)")
    con.execute("INSERT INTO mine VALUES (7)")
    con.close()
    with pytest.raises(HistoryError, match="not an archagent history"):
        History(tmp_path).create_run(_run())
    con = duckdb.connect(str(tmp_path / store.DB_NAME), read_only=True)
    assert con.execute("SELECT * FROM mine").fetchall() == [(7,)]
    con.close()


def test_round_trip_of_run_candidates_evaluations(tmp_path):
    h = History(tmp_path)
    h.create_run(_run("r1"))
    h.add_candidates([_candidate("r1", 0), _candidate("r1", 1)],
                     events=[{"run_id": "r1", "kind": "duplicate_skipped", "payload": {"canonical_key": "k"}}])
    h.set_status(["r1-c0000", "r1-c0001"], Status.RUNNING)
    h.add_evaluations("r1", [
        Evaluation(candidate_id="r1-c0000", status=Status.OK, fidelity=12, val_accuracy=0.5,
                   curve=[CurvePoint(epoch=6, val_accuracy=0.4), CurvePoint(epoch=12, val_accuracy=0.5)]),
        Evaluation(candidate_id="r1-c0001", status=Status.FAILED, error="NaN loss at epoch 3"),
    ])
    h.add_evaluations("r1", [Evaluation(candidate_id="r1-c0000", purpose=Purpose.FINAL, status=Status.OK,
                                        val_accuracy=0.5, test_accuracy=0.6)], update_status=False)
    h.finish_run("r1", RunStatus.DONE, {"best": "r1-c0000"})

    rows = {c["candidate_id"]: c for c in h.run_candidates("r1")}
    assert rows["r1-c0000"]["status"] == "ok" and rows["r1-c0000"]["test_accuracy"] == 0.6
    assert rows["r1-c0001"]["status"] == "failed" and rows["r1-c0001"]["error"] == "NaN loss at epoch 3"
    run = h.get_run("r1")
    assert run["status"] == "done" and run["evaluations"] == 2 and run["summary"] == {"best": "r1-c0000"}
    cand = h.get_candidate("r1-c0000")
    assert [p["epoch"] for p in cand["evaluations"][0]["curve"]] == [6.0, 12.0]
    kinds = [e["kind"] for e in h.events("r1")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "duplicate_skipped" in kinds


def test_a_candidate_with_several_final_seeds_is_listed_once(tmp_path):
    h = History(tmp_path)
    h.create_run(_run("r1"))
    h.add_candidates([_candidate("r1", 0, Status.RUNNING), _candidate("r1", 1, Status.RUNNING)])
    h.add_evaluations("r1", [Evaluation(candidate_id="r1-c0000", status=Status.OK, val_accuracy=0.5),
                             Evaluation(candidate_id="r1-c0001", status=Status.OK, val_accuracy=0.4)])
    h.add_evaluations("r1", [Evaluation(candidate_id="r1-c0000", purpose=Purpose.FINAL, status=Status.OK,
                                        val_accuracy=0.5, test_accuracy=acc) for acc in (0.6, 0.7, 0.8)],
                      update_status=False)
    rows = h.run_candidates("r1")
    assert [r["candidate_id"] for r in rows] == ["r1-c0000", "r1-c0001"]
    assert rows[0]["test_accuracy"] == pytest.approx(0.7) and rows[0]["final_runs"] == 3
    (run,) = h.list_runs()
    assert run["evaluations"] == 2 and run["best_val_accuracy"] == 0.5


def test_stopping_in_mid_evaluation_requeues_the_running_candidates(tmp_path):
    h = History(tmp_path)
    h.create_run(_run("r1"))
    h.add_candidates([_candidate("r1", 0, Status.RUNNING), _candidate("r1", 1, Status.RUNNING)])
    h.add_evaluations("r1", [Evaluation(candidate_id="r1-c0000", status=Status.OK, val_accuracy=0.5)])
    h.finish_run("r1", RunStatus.INTERRUPTED, None)
    assert [r["status"] for r in h.run_candidates("r1")] == ["ok", "queued"]
    assert h.events("r1")[-1]["payload"] == {"status": "interrupted", "requeued": ["r1-c0001"]}


def test_failed_write_rolls_back_the_whole_transaction(tmp_path):
    h = History(tmp_path)
    h.create_run(_run("r1"))
    with pytest.raises(duckdb.ConstraintException):
        h.add_candidates([_candidate("r1", 0), _candidate("r1", 0)])  # same id twice
    assert h.run_candidates("r1") == []


def test_home_that_is_a_file_gives_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(HistoryError, match="cannot create the home directory") as info:
        History(tmp_path / "file").create_run(_run())
    assert "--home" in info.value.hint


def test_unknown_ids_and_empty_home(tmp_path):
    h = History(tmp_path / "nothing-here")
    assert h.list_runs() == []
    assert not h.path.exists()  # reading creates nothing
    with pytest.raises(NotFoundError, match="no candidate 'x'"):
        h.get_candidate("x")
    with pytest.raises(NotFoundError, match="no runs yet"):
        h.resolve_run_id("latest")
    h.create_run(_run("r1"))
    h.create_run(_run("r2"))
    assert h.resolve_run_id("latest") in {"r1", "r2"}
    with pytest.raises(NotFoundError, match="no run 'r3'") as info:
        h.get_run("r3")
    assert "agent history" in info.value.hint


def _python(code: str, *args: str, **popen) -> subprocess.Popen:
    """Another process running ``code`` with this checkout's packages. A plain child, not
    multiprocessing: that starts a resource tracker process that outlives the test (it stays a
    child of pytest until the session ends)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, **popen)


HOLD_OPEN = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("opened", flush=True)
sys.stdin.readline()  # until the test lets go (or ends: its end closes the pipe)
con.close()
"""


def test_lock_held_too_long_gives_a_clear_error(tmp_path):
    h = History(tmp_path, lock_timeout=0.3)
    h.create_run(_run("r1"))
    holder = _python(HOLD_OPEN, str(h.path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "opened", "the child never opened the database"
        with pytest.raises(HistoryError, match="stayed locked") as info:
            History(tmp_path, lock_timeout=0.3).list_runs()
        assert "lock_timeout" in info.value.hint
    finally:
        holder.stdin.close()  # the child closes the database and exits
        try:
            holder.wait(timeout=30)
        finally:
            holder.kill()
    assert History(tmp_path).list_runs()[0]["run_id"] == "r1"  # usable again once released


HOLD_OURS = """
import sys
from pathlib import Path
from agent.store import History
with History(Path(sys.argv[1]))._connection(read_only=False):
    print("opened", flush=True)
    sys.stdin.readline()
"""


def test_a_writer_waits_for_our_lock_and_says_so_when_it_is_held_too_long(tmp_path):
    h = History(tmp_path, lock_timeout=0.3)
    h.create_run(_run("r1"))
    holder = _python(HOLD_OURS, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "opened", "the child never took the history"
        with pytest.raises(HistoryError, match=r"stayed locked .*history\.duckdb\.lock is held") as info:
            History(tmp_path, lock_timeout=0.3).create_run(_run("r2"))
        assert "lock_timeout" in info.value.hint
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        finally:
            holder.kill()
    History(tmp_path).create_run(_run("r2"))  # the kernel let go with the process
    assert {r["run_id"] for r in History(tmp_path).list_runs()} == {"r1", "r2"}


def test_a_damaged_file_is_reported_at_once_not_waited_on_as_a_lock(tmp_path):
    """A path with "blocks" in it made DuckDB's "not a valid database file" look like a lock
    conflict (the old test matched "lock" anywhere), which was retried for lock_timeout."""
    home = tmp_path / "blocks"
    home.mkdir()
    (home / "history.duckdb").write_bytes(b"\x00garbage" * 10_000)
    with pytest.raises(HistoryError, match="is damaged") as info:
        History(home, lock_timeout=2).list_runs()
    assert "stayed locked" not in str(info.value) and "agent restore" in info.value.hint


def _writer(home: str, run_id: str, n: int) -> None:
    h = History(Path(home))
    h.create_run(_run(run_id, budget=n))
    for i in range(n):
        h.add_candidates([_candidate(run_id, i)])
        h.add_evaluations(run_id, [Evaluation(candidate_id=f"{run_id}-c{i:04d}", status=Status.OK, val_accuracy=0.5)])


WRITER = "import sys\nfrom tests.agent.test_history import _writer\n_writer(sys.argv[1], sys.argv[2], int(sys.argv[3]))"


@pytest.mark.slow
def test_two_writer_processes_and_a_reader_lose_nothing(tmp_path):
    procs = [_python(WRITER, str(tmp_path), f"w{i}", "30") for i in range(2)]
    reads = 0
    h = History(tmp_path)
    try:
        while any(p.poll() is None for p in procs):
            h.list_runs()
            reads += 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.wait() for p in procs] == [0, 0]
    assert reads > 0
    for run_id in ("w0", "w1"):
        rows = h.run_candidates(run_id)
        assert len(rows) == 30 and all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_a_reader_thread_beside_a_writer_thread_of_one_process_loses_nothing(tmp_path):
    """A search's proposal thread reads the history (prompts) while the graph's thread writes:
    DuckDB refuses a read-only connection beside a read-write one of the same process, so the
    threads take turns."""
    h = History(tmp_path)
    h.create_run(Run(run_id="r1", task="t", space="nb201", proposer="llm", seed=0, budget=100))
    failures, reads, done = [], [], threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                reads.append(len(h.prompt_history("r1")["best"]))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            h.add_candidates([_candidate("r1", i)])
            h.add_evaluations("r1", [Evaluation(candidate_id=f"r1-c{i:04d}", status=Status.OK, val_accuracy=0.5)])
    finally:
        done.set()
        reader.join()
    assert failures == [] and reads and len(h.run_candidates("r1")) == 40


def _call(i: int, proposal: str | None, attempt: int, outcome: LLMOutcome, **kw) -> LLMCall:
    return LLMCall(call_id=f"call{i}", run_id="r1", proposal=proposal, attempt=attempt, backend="local", model="qwen",
                   template="repair.j2" if attempt else "propose.j2",
                   messages=[{"role": "user", "content": f"prompt {i} \u00e9\n{{}}"}], response=f'{{"reply": {i}}}',
                   tokens_in=100, tokens_out=20, seconds=1.5, outcome=outcome, **kw)


def test_llm_calls_are_kept_exactly_and_totalled(tmp_path):
    h = History(tmp_path)
    h.create_run(_run("r1"))
    assert h.llm_totals("r1") == {"calls": 0, "schema_valid_rate": None, "valid_rate": None, "repairs": 0,
                                  "tokens_in": 0, "tokens_out": 0, "seconds": 0.0, "cost": None}
    h.add_llm_calls([
        _call(0, "p0", 0, LLMOutcome.SCHEMA_INVALID, error="no JSON object"),
        _call(1, "p0", 1, LLMOutcome.SPEC_INVALID),
        _call(2, "p0", 2, LLMOutcome.VALID, candidate_id="r1-c0000", cost=0.001),
        _call(3, "p1", 0, LLMOutcome.VALID, candidate_id="r1-c0001"),
        _call(4, "p2", 0, LLMOutcome.SPEC_INVALID),
        _call(5, "p3", 0, LLMOutcome.FAILED, error="endpoint down"),
        _call(6, None, 0, LLMOutcome.TEXT),
    ])
    totals = h.llm_totals("r1")
    assert totals["calls"] == 7 and totals["repairs"] == 2 and totals["tokens_in"] == 700 and totals["seconds"] == 10.5
    assert totals["schema_valid_rate"] == pytest.approx(4 / 5)  # 5 proposal replies, 4 parsed
    assert totals["valid_rate"] == pytest.approx(2 / 4)  # p0 (after repairs) and p1 of p0..p3
    assert totals["cost"] == pytest.approx(0.001)
    (first,) = [c for c in h.llm_calls("r1") if c["call_id"] == "call0"]
    assert first["messages"] == [{"role": "user", "content": "prompt 0 \u00e9\n{}"}] and first["response"] == '{"reply": 0}'
    assert [c["call_id"] for c in h.llm_calls(candidate_id="r1-c0000")] == ["call2"]


APPENDER = """
import sys
from pathlib import Path
from tests.agent.test_history import _candidate
from agent.store import History
h = History(Path(sys.argv[1]))
for _ in range(int(sys.argv[3])):
    c = h.append_candidate("r1", lambda seq: _candidate("r1", seq).model_copy(update={"canonical_key": sys.argv[2] + str(seq)}))
    print(c.seq, flush=True)
"""


@pytest.mark.slow
def test_processes_that_append_to_one_run_at_once_get_different_numbers(tmp_path):
    """Chat used to number its candidate from what it had read before: a resumed loop adding one
    meanwhile made two candidates with one number."""
    h = History(tmp_path)
    h.create_run(_run())
    h.add_candidates([_candidate("r1", 0)])
    h.finish_run("r1", RunStatus.INTERRUPTED, None)
    procs = [_python(APPENDER, str(tmp_path), f"p{k}-", "12", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k in range(3)]
    given = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        given += [int(n) for n in out.split()]
    assert sorted(given) == list(range(1, 37))
    assert [c["seq"] for c in History(tmp_path).run_candidates("r1")] == list(range(37))


HOLDS_THE_RUN = """
import sys, time
from pathlib import Path
from tests.agent.test_history import _run
from agent.store import History
History(Path(sys.argv[1])).create_run(_run("busy"))
print("running", flush=True)
sys.stdin.readline()
"""


def test_appending_to_a_run_another_live_process_searches_is_refused(tmp_path):
    from agent.store.history import RunBusyError

    holder = _python(HOLDS_THE_RUN, str(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "running"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
            History(tmp_path).append_candidate("busy", lambda seq: _candidate("busy", seq))
        with pytest.raises(ValueError, match="must use the run and the number it is given"):
            History(tmp_path).create_run(_run("mine"))
            History(tmp_path).append_candidate("mine", lambda seq: _candidate("mine", seq + 1))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert History(tmp_path).run_candidates("busy") == []


def test_version_5_database_upgrades_with_its_measurements_and_takes_selections(tmp_path):
    _load_sql(ASSETS / "history_v5.sql", tmp_path / store.DB_NAME)
    h = History(tmp_path)
    run = "20261122-120000-aaaaaa"
    measured = h.get_candidate(f"{run}-c0003")
    assert measured["measurements"]["proxy_synflow"] == 3.5 and measured["selection"] is None
    assert h.schema_version() == SCHEMA_VERSION and _columns(h.path) == _declared()
    why = {"rule": "expected improvement", "operator": "mutation", "pool": 256, "evaluations": 4,
           "predicted_val_accuracy": 0.84, "interval80": [0.8, 0.86], "acquisition": 0.12}
    picked = Candidate(candidate_id=f"{run}-c0004", run_id=run, seq=4, space="nb201", spec={"a": 1}, canonical_key="k4",
                       proposer="portfolio:mutation", selection=why)
    h.add_candidates([picked])
    assert h.get_candidate(f"{run}-c0004")["selection"] == why
    rows = {r["candidate_id"]: r for r in h.run_candidates(run)}
    assert rows[f"{run}-c0004"]["selection"] == why and rows[f"{run}-c0000"]["selection"] is None
    candidates, _ = h.run_records(run)
    assert [c.selection for c in candidates if c.candidate_id == f"{run}-c0004"] == [why]
