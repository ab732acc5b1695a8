"""Inference latency measured, not estimated from FLOPs: how (``LatencySettings``), and the timing
that runs in the probe process.

The candidate's network is built in a separate, otherwise idle Python process (the model probe,
``evaluator.measure.probe``: ``measure_latency`` starts a fresh one for a single measurement, a
search keeps one for all its candidates), so the search's own threads, the LLM
and the training workers do not share its interpreter, allocator or thread pools. In that
process it

- fixes the thread count (``torch.set_num_threads``, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``)
  and, on CPU with as many cores to spare, pins itself to the last ``threads`` cores;
- puts the network in eval mode under ``torch.inference_mode``, on the device, with random
  inputs of the task's shape;
- warms up (at least ``warmup_runs`` calls and ``warmup_seconds``), so lazy initialisation,
  allocator growth and CPU frequency ramps are not measured;
- times single forward calls, synchronising the device (CUDA events on a GPU), in rounds of
  ``round_size``, for at least ``min_seconds`` and until the median's standard error (from the
  inter-quartile range) is within ``rel_tol`` of it and the last round moved it less than that
  (``stable``), or until ``max_repeats`` calls or ``max_seconds`` (then the report says
  ``stable: false``);
- on CPU, moves the heap between rounds (``HeapShuffler``), so the median runs over many
  placements of the activation buffers rather than the one this process happened to get;
- does this at batch 1 (latency) and at a throughput batch (images per second).

Machine speed drifts. On the shared virtual machines this project is developed on, the same
network in the same pinned process runs at 13 ms for some seconds and 20 ms for the next
(docs/benchmarks.md): a probe that times one stretch reports whichever phase it caught, two
probes disagree by up to 40%, and a search would compare candidates measured in different
phases. So every call of the candidate is preceded by a call of a fixed **reference network**
(a small CNN on one 3x32x32 image), and each candidate call is divided by the median of the
reference's last few calls: the ratio stays put while the machine's speed changes (within a
few percent here, against +-30% for the raw times). The reported
``median_ms`` is that ratio times the reference's **calibrated** latency on this device: the
median of the reference's per-session medians over every probe session on this machine (kept
in a small JSON file per device fingerprint, ``calibration_dir``, by default
``$XDG_CACHE_HOME/archagent/latency``; each session adds its own). So ``median_ms`` is the
latency at the machine's typical speed, comparable between probes and runs, while
``raw_median_ms`` is what the clock said during this probe. ``calibrate=False`` times the
candidate alone (``median_ms`` is then the raw median).

The report holds, per batch size, the median and inter-quartile range in milliseconds (and
the raw ones), the number of calls and whether it settled; the reference's calibrated and
session latency; and a fingerprint of the device (CPU model and cores, GPU name and
capability, torch and CUDA versions, threads) so numbers from different machines are never
compared by accident.

The model is built from a validated spec by the project's own builders (``evaluator.models``);
candidate source code (code mode) will go through the sandbox instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluator.errors import ArchAgentError


class LatencyError(ArchAgentError):
    """The probe could not measure (bad request, missing device, the child failed)."""


@dataclass(frozen=True)
class BatchLatency:
    batch: int
    median_ms: float  # at the device's calibrated speed (the raw median when not calibrated)
    iqr_ms: float  # q75 - q25, same scale
    q25_ms: float
    q75_ms: float
    repeats: int  # timed calls
    stable: bool  # the median settled within rel_tol before the limits
    images_per_s: float  # batch / median
    raw_median_ms: float = 0.0  # what the clock said during this probe
    raw_iqr_ms: float = 0.0
    relative: float | None = None  # median of (call time / the reference round's median); None when not calibrated


@dataclass(frozen=True)
class LatencyReport:
    device: str
    threads: int
    batches: list[BatchLatency]
    fingerprint: dict[str, Any]
    warmup_runs: int
    seconds: float  # wall time of the whole probe, process start included
    notes: list[str] = field(default_factory=list)
    reference_ms: float | None = None  # the reference network's calibrated latency (None: not calibrated)
    reference_session_ms: float | None = None  # its median during this probe
    calibration_sessions: int = 0  # probe sessions behind reference_ms, this one included

    def at(self, batch: int) -> BatchLatency:
        for b in self.batches:
            if b.batch == batch:
                return b
        raise KeyError(f"no measurement at batch {batch}; measured: {[b.batch for b in self.batches]}")

    @property
    def latency_ms(self) -> float:
        """The batch-1 median, the figure a latency objective or constraint uses."""
        return self.at(1).median_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LatencySettings:
    """How to measure latency; ``evaluator.measure.probe.measure_latency`` measures one network
    with them in a fresh process, and a ``ModelProbe`` given them measures every network it builds."""

    device: str = "cpu"
    threads: int = 1
    throughput_batch: int = 32
    warmup_runs: int = 10
    warmup_seconds: float = 2.0
    round_size: int = 10
    min_repeats: int = 30
    max_repeats: int = 1000
    rel_tol: float = 0.01
    min_seconds: float = 5.0  # per batch size: time at least this long, across the machine's drift
    max_seconds: float = 20.0  # per batch size
    timeout: float = 300.0  # the whole child process
    calibrate: bool = True  # time a fixed reference network between rounds and normalise by it
    calibration_dir: str = ""  # where the reference's calibration lives; "" = $XDG_CACHE_HOME/archagent/latency
    calibration_seconds: float = 10.0  # a new device's first calibration: the reference timed this long

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise LatencyError(f"device={self.device!r} is not cpu or cuda", hint="pass device='cpu' or device='cuda'")
        for name in ("threads", "throughput_batch", "warmup_runs", "round_size", "min_repeats", "max_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LatencyError(f"{name}={value!r} must be a positive integer", hint=f"set {name} to 1 or more")
        if self.min_repeats > self.max_repeats:
            raise LatencyError(f"min_repeats ({self.min_repeats}) is larger than max_repeats ({self.max_repeats})",
                               hint="lower min_repeats or raise max_repeats")
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise LatencyError(f"min_seconds ({self.min_seconds}) must be between 0 and max_seconds ({self.max_seconds})",
                               hint="lower min_seconds or raise max_seconds")
        if not 0 < self.rel_tol < 1:
            raise LatencyError(f"rel_tol={self.rel_tol!r} must be between 0 and 1", hint="for example 0.01 (1%)")

    def settings(self) -> dict[str, Any]:
        """What the child process needs to know (JSON)."""
        return asdict(self)


# -- the child process --------------------------------------------------------------------

def fingerprint(device: str, threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(), "torch": torch.__version__, "threads": threads}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                "gpu_memory_gb": round(props.total_memory / 1024**3, 1), "cuda": torch.version.cuda}
    return out


REFERENCE_WINDOW = 9  # a call is divided by the median of the reference's last this many calls
OVER_LIMIT_MARGIN = 1.5  # a network this far over a latency limit is not timed to the last percent


def time_calls(call, sync, probe: dict[str, Any], reference=None,
               too_slow=None, between_rounds=None) -> tuple[list[float], list[float], bool]:
    """Milliseconds per call, in rounds until the median is known to ``rel_tol`` (True) or a
    limit is hit (False). "Known" means its standard error, estimated from the spread
    (1.2533 sigma / sqrt(n), sigma = IQR / 1.349), is within ``rel_tol`` of it, and it moved
    less than that over the last round: a noisy machine needs more calls, a quiet one few.

    With ``reference`` (a function that times one call of the reference network), every call
    is preceded by a reference call, each call is divided by the median of the reference's
    last REFERENCE_WINDOW calls, and the rule applies to those ratios (calls interleaved one
    by one track the machine's speed closely; docs/benchmarks.md shows the ratio holding while
    the raw time moves by half).
    ``too_slow(values)`` ends the timing early (unsettled) once it says the network is clearly
    over a limit; ``between_rounds()`` runs before each round (the heap shuffle, ``HeapShuffler``). Returns the call times and, per call, the reference median it was divided by
    (empty without a reference)."""
    times: list[float] = []
    refs: list[float] = []
    recent: list[float] = []
    started = time.monotonic()
    deadline = started + probe["max_seconds"]
    previous = None
    while len(times) < probe["max_repeats"] and time.monotonic() < deadline:
        if between_rounds is not None:
            between_rounds()
        for _ in range(probe["round_size"]):
            if reference is not None:
                recent = (recent + [reference()])[-REFERENCE_WINDOW:]
            times.append(sync(call))
            if reference is not None:
                refs.append(statistics.median(recent))
        values = [t / r for t, r in zip(times, refs)] if refs else times
        median = statistics.median(values)
        long_enough = time.monotonic() - started >= min(probe["min_seconds"], probe["max_seconds"])
        if too_slow is not None and len(values) >= max(probe["min_repeats"], 4) and too_slow(values):
            return times, refs, False
        if len(values) >= max(probe["min_repeats"], 4) and previous is not None and long_enough:
            q = statistics.quantiles(values, n=4)
            stderr = 1.2533 * ((q[2] - q[0]) / 1.349) / len(values) ** 0.5
            tol = probe["rel_tol"] * median
            if stderr <= tol and abs(median - previous) <= tol:
                return times, refs, True
        previous = median
    return times, refs, False


class HeapShuffler:
    """Moves where the next calls' activations land in memory, once per round.

    On CPU a network's speed depends on where its activation buffers happen to sit (cache-set
    conflicts with the weights): here the same network in the same process runs at 15 ms,
    and at 17.5 ms once a few buffers of other sizes have been allocated before it, and stays
    there until the heap changes again (docs/benchmarks.md). A probe that never changes the
    heap measures one placement, and two probes disagree by up to 20% however long they time.
    So before each round a few of a bounded set of spacer buffers (at most ``SPACERS``, 64 B
    to 1.2 MB each, touched so they hold real pages) are freed and others allocated, and the
    median runs over many placements."""

    SPACERS = 32

    def __init__(self, seed: int = 0) -> None:
        import random

        self.rng = random.Random(seed)
        self.spacers: list[Any] = []

    def __call__(self) -> None:
        import torch

        for _ in range(self.rng.randint(1, 4)):
            if len(self.spacers) >= self.SPACERS:
                self.spacers.pop(self.rng.randrange(len(self.spacers)))
            self.spacers.append(torch.ones(self.rng.randint(16, 300_000)))


# -- the reference network and its calibration -----------------------------------------------

REFERENCE_INPUT = (3, 32, 32)
CALIBRATION_KEEP = 500  # session samples kept per device
CALIBRATION_WINDOW = 0.5  # seconds per sample of a first calibration


def reference_network():
    """The fixed network every probe times before each call of the candidate: three 3x3
    convolutions of 32 channels on one 3x32x32 image, pooled into a linear layer (about
    1 ms on one CPU core here), with fixed weights."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(32, 10))


