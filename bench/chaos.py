"""Fault injection across every process of a loop: random SIGKILLs, then --resume, then checks.

Each cycle is a real `agent loop` (digits, two sandboxed workers; the first half of the cycles on
the local pool, the second half on a private Ray cluster) while two reader threads poll the
history the way people do (`agent history`, `agent history --run`, `agent sql`, `agent
report`). Seeded random SIGKILLs hit, at random times:

- the coordinator (anywhere, or while it holds the history lock for a write transaction, found
  in /proc/locks), after which the loop is started again with --resume;
- a training worker (the sandboxed python process), or on Ray a CandidateRunner actor;
- a reader (anywhere, or while it holds the history lock).

After the last kill the loop runs to its end and the cycle is checked:

- every candidate exactly once (unique ids and sequence numbers), each with a final status, and
  one search evaluation per trained candidate;
- every acknowledged evaluation is there with what was acknowledged: the coordinator's
  "N/B candidate: val X" lines (printed only after the commit) and every evaluation a reader
  saw (`agent sql`) or a final status it saw (`agent history --run`);
- lookups by key find what full scans find (after the WAL replays the kills leave);
- no process of the run is left: this script is a child subreaper (PR_SET_CHILD_SUBREAPER), so
  every orphan of a killed process becomes its child, and none may remain once the cycle ends;
- the run's job folders, the sandboxes' temporary folders and the job cgroups are removed;
- no reader failed except by our kills (a lock wait that ran out, a damaged file, ... count).

    python bench/chaos.py --cycles 100            # the table in docs/benchmarks.md
    python bench/chaos.py --cycles 2 --no-write   # the short version the tests run

The model service (issue 24) is not a target yet: it does not exist.

Why one module: the process table, the readers, a cycle and its checks are one scenario whose
parts share its bookkeeping (what was started here, what was killed, what was acknowledged);
apart, each would be read only beside the others.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from _doc import REPO_ROOT, publish, run_info

FINAL = {"ok", "invalid", "failed", "timeout", "stopped_early", "pruned"}
PR_SET_CHILD_SUBREAPER = 36
ACK = re.compile(r"^\d+/\d+ (\S+): (?:val (\d\.\d{4})|(\w+)) \(")
RUN_LINE = re.compile(r"^run (\S+):")
CGROUP_ROOTS = ("/sys/fs/cgroup",)
TARGETS_LOCAL = {"coordinator": 3, "coordinator in a write": 2, "worker": 2, "reader": 1, "reader holding the lock": 1}
TARGETS_RAY = {"coordinator": 3, "coordinator in a write": 2, "worker": 1, "ray actor": 2, "reader": 1,
               "reader holding the lock": 1}
GRACE_S = 30.0  # how long the processes of a killed one may take to go (parent-death signals, Ray's reaper)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------------

class Children:
    """Every process this script starts, and the reaping of orphans it inherits as a subreaper.

    Popen must be the only one to reap its own children (else it sees exit status 0), so starting
    a process and reaping orphans take one lock: an orphan is any zombie child not started here."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: set[int] = set()
        self.procs: list[subprocess.Popen] = []
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")

    def start(self, argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
        with self.lock:
            p = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, **kw)
            self.started.add(p.pid)
            self.procs.append(p)
            return p

    def live(self) -> set[int]:
        """The processes started here that still run (a coordinator, readers)."""
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]
            return {p.pid for p in self.procs}

    def reap_orphans(self) -> None:
        with self.lock:
            for pid, (ppid, state, _) in table().items():
                if ppid == os.getpid() and state == "Z" and pid not in self.started:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass


def table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command line) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        out[int(name)] = (int(rest[1]), rest[0], cmd)
    return out


def descendants(root: int, procs: dict[int, tuple[int, str, str]] | None = None) -> list[int]:
    procs = table() if procs is None else procs
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


