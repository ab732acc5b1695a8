"""The benchmark scripts still run (tiny inputs; the real numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_search_nb201_compares_the_portfolio_with_the_baselines(tiny_tables, tmp_path):
    out = subprocess.run([sys.executable, "bench/search_nb201.py", "--benchmark-dir", str(tiny_tables), "--seeds", "2",
                          "--budgets", "5", "12", "--proposers", "evolution", "random", "portfolio-nollm", "--no-write",
                          "--json", str(tmp_path / "raw.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "portfolio-nollm" in out.stdout and "s / search" in out.stdout
    raw = json.loads((tmp_path / "raw.json").read_text())
    rows = {(r["proposer"], r["budget"]) for r in raw["rows"]}
    assert rows == {(p, b) for p in ("evolution", "random", "portfolio-nollm") for b in (5, 12)}
    assert all(r["duplicate_evaluations"] == 0 for r in raw["results"])
    assert all(r["llm_share"] == 0 for r in raw["results"] if r["proposer"] == "portfolio-nollm")
