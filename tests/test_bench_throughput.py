"""bench/train_throughput.py runs end to end on tiny inputs (its real numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import math

from tests.conftest import load_bench




def test_train_throughput_compares_the_trainer_with_a_plain_loop(tmp_path, capsys, monkeypatch):
    bench = load_bench("train_throughput", monkeypatch)
    written = []
    monkeypatch.setattr(bench, "write_doc", lambda key, body: written.append(key))
    code = bench.main(["--devices", "cpu", "--models", "layers-small", "--images", "160", "--epochs", "2",
                       "--repeats", "2", "--no-write", "--json", str(tmp_path / "tp.json")])
    assert code == 0 and written == []
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("train-throughput: cpu ratio=")

    raw = json.loads((tmp_path / "tp.json").read_text())
    assert {"run", "args", "rows", "runs", "target", "load_average_at_start"} <= set(raw)
    [row] = raw["rows"]
    assert row["model"] == "layers-small" and row["device"] == "cpu" and row["params"] > 0
    assert row["trainer_images_per_second"] > 0 and row["plain_images_per_second"] > 0
    assert math.isclose(row["ratio"], row["trainer_images_per_second"] / row["plain_images_per_second"])
    assert len(row["pair_ratios"]) == 2 and isinstance(row["met"], bool)

    runs = raw["runs"]
    assert sorted((r["contender"], r["repeat"]) for r in runs) == [("plain", 0), ("plain", 1),
                                                                    ("trainer", 0), ("trainer", 1)]
    assert [r["contender"] for r in sorted(runs, key=lambda r: (r["repeat"], r["position"]))] == \
        ["trainer", "plain", "plain", "trainer"]  # alternating
    for r in runs:
        assert [e["epoch"] for e in r["epochs"]] == [1, 2]
        assert all(e["images"] == 128 and e["seconds"] > 0 and math.isfinite(e["train_loss"]) for e in r["epochs"])
        if r["contender"] == "trainer":
            assert all(0.0 <= e["train_accuracy"] <= 1.0 for e in r["epochs"])
    # Both trained, and did the same work: on CPU the same seed gives the same losses.
    losses = {c: [e["train_loss"] for r in runs if r["contender"] == c and r["repeat"] == 0 for e in r["epochs"]]
              for c in ("trainer", "plain")}
    assert losses["trainer"][1] != losses["trainer"][0]
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(losses["trainer"], losses["plain"]))


def test_train_throughput_writes_one_section_per_device(tmp_path, monkeypatch, capsys):
    bench = load_bench("train_throughput", monkeypatch)
    written = {}
    monkeypatch.setattr(bench, "write_doc", lambda key, body: written.setdefault(key, body))
    assert bench.main(["--devices", "cpu", "--models", "layers-small", "--images", "64", "--repeats", "1"]) == 0
    assert list(written) == ["train_throughput:cpu"]
    body = written["train_throughput:cpu"]
    assert "| layers-small | cpu |" in body and "bench/train_throughput.py" in body and "load average" in body