def lock_holders(lock_file: Path) -> dict[int, str]:
    """pid -> READ or WRITE: who holds the history's flock now (waiters are not listed)."""
    try:
        st = os.stat(lock_file)
        text = Path("/proc/locks").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or f[1] != "FLOCK":
            continue  # "->" lines are waiters
        try:
            if int(f[5].rsplit(":", 1)[1]) == st.st_ino:
                out[int(f[4])] = f[3]
        except (ValueError, IndexError):
            continue
    return out


# -- readers --------------------------------------------------------------------------------

@dataclass
class Seen:
    evaluations: set[str] = field(default_factory=set)  # evaluation ids a reader saw
    statuses: dict[str, str] = field(default_factory=dict)  # candidate id -> final status a reader saw
    reads: int = 0
    failed: list[str] = field(default_factory=list)


class Readers:
    """Threads that run one reader command after another on the home until stopped."""

    def __init__(self, children: Children, env: dict[str, str], run_id: str, out_dir: Path, n: int = 2) -> None:
        self.children, self.env, self.run_id, self.out_dir = children, env, run_id, out_dir
        self.seen = Seen()
        self.live: dict[int, subprocess.Popen] = {}
        self.killed: set[int] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def commands(self) -> list[list[str]]:
        r = self.run_id
        return [["history", "--run", r, "--json"],
                ["sql", f"SELECT evaluation_id, candidate_id, status FROM evaluations WHERE run_id = '{r}'", "--json",
                 "--max-rows", "100000"],
                ["history", "--json"],
                ["report", r, "--out", str(self.out_dir / f"{r}.html")]]

    def _loop(self, i: int) -> None:
        k = i
        while not self.stopping.is_set():
            args = self.commands()[k % 4]
            k += 1
            p = self.children.start([sys.executable, "-m", "agent", *args], self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            with self.lock:
                self.live[p.pid] = p
            out, err = p.communicate()
            with self.lock:
                del self.live[p.pid]
                killed = p.pid in self.killed
            if killed:
                continue
            if p.returncode != 0:
                self.seen.failed.append(f"agent {' '.join(args[:2])}: exit {p.returncode}: {err.strip()[-300:]}")
                continue
            self.seen.reads += 1
            if args[0] == "sql":
                for row in json.loads(out)["rows"]:
                    self.seen.evaluations.add(row[0])
            elif args[0] == "history" and args[1] == "--run":
                for c in json.loads(out)["candidates"]:
                    if c["status"] in FINAL:
                        self.seen.statuses[c["candidate_id"]] = c["status"]

    def pick(self, rng: random.Random) -> subprocess.Popen | None:
        with self.lock:
            live = [p for p in self.live.values() if p.poll() is None]
        return rng.choice(live) if live else None

    def mark_killed(self, pid: int) -> None:
        with self.lock:
            self.killed.add(pid)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=300)


# -- one cycle ------------------------------------------------------------------------------

@dataclass
class Coordinator:
    proc: subprocess.Popen
    lines: list[str]
    reader: threading.Thread


@dataclass
class CycleResult:
    pool: str
    run_id: str = ""
    kills: Counter = field(default_factory=Counter)
    missed: int = 0  # kills whose target had already gone
    candidates: int = 0
    evaluations: int = 0
    acked: int = 0
    reads: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    index_mismatch: list[str] = field(default_factory=list)
    leftover: list[str] = field(default_factory=list)
    scratch_left: list[str] = field(default_factory=list)
    cgroups_left: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        return [f"{name}: {items[:5]}" for name, items in (
            ("lost", self.lost), ("duplicated", self.duplicated), ("not final", self.not_final),
            ("index != scan", self.index_mismatch), ("leftover processes", self.leftover),
            ("scratch left", self.scratch_left), ("cgroups left", self.cgroups_left), ("failed", self.failed)) if items]


