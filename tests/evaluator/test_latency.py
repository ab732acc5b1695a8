"""LatencyProbe: a separate process measures a network's forward latency (no timing asserted here;
bench/latency.py measures how repeatable it is)."""

from __future__ import annotations

import pytest

from evaluator.latency import LatencyError, LatencyProbe
from evaluator.spaces.nb201 import EDGE_FIELDS

CELL = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
QUICK = dict(throughput_batch=4, warmup_runs=2, warmup_seconds=0.05, round_size=5, min_repeats=10, max_seconds=2.0)


def test_a_probe_reports_batch_1_and_throughput_with_a_fingerprint():
    report = LatencyProbe(**QUICK).measure("nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert [b.batch for b in report.batches] == [1, 4]
    one, four = report.at(1), report.at(4)
    assert 0 < one.q25_ms <= one.median_ms <= one.q75_ms and one.iqr_ms == pytest.approx(one.q75_ms - one.q25_ms, abs=1e-3)
    assert one.repeats >= 10 and four.images_per_s == pytest.approx(4000.0 / four.median_ms, rel=1e-3)
    assert report.latency_ms == one.median_ms and report.device == "cpu" and report.threads == 1
    assert report.fingerprint["threads"] == 1 and report.fingerprint["torch"] and report.fingerprint["cpu_count"] >= 1
    assert report.warmup_runs >= 4 and report.to_dict()["batches"][0]["batch"] == 1
    with pytest.raises(KeyError, match="measured: \\[1, 4\\]"):
        report.at(2)


def test_a_probe_that_cannot_settle_says_so():
    report = LatencyProbe(**{**QUICK, "min_repeats": 10, "max_repeats": 10, "rel_tol": 1e-9}).measure(
        "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert report.at(1).repeats == 10 and report.at(1).stable is False


def test_bad_requests_are_named():
    with pytest.raises(LatencyError, match="device='tpu'"):
        LatencyProbe(device="tpu")
    with pytest.raises(LatencyError, match="min_repeats"):
        LatencyProbe(min_repeats=50, max_repeats=10)
    with pytest.raises(LatencyError, match="threads=0"):
        LatencyProbe(threads=0)
    with pytest.raises(LatencyError, match="conv9x9"):
        LatencyProbe(**QUICK).measure("nb201", {**CELL, "edge_1_0": "conv9x9"}, (3, 8, 8), 10)


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(LatencyError, match="no CUDA device") as info:
        LatencyProbe(device="cuda", **QUICK).measure("nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert "device='cpu'" in info.value.hint
