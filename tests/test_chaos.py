"""The short version of bench/chaos.py (its 100-cycle figures are in docs/benchmarks.md): one
loop on the local pool and one on Ray, each killed at random (coordinator, in a write too,
workers, actors, readers) and resumed; nothing lost, duplicated or left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.ray
def test_two_chaos_cycles_lose_nothing_and_leave_nothing(tmp_path):
    out = subprocess.run([sys.executable, "bench/chaos.py", "--cycles", "2", "--max-kills", "3", "--seed", "7",
                          "--home", str(tmp_path / "home"), "--json", "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    totals = json.loads(out.stdout)
    assert set(totals["pools"]) == {"local", "ray"}
    assert sum(totals["kills"].values()) >= 2
    for check in ("lost", "duplicated", "not_final", "index_mismatch", "leftover", "scratch_left", "cgroups_left",
                  "failed"):
        assert totals[check] == 0, totals["problems"][check]
    assert all(p["candidates"] == 6 and p["acknowledged"] >= 1 and p["reads"] > 0 for p in totals["pools"].values())


@pytest.mark.slow
def test_history_soak_runs_two_loops_and_four_readers(tmp_path, tiny_tables):
    out = subprocess.run([sys.executable, "bench/history_soak.py", "--candidates", "1000", "--minutes", "0.4",
                          "--budget", "30", "--benchmark-dir", str(tiny_tables), "--home", str(tmp_path / "home"),
                          "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "| failed commands | 0 |" in out.stdout and "| lost writes" in out.stdout
    assert "loop A (nb201 table)" in out.stdout and "agent sql" in out.stdout
