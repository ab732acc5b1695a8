"""LatencyProbe: inference latency measured, not estimated from FLOPs.

A probe builds the candidate's network in a separate, otherwise idle Python process (``python -m
evaluator.latency``, the request as JSON on stdin, the report as JSON on stdout), so the
search's own threads, the LLM and the training workers do not share its interpreter, allocator
or thread pools. In that process it

- fixes the thread count (``torch.set_num_threads``, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``)
  and, on CPU with as many cores to spare, pins itself to the last ``threads`` cores;
- puts the network in eval mode under ``torch.inference_mode``, on the device, with random
  inputs of the task's shape;
- warms up (at least ``warmup_runs`` calls and ``warmup_seconds``), so lazy initialisation,
  allocator growth and CPU frequency ramps are not measured;
- times single forward calls, synchronising the device (CUDA events on a GPU), in rounds of
  ``round_size``, until the median's standard error (from the inter-quartile range) is within
  ``rel_tol`` of it and the last round moved it less than that (``stable``), or until
  ``max_repeats`` calls or ``max_seconds`` (then the report says ``stable: false``);
- does this at batch 1 (latency) and at a throughput batch (images per second).

The report holds, per batch size, the median and inter-quartile range in milliseconds, the
number of calls and whether it settled, and a fingerprint of the device (CPU model and cores,
GPU name and capability, torch and CUDA versions, threads) so numbers from different machines
are never compared by accident.

The model is built from a validated spec by the project's own builders (``evaluator.models``);
candidate source code (code mode) will go through the sandbox instead.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluator.errors import ArchAgentError


class LatencyError(ArchAgentError):
    """The probe could not measure (bad request, missing device, the child failed)."""


@dataclass(frozen=True)
class BatchLatency:
    batch: int
    median_ms: float
    iqr_ms: float  # q75 - q25
    q25_ms: float
    q75_ms: float
    repeats: int  # timed calls
    stable: bool  # the median settled within rel_tol before the limits
    images_per_s: float


@dataclass(frozen=True)
class LatencyReport:
    device: str
    threads: int
    batches: list[BatchLatency]
    fingerprint: dict[str, Any]
    warmup_runs: int
    seconds: float  # wall time of the whole probe, process start included
    notes: list[str] = field(default_factory=list)

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
class LatencyProbe:
    """How to measure; ``measure`` runs one probe in a fresh process."""

    device: str = "cpu"
    threads: int = 1
    throughput_batch: int = 32
    warmup_runs: int = 10
    warmup_seconds: float = 2.0
    round_size: int = 10
    min_repeats: int = 30
    max_repeats: int = 1000
    rel_tol: float = 0.01
    max_seconds: float = 20.0  # per batch size
    timeout: float = 300.0  # the whole child process

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
        if not 0 < self.rel_tol < 1:
            raise LatencyError(f"rel_tol={self.rel_tol!r} must be between 0 and 1", hint="for example 0.01 (1%)")

    def measure(self, space: str, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                **build_options: Any) -> LatencyReport:
        """Latency of the network ``spec`` describes (space ``nb201`` or ``layers``), untrained."""
        request = {"space": space, "spec": spec, "input_shape": list(input_shape), "num_classes": num_classes,
                   "build_options": build_options, "probe": asdict(self)}
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "LD_LIBRARY_PATH")}
        env |= {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        started = time.monotonic()
        try:
            out = subprocess.run([sys.executable, "-m", "evaluator.latency"], input=json.dumps(request),
                                 capture_output=True, text=True, env=env, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise LatencyError(f"the latency probe took longer than {self.timeout:g} s",
                               hint="lower max_seconds or max_repeats, or raise timeout") from None
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            raise LatencyError(f"the latency probe failed (exit {out.returncode}): {out.stderr.strip()[-1500:]}",
                               hint="check the spec with `agent eval`; on cuda, check `agent doctor` sees the GPU")
        payload = json.loads(lines[-1])
        if "error" in payload:
            raise LatencyError(payload["error"], hint=payload.get("hint", "check the request"))
        payload["batches"] = [BatchLatency(**b) for b in payload["batches"]]
        return LatencyReport(**payload, seconds=round(time.monotonic() - started, 3))


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


def time_calls(call, sync, probe: dict[str, Any]) -> tuple[list[float], bool]:
    """Milliseconds per call, in rounds until the median is known to ``rel_tol`` (True) or a
    limit is hit (False). "Known" means its standard error, estimated from the spread
    (1.2533 sigma / sqrt(n), sigma = IQR / 1.349), is within ``rel_tol`` of it, and it moved
    less than that over the last round: a noisy machine needs more calls, a quiet one few."""
    times: list[float] = []
    deadline = time.monotonic() + probe["max_seconds"]
    previous = None
    while len(times) < probe["max_repeats"] and time.monotonic() < deadline:
        for _ in range(probe["round_size"]):
            times.append(sync(call))
        median = statistics.median(times)
        if len(times) >= max(probe["min_repeats"], 4) and previous is not None:
            q = statistics.quantiles(times, n=4)
            stderr = 1.2533 * ((q[2] - q[0]) / 1.349) / len(times) ** 0.5
            tol = probe["rel_tol"] * median
            if stderr <= tol and abs(median - previous) <= tol:
                return times, True
        previous = median
    return times, False


def _measure_in_this_process(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    from evaluator.models import build_model
    from evaluator.spaces import get_space

    probe = request["probe"]
    device, threads = probe["device"], probe["threads"]
    torch.set_num_threads(threads)
    notes = []
    if device == "cpu" and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > threads:
            os.sched_setaffinity(0, cores[-threads:])
            notes.append(f"pinned to cores {cores[-threads:]}")
    if device == "cuda" and not torch.cuda.is_available():
        return {"error": "device cuda was asked for, but torch sees no CUDA device",
                "hint": "use device='cpu', or run where `python -c 'import torch; print(torch.cuda.is_available())'` is True"}
    input_shape, num_classes = tuple(request["input_shape"]), request["num_classes"]
    space = get_space(request["space"], input_shape=input_shape, num_classes=num_classes)
    spec = space.validate(request["spec"])
    torch.manual_seed(0)
    model = build_model(space.name, spec, input_shape, num_classes, **request["build_options"]).to(device).eval()
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
    batches = []
    warmups = 0
    with torch.inference_mode():
        for batch in sorted({1, probe["throughput_batch"]}):
            x = torch.randn(batch, *input_shape, device=device)
            call = lambda: model(x)  # noqa: E731
            until = time.monotonic() + probe["warmup_seconds"]
            n = 0
            while n < probe["warmup_runs"] or time.monotonic() < until:
                sync(call)
                n += 1
            warmups += n
            times, stable = time_calls(call, sync, probe)
            q = statistics.quantiles(times, n=4)
            median = statistics.median(times)
            batches.append({"batch": batch, "median_ms": round(median, 4), "q25_ms": round(q[0], 4),
                            "q75_ms": round(q[2], 4), "iqr_ms": round(q[2] - q[0], 4), "repeats": len(times),
                            "stable": stable, "images_per_s": round(batch * 1000.0 / median, 2)})
    return {"device": device, "threads": threads, "batches": batches, "fingerprint": fingerprint(device, threads),
            "warmup_runs": warmups, "notes": notes}


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        result = _measure_in_this_process(request)
    except Exception as exc:  # reported to the parent, which raises LatencyError with it
        result = {"error": f"{type(exc).__name__}: {exc}", "hint": "check the spec and the input shape"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
