"""What the sandbox costs a job: start-up time with and without each isolation layer.

What it measures
    Wall seconds from starting a job to its exit, through ``sandbox.process.ChildProcess``
    (channel, key, watchdogs, the final kill included) and, for reference, a bare
    ``subprocess.run``, for two jobs: ``python -I -c pass`` (the fixed cost) and ``python -I -c
    "import torch"`` (what every training job pays first). Modes:
      plain       subprocess.run, nothing else
      process     ChildProcess without isolation (process group, rlimits, clean environment)
      none        ChildProcess with Isolation(backend="none"): seccomp, cgroups, quota watchdog
      unshare     ... with unshare's network and pid namespaces
      bwrap       ... with bubblewrap (the default where it works): every layer
    Modes this machine cannot run are left out (``agent doctor`` says why). The modes alternate
    within each repeat, so load from other jobs hits all alike; the table gives the median and
    the minimum over repeats.

How to run (from the repository root; about a minute on 2 cores)
    python bench/sandbox_overhead.py                 # updates docs/benchmarks.md
    python bench/sandbox_overhead.py --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, publish, run_info, stderr_progress  # noqa: E402

from sandbox.isolation import Isolation, detect_layers  # noqa: E402
from sandbox.environment import clean_env  # noqa: E402
from sandbox.limits import Limits  # noqa: E402
from sandbox.process import ChildProcess  # noqa: E402

JOBS = {"python -c pass": "pass", "python -c 'import torch'": "import torch"}


def modes() -> dict[str, Isolation | None | str]:
    available = {layer.name for layer in detect_layers() if layer.available}
    out: dict[str, Isolation | None | str] = {"plain": "plain", "process": None, "none": Isolation(backend="none")}
    for backend in ("unshare", "bwrap"):
        if backend in available:
            out[backend] = Isolation(backend=backend)
    return out


def time_job(mode: Isolation | None | str, code: str, scratch: Path) -> float:
    argv = [sys.executable, "-I", "-c", code]
    started = time.perf_counter()
    if mode == "plain":
        subprocess.run(argv, check=True, cwd=scratch, env=clean_env(home=scratch), capture_output=True)
        return time.perf_counter() - started
    proc = ChildProcess(argv, cwd=scratch, env=clean_env(home=scratch), limits=Limits(wall_seconds=120), key=b"k",
                        on_message=lambda line: None, isolation=mode)
    proc.start()
    result = proc.wait()
    if result.returncode != 0:
        raise SystemExit(f"the job failed in mode {mode!r}: {result.tail_text[-1000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    started = time.perf_counter()
    chosen = modes()
    seconds: dict[tuple[str, str], list[float]] = {(m, j): [] for m in chosen for j in JOBS}
    with tempfile.TemporaryDirectory() as tmp, stderr_progress(args.repeats * len(chosen) * len(JOBS),
                                                                "sandbox start-up") as advance:
        scratch = Path(tmp)
        for r in range(args.repeats):
            order = list(chosen) if r % 2 == 0 else list(reversed(chosen))
            for name in order:
                for job, code in JOBS.items():
                    seconds[(name, job)].append(time_job(chosen[name], code, scratch))
                    advance(f"{name}: {job}", line=False)
    info = run_info(DEFAULT_BENCHMARK_DIR, started)
    lines = ["## Sandbox start-up (bench/sandbox_overhead.py)", "", *info.bullets()[:3], *info.bullets()[4:],
             f"- {args.repeats} repeats, modes alternating; seconds from start to exit, median / min", "",
             "| mode | " + " | ".join(JOBS) + " |", "|---|" + "---|" * len(JOBS)]
    for name in chosen:
        cells = [f"{statistics.median(seconds[(name, j)]):.3f} / {min(seconds[(name, j)]):.3f}" for j in JOBS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    base = statistics.median(seconds[("plain", "python -c pass")])
    if "bwrap" in chosen:
        extra = statistics.median(seconds[("bwrap", "python -c pass")]) - base
        lines += ["", f"Every layer together (bwrap) adds {extra * 1000:.0f} ms to a job's start against a bare "
                      "subprocess; importing torch dominates every training job's start."]
    publish("sandbox_overhead", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
