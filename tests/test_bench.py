"""The benchmark scripts still run (tiny inputs; the real numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, all_archs


@pytest.mark.slow
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


@pytest.mark.slow
def test_search_nb201_measures_the_surrogate_with_and_without_a_prior_run(tiny_tables, tmp_path):
    # synflow tables as bench/nb201_proxy_table.py writes them (made-up scores: the real ones take 22 minutes a task)
    for task in ("nb201-cifar10", "nb201-cifar100"):
        lines = ["arch,params,flops,seconds,synflow"] + [f"{a},1,1,0.01,{a.count('conv') + 0.5 * a.count('skip')}"
                                                         for a in all_archs()]
        (tmp_path / f"{task}_proxies_synflow.csv").write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "bench/search_nb201.py", "--benchmark-dir", str(tiny_tables), "--seeds", "2",
                          "--budgets", "6", "--proposers", "default", "no-proxies", "prior", "--prior-budget", "12", "--no-write",
                          "--proxy-tables", str(tmp_path), "--json", str(tmp_path / "raw.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert {(r["proposer"], r["budget"]) for r in raw["rows"]} == {(p, 6) for p in ("default", "no-proxies", "prior")}
    assert all(r["duplicate_evaluations"] == 0 and r["evaluations"] == 6 for r in raw["results"])
    scored = {p: [r["proxy_scored"] for r in raw["results"] if r["proposer"] == p] for p in ("default", "no-proxies")}
    assert min(scored["default"]) >= 200 and scored["no-proxies"] == [0, 0]  # the default scores its pool
    missing = subprocess.run([sys.executable, "bench/search_nb201.py", "--benchmark-dir", str(tiny_tables), "--seeds",
                              "2", "--budgets", "3", "--proposers", "default", "--no-write", "--proxy-tables",
                              str(tmp_path / "none")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "nb201_proxy_table.py" in missing.stderr


def test_the_proxy_table_is_made_by_the_model_probe_and_resumes(tmp_path):
    table = tmp_path / "p.csv"
    for limit in (2, 3):  # the second run adds only the third cell
        out = subprocess.run([sys.executable, "bench/nb201_proxy_table.py", "--limit", str(limit), "--out", str(table)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    rows = table.read_text().splitlines()
    assert rows[0] == "arch,params,flops,seconds,synflow" and len(rows) == 4
    assert all(float(r.split(",")[-1]) > 0 and float(r.split(",")[3]) > 0 for r in rows[1:])


@pytest.mark.slow
def test_surrogate_overhead_times_a_choice(tmp_path):
    out = subprocess.run([sys.executable, "bench/surrogate_overhead.py", "--sizes", "10", "--benchmark-dir",
                          str(tmp_path), "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| nb201 | 10 | 4 |" in out.stdout and "| layers | 10 | 1 |" in out.stdout
    synflow = next(line for line in out.stdout.splitlines() if line.startswith("| nb201 + synflow | 10 | 1 |"))
    proxy_seconds, first = (float(v) for v in synflow.split(" | ")[4:6])
    assert proxy_seconds > 0 and first > proxy_seconds  # the first choice scores the whole first pool


@pytest.mark.slow
def test_surrogate_quality_compares_the_model_families(tiny_tables):
    out = subprocess.run([sys.executable, "bench/surrogate_quality.py", "--benchmark-dir", str(tiny_tables),
                          "--repeats", "1", "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for name in ("gp", "random forest", "extra trees", "bayesian ridge"):
        assert f"| nb201-cifar10 | {name} |" in out.stdout


@pytest.mark.slow
def test_early_stop_curves_compares_the_modes_on_the_same_candidates(tmp_path):
    from tests.evaluator.test_curves import cells, write_curves

    write_curves(tmp_path / "c.csv", cells(20), epochs=12)
    out = subprocess.run([sys.executable, "bench/early_stop_curves.py", "--curves", str(tmp_path / "c.csv"), "--seeds",
                          "2", "--budget", "10", "--workers", "1", "--no-write"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 1 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["off", "forecast", "asha", "both", "asha, eta 2"]
    off = rows[0].split("|")
    assert off[3].strip() == "0.0%" and off[4].strip() == "1.00x" and off[5].strip() == "0.000"
    asha = rows[2].split("|")
    assert float(asha[4].strip().rstrip("x")) > 1.5  # successive halving saves epochs on any curves
    assert "Reading: with 1 worker(s), successive halving saves" in out.stdout


def test_layers_table_reports_the_surrogate_and_the_cost_model_on_a_table(tmp_path):
    """The analysis part, on a table of real layers specs with made-up measurements (the real
    table comes from a 120-evaluation random search on the digits)."""
    import json
    import random

    from evaluator.spaces import get_space

    space = get_space("layers", input_shape=(1, 8, 8), num_classes=10)
    rng = random.Random(0)
    rows = []
    for i in range(45):
        spec = space.sample(rng)
        flops = space.stats(spec)["flops"]
        acc = rng.uniform(0.1, 1.0) if i % 9 else None
        rows.append({"spec": spec, "status": "ok", "val_accuracy": acc,
                     "wall_seconds": 3.0 + flops / 1e6, "device_seconds": flops / 1e6})
        if i >= 3:  # the first 3 rows are scored by the real probe; these rank as their accuracy, naswot at random
            rows[-1]["proxies"] = {"synflow": acc or 0.0, "naswot": rng.random(), "jacob_cov": None,
                                   "grad_norm": acc or 0.0, "snip": acc or 0.0, "seconds": 0.1}
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": rows}))
    out = subprocess.run([sys.executable, "bench/layers_table.py", "--table", str(table), "--repeats", "2", "--replays", "2",
                          "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| what is predicted: by | n=10 | n=30 |" in out.stdout
    flops_row = next(line for line in out.stdout.splitlines() if line.startswith("| seconds: FLOPs |"))
    assert flops_row == "| seconds: FLOPs | 1.000 | 1.000 |"  # seconds grow with FLOPs in this table
    for strategy in ("random", "default", "known seconds"):  # searches replayed on the table
        assert f"| {strategy} | " in out.stdout
    assert "| accuracy (gp + synflow evidence): Spearman |" in out.stdout
    proxy_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:3] for line in out.stdout.splitlines()
                  if line.startswith(("| synflow |", "| jacob_cov |"))}
    assert float(proxy_rows["synflow"][0]) > 0.6 and proxy_rows["jacob_cov"][1] == "42"  # unscored rank last
    stored = json.loads(table.read_text())["rows"]  # the probe's scores are kept with the table
    assert all(r["proxies"]["seconds"] > 0 for r in stored[:3]) and stored[3]["proxies"]["seconds"] == 0.1
