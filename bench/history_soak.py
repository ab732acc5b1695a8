"""Two loops and four readers on one big history for a while: no lost write, no failed command.

On a home holding the fixture history (--candidates, built as history_fixture.py does; reused
from --home when it is there), for --minutes:

- loop A: `agent loop` on the NAS-Bench-201 table (evolution, --budget per run), one run after
  another: many small write transactions;
- loop B: `agent loop` on digits (a sandboxed training worker), one run for the whole time;
- four readers, each running (a second apart, --pause) `agent history`, `agent history --run` (the newest run), `agent sql`
  (evaluations per new run) and `agent report` (the newest finished run) in turn.

Counted: every command that failed (any exit status but 0), every loop run whose evaluations
in the history differ from its own summary, every candidate twice or without a final status,
and every evaluation count a reader saw that the history no longer holds (a lost write). The
readers' times are reported (median, 95th percentile, maximum per command).

    python bench/history_soak.py --home /tmp/h100k --candidates 100000 --minutes 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from _doc import DEFAULT_BENCHMARK_DIR, REPO_ROOT, publish, run_info
from history_fixture import build

FINAL = {"ok", "invalid", "failed", "timeout", "stopped_early", "pruned"}


class Soak:
    def __init__(self, home: Path, minutes: float, benchmark_dir: Path, budget: int, pause: float) -> None:
        self.home, self.benchmark_dir, self.budget, self.pause = home, benchmark_dir, budget, pause
        self.end = time.monotonic() + minutes * 60
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")} | {"AGENT_HOME": str(home)}
        self.since = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")  # run ids sort by their start
        self.lock = threading.Lock()
        self.failed: list[str] = []
        self.times: dict[str, list[float]] = defaultdict(list)
        self.summaries: list[dict] = []
        self.seen: dict[str, int] = {}  # run id -> the most evaluations a reader saw
        self.newest: str | None = None
        self.finished: list[str] = []

    def cli(self, label: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess | None:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "agent", *args], env=self.env, cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=timeout)
        with self.lock:
            self.times[label].append(time.perf_counter() - start)
            if out.returncode != 0:
                self.failed.append(f"{label}: exit {out.returncode}: {out.stderr.strip()[-400:]}")
                return None
        return out

    def loop_a(self) -> None:
        seed = 0
        while (left := self.end - time.monotonic()) > 20:
            seed += 1
            out = self.cli("loop A (nb201 table)", "loop", "--task", "nb201-cifar10", "--benchmark-dir",
                           str(self.benchmark_dir), "--proposer", "evolution", "--budget", str(self.budget),
                           "--seed", str(seed), "--minutes", f"{left / 60:.2f}", "--json")
            if out is not None:
                self._finished(json.loads(out.stdout))

    def loop_b(self) -> None:
        left = self.end - time.monotonic()
        out = self.cli("loop B (digits training)", "loop", "--task", "digits", "--proposer", "evolution", "--epochs", "1",
                       "--workers", "1", "--proxies", "none", "--final-seeds", "1", "--budget", "100000",
                       "--minutes", f"{left / 60:.2f}", "--json")
        if out is not None:
            self._finished(json.loads(out.stdout))

    def _finished(self, summary: dict) -> None:
        with self.lock:
            self.summaries.append(summary)
            self.finished.append(summary["run_id"])

    def reader(self, i: int) -> None:
        k = i
        while time.monotonic() < self.end:
            time.sleep(self.pause)
            which = k % 4
            k += 1
            if which == 0:
                self.cli("agent history", "history", "--json")
            elif which == 1:
                out = self.cli("agent sql (evaluations per new run)", "sql",
                               f"SELECT run_id, count(*) FROM evaluations WHERE purpose = 'search' AND run_id >= "
                               f"'{self.since}' GROUP BY run_id ORDER BY run_id", "--json", "--max-rows", "100000")
                if out is not None:
                    rows = json.loads(out.stdout)["rows"]
                    with self.lock:
                        for run_id, n in rows:
                            self.seen[run_id] = max(self.seen.get(run_id, 0), n)
                        if rows:
                            self.newest = rows[-1][0]
            elif which == 2 and self.newest:
                self.cli("agent history --run NEWEST", "history", "--run", self.newest, "--json")
            elif which == 3 and self.finished:
                self.cli("agent report RUN", "report", self.finished[-1], "--out",
                         str(self.home / "reports" / f"soak-{i}.html"))

    def run(self) -> None:
        threads = [threading.Thread(target=self.loop_a), threading.Thread(target=self.loop_b)]
        threads += [threading.Thread(target=self.reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(30)
            left = (self.end - time.monotonic()) / 60
            with self.lock:
                print(f"{max(0.0, left):.1f} min left: {len(self.summaries)} loop runs finished, "
                      f"{sum(len(v) for v in self.times.values())} commands, {len(self.failed)} failed",
                      file=sys.stderr, flush=True)
        for t in threads:
            t.join()

    def check(self) -> dict:
        problems: list[str] = []
        con = duckdb.connect(str(self.home / "history.duckdb"), read_only=True)
        try:
            stored = dict(con.execute("SELECT run_id, count(*) FROM evaluations WHERE purpose = 'search' AND run_id >= ? "
                                      "GROUP BY run_id", [self.since]).fetchall())
            for s in self.summaries:
                if stored.get(s["run_id"], 0) != s["evaluations"]:
                    problems.append(f"run {s['run_id']}: summary {s['evaluations']}, history {stored.get(s['run_id'])}")
            for run_id, n in self.seen.items():
                if stored.get(run_id, 0) < n:
                    problems.append(f"run {run_id}: a reader saw {n} evaluations, the history holds {stored.get(run_id)}")
            dup = con.execute("SELECT count(*) FROM (SELECT candidate_id FROM evaluations WHERE purpose = 'search' AND "
                              "run_id >= ? GROUP BY candidate_id HAVING count(*) > 1)", [self.since]).fetchone()[0]
            not_final = con.execute("SELECT count(*) FROM candidates WHERE run_id >= ? AND status NOT IN "
                                    f"({', '.join(repr(s) for s in sorted(FINAL))})", [self.since]).fetchone()[0]
            total = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
            new = con.execute("SELECT count(*) FROM evaluations WHERE run_id >= ?", [self.since]).fetchone()[0]
        finally:
            con.close()
        return {"problems": problems, "duplicated": dup, "not_final": not_final, "candidates_after": total,
                "new_evaluations": new, "runs": len(self.summaries), "failed": self.failed,
                "commands": {k: {"n": len(v), "median": statistics.median(v), "p95": sorted(v)[int(0.95 * (len(v) - 1))],
                                 "max": max(v)} for k, v in sorted(self.times.items())}}


def render(r: dict, info, args) -> str:
    lines = [f"## Two loops and four readers on a history of {args.candidates:,} candidates (bench/history_soak.py)", "",
             *info.bullets()[:3], "",
             f"{args.minutes:g} minutes: {r['runs']} loop runs finished, {r['new_evaluations']:,} evaluations written "
             f"(the history then held {r['candidates_after']:,} candidates).", "",
             "| command | runs | median s | 95th percentile s | max s |", "|---|---:|---:|---:|---:|"]
    for name, c in r["commands"].items():
        lines.append(f"| {name} | {c['n']} | {c['median']:.2f} | {c['p95']:.2f} | {c['max']:.2f} |")
    lines += ["", "| check | result |", "|---|---:|",
              f"| failed commands | {len(r['failed'])} |",
              f"| lost writes (a run's or a reader's count not in the history) | {len(r['problems'])} |",
              f"| candidates evaluated twice | {r['duplicated']} |",
              f"| candidates without a final status | {r['not_final']} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--budget", type=int, default=300, help="loop A: evaluations per run")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds each reader waits between its commands")
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR)
    parser.add_argument("--home", type=Path, help="the history's home (built there when missing; kept)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        build(home, args.candidates)
        soak = Soak(home, args.minutes, args.benchmark_dir, args.budget, args.pause)
        soak.run()
        result = soak.check()
    for line in result["failed"] + result["problems"]:
        print("PROBLEM:", line, file=sys.stderr)
    publish("history_soak", render(result, run_info(args.benchmark_dir, started), args), write=not args.no_write)
    bad = result["failed"] or result["problems"] or result["duplicated"] or result["not_final"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
