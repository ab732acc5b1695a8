"""What every bench script shares: where it ran, its own section of docs/benchmarks.md, and
progress on stderr."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import agent

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCHMARK_DIR = REPO_ROOT.parent / "shared" / "benchdata" / "nb201"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
DOC_INTRO = """# Benchmarks

Every number on this page comes from a script in `bench/`. Each section says which script
wrote it, on which machine, on what date and with which exact command; running that command
again rewrites only that section. Accuracies are in percent here; the scripts' JSON output
and the project's API use fractions.
"""


@dataclass(frozen=True)
class RunInfo:
    machine: str
    date: str
    command: str
    cwd: str  # where the command ran
    versions: str
    benchmark_dir: str
    wall_seconds: float

    def bullets(self) -> list[str]:
        return [
            f"- machine: {self.machine}",
            f"- date: {self.date}",
            f"- command: `{self.command}` ({self.cwd})",
            f"- tables: `{self.benchmark_dir}`",
            f"- versions: {self.versions}",
        ]


def run_info(benchmark_dir: Path, started: float) -> RunInfo:
    """``started`` is a time.perf_counter() value from the start of the script."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
              if line.startswith("model name")]
    cpu = models[0] if models else (platform.processor() or "unknown cpu")
    return RunInfo(
        machine=f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        date=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        command=shlex.join(["python", *sys.argv]),
        cwd="from the repository root" if Path.cwd() == REPO_ROOT else f"run in {Path.cwd()}",
        versions=f"archagent {agent.__version__}, python {platform.python_version()}",
        benchmark_dir=os.path.relpath(benchmark_dir, REPO_ROOT),
        wall_seconds=round(time.perf_counter() - started, 1),
    )


def publish(key: str, body: str, write: bool = True) -> None:
    """Print a bench section and, unless ``write`` is false (--no-write), put it into docs/benchmarks.md."""
    print(body)
    if write:
        write_doc(key, body)
        print(f"\nwrote section {key} of {DOC}", file=sys.stderr)


def write_doc(key: str, body: str) -> None:
    """Replace the section marked ``bench:<key>`` of docs/benchmarks.md (or add it), leaving the rest alone."""
    start, end = f"<!-- bench:{key} start -->", f"<!-- bench:{key} end -->"
    section = f"{start}\n{body}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else DOC_INTRO
    i, j = text.find(start), text.find(end)
    if (i < 0) != (j < 0) or j < i:
        raise SystemExit(f"{DOC}: the markers of the {key} section are broken; fix or remove them by hand")
    text = text[:i] + section + text[j + len(end):] if i >= 0 else text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")


def cli_search(home: Path, *args: str, timeout: float = 7200) -> tuple[dict, float]:
    """``agent search ARGS --json`` as a user runs it: a fresh process with AGENT_HOME=home (and no
    other AGENT_ settings). Returns the summary and the wall seconds, timed from outside."""
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")} | {"AGENT_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agent", "search", *args, "--json"], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{Path(sys.argv[0]).name}: agent search failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout), wall


@contextmanager
def stderr_progress(total: int, description: str) -> Iterator[Callable[..., None]]:
    """Yields ``advance(label, line=True)``: a rich bar on a terminal; otherwise ``label`` is
    printed as one line on stderr when ``line`` is true (a log stays short)."""
    if not sys.stderr.isatty():
        def log(label: str, line: bool = True) -> None:
            if line:
                print(label, file=sys.stderr, flush=True)
        yield log
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda label, line=True: bar.update(task_id, advance=1, description=label)
