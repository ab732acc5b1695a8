"""`agent loop`: limits, --resume, and crash safety under SIGKILL.

The acceptance test kills a real training loop (digits, sandboxed workers) more than ten
times, at deterministic crash points inside the graph's nodes (AGENT_TEST_CRASH_AT) and at
seeded random moments, resumes it each time, and checks the history afterwards: every
candidate once, with a final status, one search evaluation each, one final report.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from agent.commands.loop import until_time
from agent.engine.crash import CrashPoints
from agent.store import History
from evaluator.errors import UserInputError
from tests.conftest import ROOT, run_cli, child_env

FINAL = {"ok", "invalid", "failed", "timeout", "stopped_early", "pruned"}


def _env(home: Path, crash: str | None = None) -> dict[str, str]:
    env = child_env()
    env["AGENT_HOME"] = str(home)
    if crash:
        env["AGENT_TEST_CRASH_AT"] = crash
    return env


def _loop(home: Path, *args: str, crash: str | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent", "loop", *args], cwd=ROOT, env=_env(home, crash),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _workers_of(home: Path) -> list[str]:
    """Live processes that belong to this home's jobs (a worker's scratch folder is under it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(home) in cmdline and "agent loop" not in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.mark.slow
def test_a_loop_killed_eleven_times_resumes_each_time_and_loses_or_repeats_nothing(tmp_path):
    home = tmp_path / "home"
    first = ("--task", "digits", "--proposer", "evolution", "--population", "3", "--tournament", "2", "--budget", "20",
             "--epochs", "1", "--workers", "2", "--final-seeds", "1", "--proxies", "none", "--seed", "3",
             "--recheck-every", "2", "--recheck-top", "1", "--recheck-seeds", "1")
    rng = random.Random(20261129)
    # Deterministic crash points in every node that writes (and the two that decide), with
    # seeded random kills between them; "final" comes last, once the budget is cut to what is done.
    plan = [("point", "evaluate:1"), ("random", None), ("point", "record:1"), ("random", None),
            ("point", "reflect:1"), ("random", None), ("point", "propose:2"), ("random", None),
            ("point", "decide:1:before"), ("random", None), ("point", "evaluate:2:before")]
    run_id, kills = None, 0
    for kind, where in plan:
        args = first if run_id is None else ("--resume", run_id)
        proc = _loop(home, *args, crash=where if kind == "point" else None)
        if kind == "random":
            delay = rng.uniform(0.5, 8.0)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == -signal.SIGKILL, f"{kind} {where}: rc {proc.returncode}\n{err}"
        kills += 1
        if run_id is None:
            run_id = History(home).list_runs()[0]["run_id"]
        # The kernel delivers the workers' parent-death signal and each sandbox (a held spare's
        # too) tears itself down: a few seconds at most on a loaded machine; an orphan stays.
        end = time.monotonic() + 15
        while _workers_of(home) and time.monotonic() < end:
            time.sleep(0.2)
        assert _workers_of(home) == [], f"workers outlived their coordinator after {kind} {where}"

    # Cut the budget to one more evaluation, crash right after the final report is recorded,
    # then finish: the final report must not be made twice.
    done = History(home).get_run(run_id)["evaluations"]
    assert 1 <= done < 20, "the crashes should leave the loop part-way"
    proc = _loop(home, "--resume", run_id, "--budget", str(done + 1), crash="final")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, err
    kills += 1
    out = run_cli("loop", "--resume", run_id, "--json", home=home, timeout=240)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert kills >= 10
    assert summary["status"] == "done" and summary["evaluations"] == done + 1 == summary["budget"]
    assert summary["best"]["test_accuracy"] is not None and "resumed (resume " in " ".join(summary["warnings"])

    listed = json.loads(run_cli("history", "--run", run_id, "--json", home=home).stdout)
    ids = [c["candidate_id"] for c in listed["candidates"]]
    assert len(ids) == len(set(ids)) and all(c["status"] in FINAL for c in listed["candidates"])
    assert sum(c["status"] != "invalid" for c in listed["candidates"]) == summary["evaluations"]
    runs = json.loads(run_cli("history", "--json", home=home).stdout)["runs"]
    assert [(r["run_id"], r["status"], r["evaluations"]) for r in runs] == [(run_id, "done", done + 1)]

    con = duckdb.connect(str(home / "history.duckdb"), read_only=True)  # the file is intact and consistent
    try:
        per = dict(con.execute("SELECT candidate_id, count(*) FROM evaluations WHERE purpose = 'search' "
                               "GROUP BY candidate_id").fetchall())
        assert all(per.get(c["candidate_id"]) == 1 for c in listed["candidates"] if c["status"] != "invalid"), per
        finals = con.execute("SELECT candidate_id FROM evaluations WHERE purpose = 'final'").fetchall()
        assert finals == [(summary["best"]["candidate_id"],)]
        resumed = con.execute("SELECT count(*) FROM events WHERE run_id = ? AND kind = 'run_resumed'",
                              [run_id]).fetchone()[0]
        # every crash point fired after its process had taken the run over; a random kill may
        # land before that (while it starts), which leaves no trace
        assert 7 <= resumed <= kills
        orphans = con.execute("SELECT count(*) FROM evaluations e LEFT JOIN candidates c USING (candidate_id) "
                              "WHERE c.candidate_id IS NULL").fetchone()[0]
        assert orphans == 0
    finally:
        con.close()


