"""Latency (LatencySettings, measure_latency): a separate process measures a network's forward latency (no timing asserted here;
bench/latency.py measures how repeatable it is)."""

from __future__ import annotations

import pytest

from evaluator.measure.latency import HeapShuffler, LatencyError, LatencySettings, time_calls
from evaluator.measure.probe import measure_latency
from evaluator.spaces.nb201 import EDGE_FIELDS

CELL = dict.fromkeys(EDGE_FIELDS, "nor_conv_3x3")
QUICK = dict(throughput_batch=4, warmup_runs=2, warmup_seconds=0.05, round_size=5, min_repeats=10, min_seconds=0.1,
             max_seconds=2.0, calibration_seconds=0.3)


@pytest.fixture(autouse=True)
def _own_calibration(tmp_path, monkeypatch):
    """Every probe here keeps its reference calibration in the test's folder, not the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_a_probe_reports_batch_1_and_throughput_with_a_fingerprint():
    report = measure_latency(LatencySettings(**QUICK), "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert [b.batch for b in report.batches] == [1, 4]
    one, four = report.at(1), report.at(4)
    assert 0 < one.q25_ms <= one.median_ms <= one.q75_ms and one.iqr_ms == pytest.approx(one.q75_ms - one.q25_ms, abs=1e-3)
    assert one.repeats >= 10 and four.images_per_s == pytest.approx(4000.0 / four.median_ms, rel=1e-3)
    assert report.latency_ms == one.median_ms and report.device == "cpu" and report.threads == 1
    assert report.fingerprint["threads"] == 1 and report.fingerprint["torch"] and report.fingerprint["cpu_count"] >= 1
    assert report.warmup_runs >= 4 and report.to_dict()["batches"][0]["batch"] == 1
    with pytest.raises(KeyError, match="measured: \\[1, 4\\]"):
        report.at(2)


@pytest.mark.slow
def test_latency_is_normalised_by_the_reference_network_and_the_calibration_accumulates(tmp_path):
    settings = LatencySettings(**QUICK, calibration_dir=str(tmp_path / "cal"))
    first = measure_latency(settings, "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    (stored,) = (tmp_path / "cal").glob("reference-*.json")
    assert first.calibration_sessions >= 2  # the first calibration's windows, and this session's median
    assert first.reference_ms > 0 and first.reference_session_ms > 0
    one = first.at(1)
    assert one.relative > 0 and one.raw_median_ms > 0
    assert one.median_ms == pytest.approx(one.relative * first.reference_ms, rel=1e-3)
    second = measure_latency(settings, "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert second.calibration_sessions == first.calibration_sessions + 1  # no second first-calibration
    assert stored.is_file() and len(__import__("json").loads(stored.read_text())["samples"]) == second.calibration_sessions
    raw = measure_latency(LatencySettings(**QUICK, calibrate=False, calibration_dir=str(tmp_path / "none")),
        "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert raw.reference_ms is None and raw.at(1).relative is None and raw.at(1).median_ms == raw.at(1).raw_median_ms
    assert not (tmp_path / "none").exists()


def test_the_heap_shuffler_moves_allocations_within_a_bounded_set_of_spacers():
    shuffle = HeapShuffler(seed=1)
    for _ in range(200):
        shuffle()
    assert len(shuffle.spacers) == HeapShuffler.SPACERS  # bounded: old spacers are freed as new ones come
    assert all(t.numel() <= 300_000 and bool((t == 1).all()) for t in shuffle.spacers)  # touched, so backed by pages
    sizes = [t.numel() for t in shuffle.spacers]
    shuffle()
    assert [t.numel() for t in shuffle.spacers] != sizes  # every round changes the heap


def test_time_calls_runs_the_hook_before_every_round():
    events = []
    probe = {"max_repeats": 20, "max_seconds": 5.0, "round_size": 5, "min_seconds": 0.0, "min_repeats": 20,
             "rel_tol": 1e-9}
    times, refs, stable = time_calls(lambda: events.append("call"), lambda call: call() or 1.0, probe,
                                     between_rounds=lambda: events.append("round"))
    assert len(times) == 20 and refs == [] and stable is True  # constant times settle once min_repeats are in
    assert events == (["round"] + ["call"] * 5) * 4


def test_a_probe_that_cannot_settle_says_so():
    report = measure_latency(LatencySettings(**{**QUICK, "min_repeats": 10, "max_repeats": 10, "rel_tol": 1e-9}),
        "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert report.at(1).repeats == 10 and report.at(1).stable is False


def test_bad_requests_are_named():
    with pytest.raises(LatencyError, match="device='tpu'"):
        LatencySettings(device="tpu")
    with pytest.raises(LatencyError, match="min_repeats"):
        LatencySettings(min_repeats=50, max_repeats=10)
    with pytest.raises(LatencyError, match="threads=0"):
        LatencySettings(threads=0)
    with pytest.raises(LatencyError, match="min_seconds"):
        LatencySettings(min_seconds=30, max_seconds=20)
    with pytest.raises(LatencyError, match="conv9x9"):
        measure_latency(LatencySettings(**QUICK), "nb201", {**CELL, "edge_1_0": "conv9x9"}, (3, 8, 8), 10)


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(LatencyError, match="no CUDA device") as info:
        measure_latency(LatencySettings(device="cuda", **QUICK), "nb201", CELL, (3, 8, 8), 10, channels=4, cells=1)
    assert "device='cpu'" in info.value.hint
