"""bench/portfolio_standins.py still runs (tiny tables; the real numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_portfolio_standins_runs_every_setting_with_both_stand_ins(tiny_tables, tmp_path):
    out = subprocess.run([sys.executable, "bench/portfolio_standins.py", "--benchmark-dir", str(tiny_tables), "--seeds", "2",
                          "--budgets", "12", "--no-write", "--json", str(tmp_path / "raw.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    raw = json.loads((tmp_path / "raw.json").read_text())
    rows = {(r["setting"], r["llm"]) for r in raw}
    assert ("evolution", "-") in rows and ("default", "weak") in rows and ("default", "strong") in rows
    assert len(raw) == 2 * len(rows)
    # the stand-ins propose: with llm_after 0 they get a share of a 12-evaluation search
    eager = [r["llm_share"] for r in raw if r["setting"].startswith("LLM right after")]
    assert eager and max(eager) > 0
    assert all(0.5 < r["test_accuracy"] <= 1 for r in raw)
    assert "| default | weak |" in out.stdout
    missing = subprocess.run([sys.executable, "bench/portfolio_standins.py", "--benchmark-dir", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "--benchmark-dir" in missing.stderr