@pytest.mark.slow
def test_kills_between_commit_and_close_leave_a_wal_that_loses_nothing_and_keeps_the_indexes(tmp_path, tiny_tables):
    """SIGKILL inside the history, after a transaction's COMMIT and before the file is closed: the
    write is only in DuckDB's write-ahead log, which the next open replays (DuckDB versions since
    1.4 have had bugs where a replay into indexed tables made index lookups miss rows). After the
    resumes every candidate is there once, and lookups by key find what full scans find."""
    home = tmp_path / "home"
    first = ("--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--proposer", "evolution",
             "--budget", "30", "--seed", "1")
    run_id = None
    for nth in (3, 7, 12, 5, 20):
        proc = _loop(home, *(first if run_id is None else ("--resume", run_id)), crash=f"commit:{nth}")
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == -signal.SIGKILL, f"commit:{nth}: rc {proc.returncode}\n{err}"
        assert (home / "history.duckdb.wal").is_file(), f"commit:{nth} left no WAL: the kill missed the window"
        run_id = run_id or History(home).list_runs()[0]["run_id"]
    out = run_cli("loop", "--resume", run_id, "--json", home=home, timeout=240)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["evaluations"] == 30

    listed = json.loads(run_cli("history", "--run", run_id, "--json", home=home).stdout)["candidates"]
    assert len({c["candidate_id"] for c in listed}) == len(listed) and all(c["status"] in FINAL for c in listed)
    con = duckdb.connect(str(home / "history.duckdb"), read_only=True)
    try:
        scanned = dict(con.execute("SELECT candidate_id, count(*) FROM evaluations GROUP BY candidate_id").fetchall())
        for (cid,) in con.execute("SELECT candidate_id FROM candidates").fetchall():
            assert con.execute("SELECT count(*) FROM candidates WHERE candidate_id = ?", [cid]).fetchone()[0] == 1
            by_key = con.execute("SELECT count(*) FROM evaluations WHERE candidate_id = ?", [cid]).fetchone()[0]
            assert by_key == scanned.get(cid, 0), cid
        for (eid,) in con.execute("SELECT evaluation_id FROM evaluations").fetchall():
            assert con.execute("SELECT count(*) FROM evaluations WHERE evaluation_id = ?", [eid]).fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM evaluations WHERE purpose = 'search'").fetchone()[0] == 30
    finally:
        con.close()


def test_crash_points_are_parsed_and_bad_ones_named():
    points = CrashPoints.from_env({"AGENT_TEST_CRASH_AT": "record:2, propose:before,final"})
    assert points.points == {("record", 2, "after"), ("propose", 1, "before"), ("final", 1, "after")}
    assert CrashPoints.from_env({}) is None
    assert CrashPoints.from_env({"AGENT_TEST_CRASH_AT": "commit:3"}).points == {("commit", 3, "after")}
    with pytest.raises(UserInputError, match="unknown place 'recrod'"):
        CrashPoints.from_env({"AGENT_TEST_CRASH_AT": "recrod:1"})
    with pytest.raises(UserInputError, match="bad item"):
        CrashPoints.from_env({"AGENT_TEST_CRASH_AT": "record:0"})


def test_until_is_the_next_such_local_time():
    now = datetime(2026, 11, 29, 23, 0).astimezone()
    assert until_time("07:30", now) == now.replace(day=30, hour=7, minute=30).astimezone(timezone.utc)
    assert until_time("23:30", now) == now.replace(minute=30).astimezone(timezone.utc)
    with pytest.raises(UserInputError, match="not a time of day"):
        until_time("7.30pm", now)


