"""The history keeps every acknowledged write when processes open it at once (docs/contracts.md).

DuckDB 2.0.1 reads a database file's header before it takes its file lock and works from those
bytes afterwards: a process that opens the file while another commits and closes (a close
checkpoints into the file) overwrites the committed transaction with its own close, and many
such processes corrupt the file (../shared/repro/duckdb-header-race). The history holds a lock of
its own across connect and close (agent/store/database.py). These tests widen DuckDB's window
with an LD_PRELOAD shim (tests/agent/shims/delay_duckdb_lock.c, built here with the C compiler)
and check that nothing is lost: through plain duckdb the same scenario loses the row, which
shows the shim really opens the window.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from agent.store import History
from tests.conftest import ROOT, child_env

SHIM_SOURCE = Path(__file__).parent / "shims" / "delay_duckdb_lock.c"


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the LD_PRELOAD shim: apt-get install gcc")
    out = tmp_path_factory.mktemp("shim") / "delay_duckdb_lock.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True)
    return out


def _env(shim: Path, folder: Path, **settings: str) -> dict[str, str]:
    env = child_env()
    env.update(LD_PRELOAD=str(shim), SHIM_FLAG=str(folder / "shim_on"), SHIM_MARK=str(folder / "in_window"),
               PYTHONPATH=str(ROOT), **settings)
    return env


def _wait_for(path: Path, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size > 0:
            return True
        time.sleep(0.01)
    return False


# A commits a row and keeps the file open until told to close; B, held by the shim between the
# header read and the lock, writes its row meanwhile.
HOLDER = {
    "duckdb": r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO meta VALUES ('A', 'a')")
print("committed", flush=True); sys.stdin.readline(); con.close(); print("closed", flush=True)
""",
    "history": r"""
import sys
from pathlib import Path
from agent.store import History
h = History(Path(sys.argv[1]).parent)
with h._connection(read_only=False) as con:
    con.execute("INSERT INTO meta VALUES ('A', 'a')")
    print("committed", flush=True); sys.stdin.readline()
print("closed", flush=True)
""",
}
WRITER = {
    "duckdb": r"""
import sys, time, duckdb
print("ready", flush=True); sys.stdin.readline()
while True:
    try:
        con = duckdb.connect(sys.argv[1]); break
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower(): raise
        time.sleep(0.01)
con.execute("INSERT INTO meta VALUES ('B', 'b')"); con.close(); print("done", flush=True)
""",
    "history": r"""
import sys
from pathlib import Path
from agent.store import History
h = History(Path(sys.argv[1]).parent)
h._ensure_schema()  # the schema check's read happens before the shim is on
print("ready", flush=True); sys.stdin.readline()
with h._transaction() as con:
    con.execute("INSERT INTO meta VALUES ('B', 'b')")
print("done", flush=True)
""",
}