def calibration_dir(directory: str = "") -> Path:
    """Where the reference network's calibrations live ("" = the user's cache)."""
    return Path(directory) if directory else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archagent" / "latency"


def calibrations(directory: str = "") -> list[dict[str, Any]]:
    """The calibrations on this machine: device, threads, sessions and the reference's calibrated ms."""
    out = []
    for path in sorted(calibration_dir(directory).glob("reference-*.json")):
        samples = read_calibration(path)
        try:
            fp = json.loads(path.read_text()).get("fingerprint", {})
        except (OSError, ValueError):
            fp = {}
        if samples:
            out.append({"path": str(path), "device": fp.get("gpu") or fp.get("cpu"), "threads": fp.get("threads"),
                        "sessions": len(samples), "reference_ms": round(statistics.median(samples), 4)})
    return out


def calibration_path(directory: str, fp: dict[str, Any]) -> Path:
    """One file per device fingerprint (CPU or GPU model, cores, threads, torch version)."""
    base = calibration_dir(directory)
    keys = ("cpu", "cpu_count", "gpu", "capability", "torch", "cuda", "threads")
    key = json.dumps({k: fp.get(k) for k in keys} | {"reference": 1}, sort_keys=True)
    return base / f"reference-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_calibration(path: Path) -> list[float]:
    try:
        data = json.loads(path.read_text())
        return [float(v) for v in data["samples"] if isinstance(v, (int, float)) and v > 0]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # none yet, or unreadable: start afresh