@pytest.mark.slow
def test_resume_continues_a_crashed_table_loop_to_the_same_budget_and_refuses_what_would_change_the_run(
        tmp_path, tiny_tables):
    home = tmp_path / "home"
    common = ("--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--proposer", "evolution", "--seed", "1")
    proc = _loop(home, *common, "--budget", "12", crash="record:4")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    run = History(home).list_runs()[0]
    assert run["status"] == "running" and 0 < run["evaluations"] < 12

    bad = run_cli("loop", "--resume", run["run_id"], "--seed", "2", home=home)
    assert bad.returncode != 0 and "--seed 2 differs from the run's own (1)" in bad.stderr
    assert "may change" in bad.stderr
    out = run_cli("search", "--resume", run["run_id"], "--json", home=home)  # `agent search --resume` works too
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["evaluations"] == 12 and summary["counts"]["ok"] == 12 and summary["stop_reason"] == "budget reached"
    rows = History(home).run_candidates(run["run_id"])
    assert len({r["canonical_key"] for r in rows}) == len(rows) == 12

    more = run_cli("loop", "--resume", "latest", "--budget", "15", "--json", home=home)  # a done run, more budget
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["evaluations"] == 15 and len(History(home).run_candidates(run["run_id"])) == 15


@pytest.mark.slow
def test_a_live_run_cannot_be_resumed_by_a_second_process(tmp_path, tiny_tables):
    home = tmp_path / "home"
    proc = _loop(home, "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--proposer", "random",
                 "--hours", "1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (History(home).exists() and History(home).list_runs()):
            time.sleep(0.2)
        run = History(home).list_runs()[0]
        out = run_cli("loop", "--resume", run["run_id"], home=home)
        assert out.returncode != 0 and "is still running (pid" in out.stderr and f"kill {proc.pid}" in out.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    run = History(home).get_run(run["run_id"])
    assert run["status"] == "interrupted" and run["config"]["deadline"]
    assert run["budget"] == 1_000_000  # a loop bounded by time only


@pytest.mark.slow
def test_the_device_time_limit_stops_the_loop(tmp_path):
    from tests.evaluator.test_curves import cells, write_curves

    write_curves(tmp_path / "c.csv", cells(20), epochs=5)
    out = run_cli("loop", "--task", f"curves:{tmp_path / 'c.csv'}", "--proposer", "random", "--budget", "20",
                  "--max-device-seconds", "12", "--json", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    # each replayed candidate takes 5 device seconds (1 per epoch): the third one crosses 12
    assert summary["stop_reason"] == "device time limit reached (15 of 12 s)" and summary["evaluations"] == 3


@pytest.mark.slow
def test_rechecks_train_the_leader_again_with_another_seed_outside_the_budget_and_the_choice_uses_the_mean(tmp_path):
    home = tmp_path / "home"
    out = run_cli("search", "--task", "digits", "--proposer", "random", "--budget", "4", "--epochs", "1", "--workers", "2",
                  "--final-seeds", "1", "--proxies", "none", "--recheck-every", "2", "--recheck-top", "1",
                  "--recheck-seeds", "1", "--json", home=home, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["evaluations"] == 4 and sum(summary["counts"].values()) == 4  # rechecks are not evaluations
    (cid, checked), = summary["rechecks"].items()  # one round (after 2 evaluations; the one at 4 is the end)
    assert len(checked["val_accuracies"]) == 1
    h = History(home)
    evs = h.get_candidate(cid)["evaluations"]
    search = [e for e in evs if e["purpose"] == "search"]
    again = [e for e in evs if e["purpose"] == "recheck"]
    assert len(search) == 1 and len(again) == 1 and again[0]["metrics"]["seed"] == 1 and again[0]["test_accuracy"] is None
    assert checked["val_accuracies"] == [again[0]["val_accuracy"]]
    assert checked["val_accuracy_mean"] == pytest.approx((search[0]["val_accuracy"] + again[0]["val_accuracy"]) / 2)
    means = {t["candidate_id"]: (summary["rechecks"][t["candidate_id"]]["val_accuracy_mean"]
                                 if t["candidate_id"] in summary["rechecks"] else t["val_accuracy"])
             for t in summary["top"]}
    assert summary["best"]["candidate_id"] == max(means, key=means.get)
    assert h.get_candidate(cid)["status"] == "ok"  # a recheck never changes the candidate's own status