class Cycle:
    def __init__(self, args, children: Children, home: Path, tmp: Path, pool: str, seed: int) -> None:
        self.args, self.children, self.home, self.tmp, self.pool = args, children, home, tmp, pool
        self.rng = random.Random(seed)
        self.seed = seed
        # TMPDIR of its own: what the loop's processes leave in temporary folders is theirs alone
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")} | {
            "AGENT_HOME": str(home), "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}
        self.result = CycleResult(pool)
        self.acked: dict[str, str] = {}  # candidate id -> "0.1234" or a status, from the coordinator's lines
        self.lock_file = home / "history.duckdb.lock"

    # the loop's own process

    def start(self, *loop_args: str) -> Coordinator:
        p = self.children.start([sys.executable, "-m", "agent", "loop", *loop_args], self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []

        def read() -> None:
            for line in p.stderr:
                lines.append(line.rstrip("\n"))
                m = ACK.match(line)
                if m:
                    self.acked[m.group(1)] = m.group(2) or m.group(3)

        t = threading.Thread(target=read, daemon=True)
        t.start()
        return Coordinator(p, lines, t)

    def first_args(self) -> list[str]:
        a = ["--task", "digits", "--proposer", "evolution", "--population", "3", "--tournament", "2",
             "--budget", str(self.args.budget), "--epochs", "1", "--workers", "2", "--final-seeds", "1",
             "--proxies", "none", "--seed", str(self.seed), "--recheck-every", "0"]
        return a + (["--pool", "ray"] if self.pool == "ray" else [])

    def run_id_of(self, c: Coordinator, timeout: float = 120) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(c.lines):
                m = RUN_LINE.match(line)
                if m:
                    return m.group(1)
            if c.proc.poll() is not None:
                c.reader.join(5)
                for line in c.lines:
                    m = RUN_LINE.match(line)
                    if m:
                        return m.group(1)
                return None
            time.sleep(0.05)
        return None

    # targets

    def _pick_process(self, c: Coordinator, want: str) -> int | None:
        procs = table()
        mine = descendants(c.proc.pid, procs)
        if want == "ray actor":
            found = [p for p in mine if procs[p][2].startswith("ray::CandidateRunner")]
        else:  # the sandboxed python of a training job (not bwrap around it)
            found = [p for p in mine if "evaluator.job.worker" in procs[p][2]
                     and not procs[p][2].split(" ", 1)[0].endswith("bwrap")]
        return self.rng.choice(found) if found else None

    def _in_transaction(self, pid: int, mode: str | None, timeout: float = 10.0) -> bool:
        """Wait (polling /proc/locks) until ``pid`` holds the history lock (in ``mode``, if given)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            held = lock_holders(self.lock_file).get(pid)
            if held is not None and (mode is None or held == mode):
                return True
            time.sleep(0.0005)
        return False

    def strike(self, c: Coordinator, readers: Readers) -> bool:
        """One seeded random kill; True when it was the coordinator."""
        targets = TARGETS_RAY if self.pool == "ray" else TARGETS_LOCAL
        what = self.rng.choices(list(targets), weights=list(targets.values()))[0]
        if what.startswith("coordinator"):
            if what == "coordinator in a write" and not self._in_transaction(c.proc.pid, "WRITE"):
                what = "coordinator"  # no write within the wait: an ordinary kill
            if kill(c.proc.pid):
                self.result.kills[what] += 1
            else:
                self.result.missed += 1
            return True
        if what.startswith("reader"):
            for _ in range(200):
                p = readers.pick(self.rng)
                if p is not None and (what == "reader" or self._in_transaction(p.pid, None, timeout=0.05)):
                    readers.mark_killed(p.pid)
                    if kill(p.pid):
                        self.result.kills[what] += 1
                        return False
                time.sleep(0.01)
            self.result.missed += 1
            return False
        pid = None
        end = time.monotonic() + 10
        while pid is None and time.monotonic() < end and c.proc.poll() is None:
            pid = self._pick_process(c, what)
            if pid is None:
                time.sleep(0.1)
        if pid is not None and kill(pid):
            self.result.kills[what] += 1
        else:
            self.result.missed += 1
        return False

    def strays(self) -> list[int]:
        """Our descendants other than the processes started here that still run (the readers) and
        theirs: the orphans of killed processes, which this subreaper inherits."""
        self.children.reap_orphans()
        keep = self.children.live()
        procs = table()
        kept = set(keep)
        for k in keep:
            kept.update(descendants(k, procs))
        return [p for p in descendants(os.getpid(), procs) if p not in kept and procs[p][1] != "Z"]

    def wait_strays(self) -> None:
        end = time.monotonic() + GRACE_S
        left = self.strays()
        while left and time.monotonic() < end:
            time.sleep(0.2)
            left = self.strays()
        if left:
            procs = table()
            for p in left:
                if p in procs:
                    self.result.leftover.append(procs[p][2][:160])
                kill(p)

    # the cycle

    def run(self) -> CycleResult:
        start = time.monotonic()
        before_tmp = set(os.listdir(self.tmp))
        c = self.start(*self.first_args())
        run_id = self.run_id_of(c)
        if run_id is None:
            c.proc.kill()
            c.proc.wait()
            self.result.failed.append("the loop did not start: " + " | ".join(c.lines[-5:]))
            return self.result
        self.result.run_id = run_id
        readers = Readers(self.children, self.env, run_id, self.home / "reports")
        kills = self.rng.randint(1, self.args.max_kills)
        attempts = 0
        while True:
            if kills > 0 and c.proc.poll() is None:
                try:
                    c.proc.wait(timeout=self.rng.uniform(0.5, 6.0))
                except subprocess.TimeoutExpired:
                    kills -= 1
                    if self.strike(c, readers):
                        c.proc.wait()
                        c.reader.join(10)
                        self.wait_strays()
                        c = self.start("--resume", run_id, "--json")
                    continue
            try:
                c.proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                self.result.failed.append("the loop ran past 600 s")
            c.reader.join(10)
            if c.proc.returncode == 0:
                break
            if c.proc.returncode != -signal.SIGKILL or attempts >= 2:
                self.result.failed.append(f"loop exit {c.proc.returncode}: " + " | ".join(c.lines[-4:]))
            attempts += 1
            if attempts > 3:
                break
            self.wait_strays()
            c = self.start("--resume", run_id, "--json")
        readers.stop()
        self.wait_strays()
        self.check(run_id, readers.seen, before_tmp)
        self.result.seconds = time.monotonic() - start
        return self.result

    def check(self, run_id: str, seen: Seen, before_tmp: set[str]) -> None:
        r = self.result
        r.reads = seen.reads
        r.failed += seen.failed
        r.acked = len(self.acked)
        con = duckdb.connect(str(self.home / "history.duckdb"), read_only=True)
        try:
            run = con.execute("SELECT status, budget FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if run is None or run[0] != "done":
                r.failed.append(f"run {run_id} is {run and run[0]}, not done")
            cands = con.execute("SELECT candidate_id, seq, status FROM candidates WHERE run_id = ?", [run_id]).fetchall()
            r.candidates = len(cands)
            ids, seqs = Counter(c[0] for c in cands), Counter(c[1] for c in cands)
            r.duplicated += [k for k, n in ids.items() if n > 1] + [f"seq {k}" for k, n in seqs.items() if n > 1]
            r.not_final += [c[0] for c in cands if c[2] not in FINAL]
            search = con.execute("SELECT candidate_id, status, val_accuracy, evaluation_id FROM evaluations "
                                 "WHERE run_id = ? AND purpose = 'search'", [run_id]).fetchall()
            r.evaluations = len(search)
            per = Counter(e[0] for e in search)
            r.duplicated += [f"{k} evaluated {n} times" for k, n in per.items() if n > 1]
            trained = [c[0] for c in cands if c[2] != "invalid"]
            r.lost += [f"{k}: no search evaluation" for k in trained if per[k] == 0]
            if run is not None and run[0] == "done" and len(search) != run[1]:
                r.failed.append(f"{len(search)} search evaluations for a budget of {run[1]}")
            by_cand = {e[0]: e for e in search}
            for cid, what in self.acked.items():
                e = by_cand.get(cid)
                if e is None:
                    r.lost.append(f"{cid}: acknowledged, not in the history")
                elif what in FINAL:
                    if e[1] != what:
                        r.lost.append(f"{cid}: acknowledged {what}, stored {e[1]}")
                elif e[2] is None or f"{e[2]:.4f}" != what:
                    r.lost.append(f"{cid}: acknowledged val {what}, stored {e[2]}")
            stored_evals = {row[0] for row in con.execute("SELECT evaluation_id FROM evaluations").fetchall()}
            r.lost += [f"evaluation {e}: seen by a reader, gone" for e in seen.evaluations - stored_evals]
            statuses = dict((c[0], c[2]) for c in cands)
            r.lost += [f"{k}: a reader saw {s}, stored {statuses.get(k)}" for k, s in seen.statuses.items()
                       if statuses.get(k) != s]
            # lookups by key against full scans
            scanned = Counter(row[0] for row in con.execute("SELECT candidate_id FROM evaluations").fetchall())
            for cid in ids:
                by_key = con.execute("SELECT count(*) FROM evaluations WHERE candidate_id = ?", [cid]).fetchone()[0]
                if by_key != scanned.get(cid, 0):
                    r.index_mismatch.append(f"evaluations of {cid}: {by_key} by key, {scanned.get(cid, 0)} scanned")
                if con.execute("SELECT count(*) FROM candidates WHERE candidate_id = ?", [cid]).fetchone()[0] != 1:
                    r.index_mismatch.append(f"candidate {cid} not found by key")
            for eid in stored_evals:
                if con.execute("SELECT count(*) FROM evaluations WHERE evaluation_id = ?", [eid]).fetchone()[0] != 1:
                    r.index_mismatch.append(f"evaluation {eid} not found by key")
        finally:
            con.close()
        jobs = self.home / "work" / run_id / "jobs"
        if jobs.is_dir():
            r.scratch_left += [str(p) for p in jobs.iterdir()]
        tmp = self.tmp
        for name in sorted(set(os.listdir(tmp)) - before_tmp):
            if name.startswith("archagent") and name != "archagent-ray":  # that one holds the nodes' folders
                r.scratch_left.append(str(tmp / name))
        ray_tmp = tmp / "archagent-ray"
        if ray_tmp.is_dir():
            r.scratch_left += [str(p) for p in ray_tmp.iterdir() if run_id in p.name]
        r.cgroups_left += job_cgroups(with_processes=True)


def job_cgroups(with_processes: bool) -> list[str]:
    """Our job cgroups (archagent-<pid>-...) of coordinators that are gone: those holding a process,
    or (``with_processes`` false) the empty ones too."""
    out = []
    for root in CGROUP_ROOTS:
        for dirpath, dirnames, _ in os.walk(root):
            for d in list(dirnames):
                if d.startswith("archagent-") and not d.startswith("archagent-probe-"):
                    dirnames.remove(d)
                    path = Path(dirpath) / d
                    owner = d[len("archagent-"):].split("-", 1)[0]
                    if owner.isdigit() and Path(f"/proc/{owner}").exists():
                        continue
                    try:
                        procs = (path / "cgroup.procs").read_text().split()
                    except OSError:
                        continue
                    if procs or not with_processes:
                        out.append(f"{path} ({len(procs)} processes)")
    return out


# -- the bench ------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100, help="loops to run (the first half local, then Ray)")
    parser.add_argument("--budget", type=int, default=6, help="evaluations per loop")
    parser.add_argument("--max-kills", type=int, default=4, help="at most this many kills per cycle (at least 1)")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--pools", nargs="+", choices=["local", "ray"], default=["local", "ray"])
    parser.add_argument("--home", type=Path, help="AGENT_HOME for every cycle (default: a new temporary one)")
    parser.add_argument("--json", action="store_true", help="print the totals as JSON on stdout")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    children = Children()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        home = args.home or Path(tmp) / "home"
        scratch = Path(tmp) / "tmp"
        scratch.mkdir()
        results: list[CycleResult] = []
        for i in range(args.cycles):
            pool = args.pools[min(len(args.pools) - 1, i * len(args.pools) // args.cycles)]
            r = Cycle(args, children, home, scratch, pool, rng.randrange(1 << 30)).run()
            results.append(r)
            kills = sum(r.kills.values())
            log(f"cycle {i + 1}/{args.cycles} {pool}: run {r.run_id}, {kills} kills ({dict(r.kills)}), "
                f"{r.candidates} candidates, {r.acked} acknowledged, {r.reads} reads, {r.seconds:.0f} s"
                + ("" if not r.problems() else "\n  PROBLEMS: " + "; ".join(r.problems())))
    totals = summarise(results, job_cgroups(with_processes=False))
    if args.json:
        print(json.dumps(totals, indent=2))
    body = render(totals, run_info(REPO_ROOT, started))
    if not args.json:
        publish("chaos", body, write=not args.no_write)
    elif not args.no_write:
        publish("chaos", body)
    bad = totals["lost"] + totals["duplicated"] + totals["not_final"] + totals["index_mismatch"] + totals["leftover"] \
        + totals["scratch_left"] + totals["cgroups_left"] + totals["failed"]
    sys.exit(1 if bad else 0)


def summarise(results: list[CycleResult], stale_cgroups: list[str]) -> dict:
    kills: Counter = Counter()
    for r in results:
        kills.update(r.kills)
    per_pool = {}
    for pool in sorted({r.pool for r in results}):
        rs = [r for r in results if r.pool == pool]
        per_pool[pool] = {"cycles": len(rs), "kills": sum(sum(r.kills.values()) for r in rs),
                          "candidates": sum(r.candidates for r in rs), "acknowledged": sum(r.acked for r in rs),
                          "reads": sum(r.reads for r in rs), "seconds": round(sum(r.seconds for r in rs), 1)}
    problems = {name: [f"{r.run_id}: {x}" for r in results for x in getattr(r, name)]
                for name in ("lost", "duplicated", "not_final", "index_mismatch", "leftover", "scratch_left",
                             "cgroups_left", "failed")}
    return {"cycles": len(results), "kills": dict(kills), "missed_kills": sum(r.missed for r in results),
            "pools": per_pool, "stale_empty_cgroups": stale_cgroups,
            **{k: len(v) for k, v in problems.items()}, "problems": problems}


def render(t: dict, info) -> str:
    lines = ["## Fault injection: random SIGKILLs across a loop's processes (bench/chaos.py)", "", *info.bullets()[:3],
             f"- wall time: {info.wall_seconds / 60:.0f} min", "",
             "| pool | cycles | kills | candidates | acknowledged evaluations | reader commands | minutes |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for pool, p in t["pools"].items():
        lines.append(f"| {pool} | {p['cycles']} | {p['kills']} | {p['candidates']} | {p['acknowledged']} | "
                     f"{p['reads']} | {p['seconds'] / 60:.1f} |")
    lines += ["", "| kill target | kills |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(t["kills"].items())]
    lines += [f"| (target already gone) | {t['missed_kills']} |", "",
              "| check | result |", "|---|---:|"]
    for key, label in (("lost", "acknowledged writes lost"), ("duplicated", "candidates duplicated"),
                       ("not_final", "candidates without a final status"),
                       ("index_mismatch", "index lookups disagreeing with scans"),
                       ("leftover", "processes left after a cycle"), ("scratch_left", "job folders left"),
                       ("cgroups_left", "job cgroups left holding a process"), ("failed", "failed commands")):
        lines.append(f"| {label} | {t[key]} |")
    lines.append(f"| empty job cgroups of dead coordinators at the end | {len(t['stale_empty_cgroups'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