def add_calibration(path: Path, samples: list[float], fp: dict[str, Any]) -> list[float]:
    """Append this session's reference medians; write atomically; return all kept samples."""
    kept = (read_calibration(path) + samples)[-CALIBRATION_KEEP:]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"fingerprint": fp, "reference": "evaluator.measure.latency.reference_network on 1x3x32x32",
                       "unit": "ms", "samples": kept}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: this session still measures, against its own samples
    return kept


def setup_process(device: str, threads: int) -> list[str]:
    """Fix the thread count and, on CPU with cores to spare, pin this process to the last
    ``threads`` cores; notes on what was done. Raises LatencyError when cuda is missing."""
    import torch

    torch.set_num_threads(threads)
    notes = []
    if device == "cpu" and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > threads:
            os.sched_setaffinity(0, cores[-threads:])
            notes.append(f"pinned to cores {cores[-threads:]}")
    if device == "cuda" and not torch.cuda.is_available():
        raise LatencyError("device cuda was asked for, but torch sees no CUDA device",
                           hint="use device='cpu', or run where `python -c 'import torch; print(torch.cuda.is_available())'` is True")
    return notes


def time_model(model: Any, input_shape: tuple[int, ...], probe: dict[str, Any],
               stop_above_ms: float | None = None) -> dict[str, Any]:
    """Per batch size (1 and the throughput batch): warm up, then time single forward calls
    until the median settles (``time_calls``), normalised by the reference network when the
    probe calibrates. The model is on the probe's device, in eval mode. Returns the report's
    fields (``batches``, ``warmup_runs``, ``reference_ms``, ...). With ``stop_above_ms``, a
    network slower than that at batch 1 is not timed at the throughput batch (a search
    rejects it anyway)."""
    import torch

    device = probe["device"]
    if device == "cuda":
        def sync(call):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
    else:
        def sync(call):
            t0 = time.perf_counter()
            call()
            return (time.perf_counter() - t0) * 1000.0

    def warm(call) -> int:
        until = time.monotonic() + probe["warmup_seconds"]
        n = 0
        while n < probe["warmup_runs"] or time.monotonic() < until:
            sync(call)
            n += 1
        return n

    warmups = 0
    session: list[float] = []  # the reference's call times during this probe
    shuffle = HeapShuffler(seed=0) if device == "cpu" else None  # host placement only matters on CPU
    with torch.inference_mode():
        reference = None
        if probe["calibrate"]:
            ref_net, ref_x = _reference(device)
            ref_call = lambda: ref_net(ref_x)  # noqa: E731
            warmups += warm(ref_call)

            def time_reference() -> float:
                session.append(sync(ref_call))
                return session[-1]

            reference = time_reference

        measured = []
        notes = []

        def too_slow(values: list[float]) -> bool:  # clearly over the limit: no need to pin the median down
            scale = statistics.median(session) if session else 1.0
            return statistics.median(values) * scale > OVER_LIMIT_MARGIN * stop_above_ms

        for batch in sorted({1, probe["throughput_batch"]}):
            if measured and stop_above_ms is not None and _rough_ms(*measured[0][1:3], session) > stop_above_ms:
                notes.append(f"batch {batch} not timed: batch 1 is over {stop_above_ms:g} ms")
                break
            x = torch.randn(batch, *input_shape, device=device)
            call = lambda: model(x)  # noqa: E731
            warmups += warm(call)
            times, refs, stable = time_calls(call, sync, probe, reference,
                                             too_slow if batch == 1 and stop_above_ms is not None else None,
                                             shuffle)
            measured.append((batch, times, refs, stable))
        out: dict[str, Any] = {"warmup_runs": warmups, "skipped": notes}
        scale = None
        if probe["calibrate"]:
            fp = fingerprint(device, probe["threads"])
            path = calibration_path(probe["calibration_dir"], fp)
            samples = [] if read_calibration(path) else _first_calibration(reference, probe["calibration_seconds"])
            kept = add_calibration(path, samples + [statistics.median(session)], fp)
            scale = statistics.median(kept)
            out |= {"reference_ms": round(scale, 4), "reference_session_ms": round(statistics.median(session), 4),
                    "calibration_sessions": len(kept)}
    out["batches"] = [_summarise(batch, times, refs, stable, scale) for batch, times, refs, stable in measured]
    return out


