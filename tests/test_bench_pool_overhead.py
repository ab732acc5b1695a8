"""bench/pool_overhead.py runs end to end on a cold and a warm pool (its real numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_bench




@pytest.mark.slow
def test_pool_overhead_measures_a_cold_and_a_warm_pool(tmp_path, capsys, monkeypatch):
    bench = load_bench("pool_overhead", monkeypatch)
    written = []
    monkeypatch.setattr(bench, "publish", lambda key, body, write=True: (written.append(write), print(body)))
    assert set(bench.POOLS) >= {"local-cold", "local-warm", "ray-cold", "ray-warm"}
    code = bench.main(["--quick", "--n", "1", "--gap", "1", "--modes", "back-to-back", "--no-write",
                       "--pools", "local-cold", "local-warm",
                       "--json", str(tmp_path / "po.json")])
    assert code == 0 and written == [False]
    out = capsys.readouterr().out
    assert "| local-cold | back-to-back | 1 |" in out and "| local-warm | back-to-back | 1 |" in out

    raw = json.loads((tmp_path / "po.json").read_text())
    blocks = {b["pool"]: b for b in raw["blocks"]}
    assert set(blocks) == {"local-cold", "local-warm"}
    for name, block in blocks.items():
        [c] = block["candidates"]
        assert c["warm"] is False if name == "local-cold" else isinstance(c["warm"], bool)  # warm: once a spare exists
        assert all(c[k] >= 0 for k in ("prepare", "boot", "first_step", "finish", "overhead", "train", "wall"))
        assert c["ray"] == 0 and c["overhead"] == c["first_step"] + c["finish"]
