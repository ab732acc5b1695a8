"""The model probe: params, FLOPs, latency and proxies of untrained networks, in a long-lived process."""

from __future__ import annotations

import random

import numpy as np
import pytest

from evaluator.measure.latency import LatencySettings
from evaluator.measure.probe import Measurement, ModelProbe, ProbeError, count_macs, training_batch
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import EDGE_FIELDS

QUICK = dict(throughput_batch=4, warmup_runs=2, warmup_seconds=0.05, round_size=5, min_repeats=10, min_seconds=0.1,
             max_seconds=1.0, calibration_seconds=0.3)
SHAPE = (1, 8, 8)


@pytest.fixture
def layers():
    return get_space("layers", input_shape=SHAPE, num_classes=10)


def test_counts_agree_with_the_layers_spaces_static_analysis(layers):
    from evaluator.models import build_model

    rng = random.Random(3)
    for _ in range(5):
        spec = layers.sample(rng)
        model = build_model("layers", spec, SHAPE, 10)
        stats = layers.stats(spec)
        assert count_macs(model, SHAPE) == stats["flops"]
        assert sum(p.numel() for p in model.parameters()) == stats["params"]


@pytest.mark.slow
def test_one_process_measures_many_candidates_and_survives_a_bad_one(layers, tmp_path):
    rng = random.Random(0)
    specs = [layers.sample(rng) for _ in range(3)]
    x = np.random.default_rng(0).integers(0, 17, size=(40, *SHAPE)).astype(np.float32)
    y = np.arange(40) % 10
    batch = training_batch(x, y, 16.0, n=16)
    assert batch[0].shape == (16, *SHAPE) and batch[0].dtype == np.float32 and abs(float(batch[0].mean())) < 0.5
    latency = LatencySettings(**QUICK, calibration_dir=str(tmp_path / "cal"))
    with ModelProbe(latency=latency, proxies=("synflow", "naswot"), batch=batch) as probe:
        first = probe.measure("layers", specs[0], SHAPE, 10)
        pid = probe._process.pid
        assert isinstance(first, Measurement) and first.params == layers.stats(specs[0])["params"]
        assert first.flops == layers.stats(specs[0])["flops"] and first.latency.at(1).median_ms > 0
        assert set(first.proxies) | set(first.proxy_errors) == {"synflow", "naswot"}
        m = first.metrics()
        assert m["latency_ms"] == first.latency.latency_ms and m["params"] == first.params
        assert m["throughput_batch"] == 4 and "cpu" in m["latency_device"] and m["latency_reference_ms"] > 0
        over = probe.measure("layers", specs[0], SHAPE, 10, proxies=False, stop_above_ms=1e-6)
        assert [b.batch for b in over.latency.batches] == [1] and "throughput_batch" not in over.metrics()
        assert any("batch 4 not timed" in n for n in over.latency.notes)
        quick = probe.measure("layers", specs[1], SHAPE, 10, latency=False, proxies=False)
        assert quick.latency is None and quick.proxies == {} and "latency_ms" not in quick.metrics()
        with pytest.raises(ProbeError, match="layers spec"):
            probe.measure("layers", {"stem": "nonsense"}, SHAPE, 10)
        assert probe._process.pid == pid  # a bad request does not cost the process
        probe._process.kill()
        probe._process.wait()
        again = probe.measure("layers", specs[2], SHAPE, 10, latency=False)
        assert again.params == layers.stats(specs[2])["params"] and probe._process.pid != pid  # restarted
    assert probe._process is None and probe._batch_file is None


def test_nb201_cells_are_measured_from_the_project_builder():
    cell = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
    with ModelProbe() as probe:
        m = probe.measure("nb201", cell, (3, 32, 32), 10)
        assert m.latency is None and m.params > 100_000 and m.flops > m.params
        empty = probe.measure("nb201", dict.fromkeys(EDGE_FIELDS, "none"), (3, 32, 32), 10)
        assert empty.flops < m.flops


def test_a_probe_that_hangs_is_killed_at_its_timeout(tmp_path):
    cell = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
    slow = LatencySettings(**{**QUICK, "min_seconds": 5.0, "max_seconds": 5.0}, calibration_dir=str(tmp_path / "cal"))
    with ModelProbe(latency=slow, timeout=2.0) as probe:
        with pytest.raises(ProbeError, match="longer than 2 s"):
            probe.measure("nb201", cell, (3, 32, 32), 10)
        assert probe._process is None
