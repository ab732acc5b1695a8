"""The model probe: what can be known of a candidate before it trains, measured in a separate,
long-lived process (``python -m evaluator.measure.probe``).

For a validated spec it builds the untrained network with the project's own builders
(``evaluator.models``; never candidate code) and measures

- ``params`` (counted) and ``flops`` (multiply-accumulates per image of every Conv and Linear
  layer, counted by forward hooks on one input; the layers space's static count agrees);
- latency at batch 1 and a throughput batch (``evaluator.measure.latency``: warm-up, device sync,
  fixed threads, rounds until the median settles), when it is given ``LatencySettings``;
- zero-cost proxies (``evaluator.measure.proxies``) on a fixed batch: training images when the
  search gives them, else a seeded synthetic batch.

A search starts one probe and sends it every candidate it needs to check before training
(constraints, the latency objective, proxy screening); the process pins itself to the last
core(s), fixes its thread count, and otherwise sits idle, so a measurement shares no
interpreter, allocator or thread pool with the search. It speaks JSON lines: the settings on
the first line of stdin, then one request a line, one reply a line on stdout. A probe that
dies or hangs is restarted for the next request; the request that killed it raises
``ProbeError`` with the reason. ``measure_latency`` measures one network in a probe of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.errors import ArchAgentError
from evaluator.measure.latency import BatchLatency, LatencyError, LatencyReport, LatencySettings

PROXY_BATCH = 64


class ProbeError(ArchAgentError):
    """The probe could not measure a candidate (it does not build, or the process failed)."""


@dataclass(frozen=True)
class Measurement:
    """One candidate, measured untrained."""

    params: int
    flops: int
    latency: LatencyReport | None = None
    proxies: dict[str, float] = field(default_factory=dict)
    proxy_errors: dict[str, str] = field(default_factory=dict)  # proxy -> why it is undefined here
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """Flat values for the history (``candidates.measurements``) and the objectives."""
        out: dict[str, Any] = {"params": self.params, "flops": self.flops, "probe_seconds": round(self.seconds, 3)}
        if self.latency is not None:
            one = self.latency.at(1)
            many = max(self.latency.batches, key=lambda b: b.batch)
            fp = self.latency.fingerprint
            out |= {"latency_ms": one.median_ms, "latency_iqr_ms": one.iqr_ms, "latency_raw_ms": one.raw_median_ms,
                    "latency_repeats": one.repeats, "latency_stable": one.stable,
                    "latency_reference_ms": self.latency.reference_ms,
                    "latency_device": f"{self.latency.device}: {fp.get('gpu') or fp.get('cpu')}, "
                                      f"{self.latency.threads} thread(s), torch {fp.get('torch')}"}
            if many.batch > 1:
                out |= {"throughput_batch": many.batch, "throughput_images_per_s": many.images_per_s}
        out |= {f"proxy_{name}": value for name, value in self.proxies.items()}
        out |= {f"proxy_{name}": None for name in self.proxy_errors}
        return out


def count_macs(model: Any, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one input of ``input_shape``, summed over
    Conv and Linear layers (the convention of the layers space's static count)."""
    import torch
    from torch import nn

    total = [0]

    def conv(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        per_out = (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
        total[0] += int(output[0].numel()) * per_out

    def linear(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        total[0] += int(output[0].numel()) * module.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.modules.conv._ConvNd) else linear)
             for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return total[0]


STATS_SAMPLE = 10_000  # images the channel statistics are estimated from (the trainer uses them all)


def training_batch(x: np.ndarray, y: np.ndarray, x_scale: float, n: int = PROXY_BATCH, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded batch of ``n`` training images, normalised per channel as the trainer does (the
    statistics estimated from at most STATS_SAMPLE images, so a large set is never copied), and
    their labels."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
    sample = np.sort(rng.choice(len(x), size=min(STATS_SAMPLE, len(x)), replace=False))
    unit = np.asarray(x[sample], dtype=np.float64) / x_scale  # (S, C, H, W)
    mean = unit.mean(axis=(0, 2, 3), keepdims=True)
    std = np.maximum(unit.std(axis=(0, 2, 3), ddof=1, keepdims=True), 1e-3)
    batch = (np.asarray(x[pick], dtype=np.float64) / x_scale - mean) / std
    return batch.astype(np.float32), np.asarray(y)[pick].astype(np.int64)


class ModelProbe:
    """A long-lived measuring process; ``measure`` sends it one candidate."""

    def __init__(self, *, device: str = "cpu", threads: int = 1, latency: LatencySettings | None = None,
                 proxies: tuple[str, ...] = (), batch: tuple[np.ndarray, np.ndarray] | None = None,
                 timeout: float = 300.0) -> None:
        if latency is not None and (latency.device, latency.threads) != (device, threads):
            device, threads = latency.device, latency.threads
        if proxies:
            from evaluator.measure.proxies import check_names

            proxies = tuple(check_names(proxies))
        self.device, self.threads, self.latency, self.proxies, self.timeout = device, threads, latency, tuple(proxies), timeout
        self._batch_file: Path | None = None
        if batch is not None:
            fd, name = tempfile.mkstemp(prefix="archagent-probe-batch-", suffix=".npz")
            os.close(fd)
            np.savez(name, x=np.asarray(batch[0], dtype=np.float32), y=np.asarray(batch[1], dtype=np.int64))
            self._batch_file = Path(name)
        self._process: subprocess.Popen | None = None
        self._stderr: deque[str] = deque(maxlen=40)

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "LD_LIBRARY_PATH")}
        env |= {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                "OPENBLAS_NUM_THREADS": str(self.threads), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        process = subprocess.Popen([sys.executable, "-m", "evaluator.measure.probe"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self._stderr.clear()
        threading.Thread(target=self._drain_stderr, args=(process,), daemon=True).start()
        settings = {"device": self.device, "threads": self.threads, "proxies": list(self.proxies),
                    "batch": str(self._batch_file) if self._batch_file else None,
                    "latency": self.latency.settings() if self.latency else None}
        process.stdin.write(json.dumps(settings) + "\n")
        process.stdin.flush()
        self._process = process
        return process

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self._stderr.append(line.rstrip())

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if self._batch_file is not None:
            self._batch_file.unlink(missing_ok=True)
            self._batch_file = None

    def __enter__(self) -> "ModelProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- measuring -----------------------------------------------------------------------

    def measure(self, space: str, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, *,
                latency: bool = True, proxies: bool = True, stop_above_ms: float | None = None,
                **build_options: Any) -> Measurement:
        """Build ``spec`` (a validated spec of ``space``) untrained and measure it; ``latency`` and
        ``proxies`` switch those parts off for this call; a network slower than ``stop_above_ms``
        at batch 1 is not timed at the throughput batch."""
        request = {"space": space, "spec": spec, "input_shape": list(input_shape), "num_classes": num_classes,
                   "build_options": build_options, "latency": latency and self.latency is not None,
                   "proxies": list(self.proxies) if proxies else [], "stop_above_ms": stop_above_ms}
        process = self._process if self._process is not None and self._process.poll() is None else self._start()
        started = time.monotonic()
        reply: list[str] = []
        reader = threading.Thread(target=lambda: reply.append(process.stdout.readline()), daemon=True)
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except OSError:
            pass  # it died: the reader finds EOF and the error below says why
        reader.start()
        reader.join(self.timeout)
        if reader.is_alive() or not reply or not reply[0].startswith("{"):
            hung = reader.is_alive()
            process.kill()
            process.wait()
            self._process = None
            tail = "\n".join(self._stderr)[-1500:]
            if hung:
                raise ProbeError(f"the model probe took longer than {self.timeout:g} s on one candidate",
                                 hint="a network this slow to run is likely too large; lower its size or raise the timeout")
            raise ProbeError(f"the model probe process died (exit {process.returncode}) measuring a {space} network: {tail}",
                             hint="the network may be too large for memory; check it with `agent eval`")
        payload = json.loads(reply[0])
        if "error" in payload:
            raise ProbeError(payload["error"], hint=payload.get("hint", "check the spec with `agent eval`"))
        report = None
        if payload.get("latency"):
            lat = payload["latency"]
            lat["batches"] = [BatchLatency(**b) for b in lat["batches"]]
            report = LatencyReport(**lat, seconds=round(time.monotonic() - started, 3))
        return Measurement(params=payload["params"], flops=payload["flops"], latency=report, proxies=payload["proxies"],
                           proxy_errors=payload["proxy_errors"], seconds=time.monotonic() - started)


# -- the child process --------------------------------------------------------------------

def measure_latency(settings: LatencySettings, space: str, spec: dict[str, Any], input_shape: tuple[int, ...],
                    num_classes: int, **build_options: Any) -> LatencyReport:
    """Latency of the network ``spec`` describes (space ``nb201`` or ``layers``), untrained, measured
    as ``settings`` say in a fresh probe process of its own; LatencyError names what went wrong."""
    started = time.monotonic()
    try:
        with ModelProbe(device=settings.device, threads=settings.threads, latency=settings,
                        timeout=settings.timeout) as probe:
            report = probe.measure(space, spec, input_shape, num_classes, **build_options).latency
    except ProbeError as exc:
        raise LatencyError(exc.message, hint=exc.hint) from None
    return replace(report, seconds=round(time.monotonic() - started, 3))


def _serve() -> int:
    import torch

    from evaluator.measure.latency import LatencyError, fingerprint, setup_process, time_model
    from evaluator.models import build_model
    from evaluator.measure.proxies import ProxyError, compute_proxies, synthetic_batch
    from evaluator.spaces import get_space

    replies = os.fdopen(os.dup(1), "w", buffering=1)  # replies only: anything a library prints goes to stderr
    os.dup2(2, 1)
    settings = json.loads(sys.stdin.readline())
    device, threads = settings["device"], settings["threads"]
    try:
        notes = setup_process(device, threads)
    except LatencyError as exc:
        notes, setup_error = [], {"error": exc.message, "hint": exc.hint}
    else:
        setup_error = None
    batch = None
    if settings["batch"]:
        with np.load(settings["batch"]) as data:
            batch = (torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))
    for line in sys.stdin:
        if setup_error is not None:
            replies.write(json.dumps(setup_error) + "\n")
            continue
        try:
            request = json.loads(line)
            input_shape, num_classes = tuple(request["input_shape"]), request["num_classes"]
            space = get_space(request["space"], input_shape=input_shape, num_classes=num_classes)
            spec = space.validate(request["spec"])
            torch.manual_seed(0)
            model = build_model(space.name, spec, input_shape, num_classes, **request["build_options"]).to(device)
            out: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters()),
                                   "flops": count_macs(model, input_shape), "proxies": {}, "proxy_errors": {}}
            if request["proxies"]:
                if batch is None or tuple(batch[0].shape[1:]) != input_shape:
                    batch = synthetic_batch(input_shape, num_classes, PROXY_BATCH, seed=0)
                for name in request["proxies"]:
                    try:
                        out["proxies"] |= compute_proxies(model, batch[0], batch[1], [name], seed=0)
                    except ProxyError as exc:
                        out["proxy_errors"][name] = str(exc)[:500]
                    except Exception as exc:  # noqa: BLE001 - a proxy the network breaks is recorded as null
                        out["proxy_errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
            if request["latency"]:
                timed = time_model(model.eval(), input_shape, settings["latency"], request["stop_above_ms"])
                skipped = timed.pop("skipped")
                out["latency"] = {"device": device, "threads": threads, "fingerprint": fingerprint(device, threads),
                                  "notes": notes + skipped, **timed}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises ProbeError with it
            out = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                   "hint": getattr(exc, "hint", None) or "check the spec and the input shape"}
        replies.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