def _race(shim: Path, folder: Path, through: str) -> dict[str, str]:
    """A holds the file with its row committed; B starts to write (and, where nothing stops it,
    waits in DuckDB's window); A closes; B finishes. The keys of ``meta`` afterwards."""
    db = folder / "history.duckdb"
    env = _env(shim, folder, SHIM_DELAY_MS="1000")
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    writer = subprocess.Popen([sys.executable, "-c", WRITER[through], str(db)], **pipes)
    assert writer.stdout.readline().strip() == "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER[through], str(db)], **pipes)
    assert holder.stdout.readline().strip() == "committed"
    (folder / "shim_on").touch()
    writer.stdin.write("go\n")
    writer.stdin.flush()
    in_window = _wait_for(folder / "in_window", 1.0)  # B reaches DuckDB's lock only where ours lets it
    holder.stdin.write("close\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "closed"
    assert writer.stdout.readline().strip() == "done"
    assert holder.wait(10) == 0 and writer.wait(10) == 0
    (folder / "shim_on").unlink()
    if through == "duckdb":
        assert in_window, "the shim never held plain duckdb in the window"
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta WHERE key IN ('A', 'B')").fetchall())
    finally:
        con.close()


@pytest.mark.slow
def test_a_write_beside_a_closing_writer_is_kept_where_plain_duckdb_loses_it(shim, tmp_path):
    plain = tmp_path / "plain"
    History(plain)._ensure_schema()
    assert _race(shim, plain, "duckdb") == {"B": "b"}, "plain duckdb kept both rows: the shim opened no window"

    ours = tmp_path / "ours"
    History(ours)._ensure_schema()
    assert _race(shim, ours, "history") == {"A": "a", "B": "b"}


WRITES = r"""
import sys
from pathlib import Path
from agent.store import History
h = History(Path(sys.argv[1]), lock_timeout=120)
name = sys.argv[2]
for i in range(int(sys.argv[3])):
    h.add_event("stress", "write", {"writer": name, "i": i})
    print(i, flush=True)  # acknowledged: add_event returned
"""
READS = r"""
import sys, time
from pathlib import Path
from agent.store import History
h = History(Path(sys.argv[1]), lock_timeout=120)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    h.count_events("stress", "write"); n += 1
print(n, flush=True)
"""


@pytest.mark.slow
def test_writers_and_a_reader_with_random_delays_in_the_window_lose_nothing(shim, tmp_path):
    """The stress that lost 5 of 36 acknowledged writes before the lock: each open waits a
    random 0-30 ms in DuckDB's window."""
    home = tmp_path / "home"
    History(home)._ensure_schema()
    (home / "shim_on").touch()
    env = _env(shim, home, SHIM_RANDOM_MS="30")
    writers = {f"w{k}": subprocess.Popen([sys.executable, "-c", WRITES, str(home), f"w{k}", "25"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
               for k in range(4)}
    reader = subprocess.Popen([sys.executable, "-c", READS, str(home), "4"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    acknowledged = set()
    for name, proc in writers.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        acknowledged |= {(name, int(line)) for line in out.split()}
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    assert int(out) > 0
    (home / "shim_on").unlink()
    assert (home / "in_window").is_file(), "the shim never delayed an open"

    stored = History(home).events("stress")
    kept = {(e["payload"]["writer"], e["payload"]["i"]) for e in stored}
    assert len(acknowledged) == 100
    assert acknowledged - kept == set(), f"lost {len(acknowledged - kept)} acknowledged writes"
    assert len(stored) == len(kept)  # and none twice


@pytest.mark.slow
def test_four_searches_and_a_reader_with_random_delays_keep_every_result_and_the_file(shim, tiny_tables, tmp_path):
    """The case that corrupted a whole history before the lock (every open held 0-30 ms in
    DuckDB's window): afterwards the file opens, and every run has all its evaluations."""
    home = tmp_path / "home"
    History(home)._ensure_schema()
    (home / "shim_on").touch()
    env = _env(shim, home, SHIM_RANDOM_MS="30") | {"AGENT_HOME": str(home)}
    budget = 25
    searches = [subprocess.Popen(
        [sys.executable, "-m", "agent", "search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables),
         "--proposer", proposer, "--budget", str(budget), "--seed", str(seed), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for seed, proposer in enumerate(("random", "evolution", "random", "evolution"))]
    reads = 0
    while any(p.poll() is None for p in searches):
        out = subprocess.run([sys.executable, "-m", "agent", "history", "--json"], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        reads += 1
    summaries = []
    for p in searches:
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    (home / "shim_on").unlink()
    assert reads > 0 and (home / "in_window").is_file()

    h = History(home)
    runs = {r["run_id"]: r for r in h.list_runs()}
    assert set(runs) == {s["run_id"] for s in summaries}
    for s in summaries:
        assert runs[s["run_id"]]["status"] == "done" and runs[s["run_id"]]["evaluations"] == budget
        rows = h.run_candidates(s["run_id"])
        assert len(rows) == budget and all(r["status"] == "ok" for r in rows)
        assert [r["seq"] for r in rows] == list(range(budget))
    con = duckdb.connect(str(home / "history.duckdb"), read_only=True)
    try:  # every candidate found by a full scan is found by its key too
        scanned = [row[0] for row in con.execute("SELECT candidate_id FROM candidates").fetchall()]
        assert len(scanned) == 4 * budget
        for cid in scanned:
            assert con.execute("SELECT count(*) FROM candidates WHERE candidate_id = ?", [cid]).fetchone()[0] == 1
    finally:
        con.close()
