"""DESIGN.md's history contract: two searches and repeated readers on one AGENT_HOME at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.store import History
from tests.conftest import ROOT, run_cli, child_env


@pytest.mark.slow
def test_two_searches_and_history_readers_share_one_home(tiny_tables, tmp_path):
    home = tmp_path / "home"
    env = child_env() | {"AGENT_HOME": str(home)}
    searches = [
        subprocess.Popen(
            [sys.executable, "-m", "agent", "search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables),
             "--proposer", proposer, "--budget", "80", "--seed", str(seed), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        for proposer, seed in (("evolution", 1), ("random", 2))
    ]
    reads = []
    while any(p.poll() is None for p in searches) or len(reads) < 3:
        out = run_cli("history", "--json", home=home)
        assert out.returncode == 0, out.stderr
        reads.append(json.loads(out.stdout)["runs"])
    summaries = []
    for p in searches:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        summaries.append(json.loads(stdout))

    assert any(0 < len(r) for r in reads[:-1]), "no read overlapped the searches"
    h = History(home)
    runs = {r["run_id"]: r for r in h.list_runs()}
    assert set(runs) == {s["run_id"] for s in summaries}
    for s in summaries:
        assert runs[s["run_id"]]["status"] == "done" and runs[s["run_id"]]["evaluations"] == 80
        rows = h.run_candidates(s["run_id"])
        assert len(rows) == 80 and all(r["status"] == "ok" for r in rows)
        assert [r["seq"] for r in rows] == list(range(80))
        assert sum(1 for r in rows if r["test_accuracy"] is not None) == 1  # the final report of the best