def _rough_ms(times: list[float], refs: list[float], session: list[float]) -> float:
    """The batch-1 median on this session's scale (the calibration is only known at the end)."""
    if not refs:
        return statistics.median(times)
    return statistics.median(t / r for t, r in zip(times, refs)) * statistics.median(session)


def _first_calibration(reference, seconds: float) -> list[float]:
    """A new device's first samples: the reference's median over windows of CALIBRATION_WINDOW s
    (the session list grows too; the calibration adds this session's median separately)."""
    samples = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        window = []
        end = min(until, time.monotonic() + CALIBRATION_WINDOW)
        while time.monotonic() < end or not window:
            window.append(reference())
        samples.append(statistics.median(window))
    return samples


def _summarise(batch: int, times: list[float], refs: list[float], stable: bool, scale: float | None) -> dict[str, Any]:
    def quartiles(values: list[float]) -> tuple[float, float, float]:
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return q[0], statistics.median(values), q[2]

    raw = quartiles(times)
    if scale is not None:
        ratios = [t / r for t, r in zip(times, refs)]
        q25, median, q75 = (v * scale for v in quartiles(ratios))
        relative = round(statistics.median(ratios), 5)
    else:
        (q25, median, q75), relative = raw, None
    return {"batch": batch, "median_ms": round(median, 4), "q25_ms": round(q25, 4), "q75_ms": round(q75, 4),
            "iqr_ms": round(q75 - q25, 4), "repeats": len(times), "stable": stable,
            "images_per_s": round(batch * 1000.0 / median, 2), "raw_median_ms": round(raw[1], 4),
            "raw_iqr_ms": round(raw[2] - raw[0], 4), "relative": relative}


_REFERENCE: dict[str, Any] = {}


def _reference(device: str) -> tuple[Any, Any]:
    """The reference network and its input on ``device``, built once per process."""
    import torch

    if device not in _REFERENCE:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            x = torch.randn(1, *REFERENCE_INPUT)
        _REFERENCE[device] = (reference_network().to(device).eval(), x.to(device))
    return _REFERENCE[device]
