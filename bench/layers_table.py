"""The surrogate's quality on the layers space: a table of real trainings on the 8x8 digits.

What it measures
    The layers space has no published table, so this script makes one: a random search
    (`agent search --task digits --proposer random --budget 120 --seed 7 --final-seeds 1`, a fresh
    process and AGENT_HOME, about 20 minutes on 2 cores) whose candidates, their validation
    accuracy, worker wall seconds and device seconds are kept in
    runs/bench-cache/digits-layers-random.json (made once, reused after; `--rebuild` makes it
    again). On that table, for n = 10, 30 and 100 training candidates drawn at random (repeat r:
    numpy.random.default_rng([r, n])), the rest held out:

    - validation accuracy: the project's surrogate (agent.surrogate.model.GaussianSurrogate on the
      space's encodings) -- Spearman of prediction and measurement on the held-out candidates, and
      the share inside its 80% interval (0.80 is calibrated);
    - validation accuracy with synflow evidence: the same surrogate with the networks' synflow
      scores (normal scores) as its evidence mean, as `--proxy-evidence synflow` gives it;
    - training seconds (the worker's wall seconds, what the search's cost term predicts): the
      Gaussian process alone, the FLOP count alone, and the Gaussian process with the FLOP counts'
      normal scores as its evidence mean (what agent.surrogate.selector uses) -- Spearman.

    Zero-cost proxies: every network of the table scored by the search's model probe
    (evaluator.measure.probe, one thread, a seeded batch of 64 training images as a search takes
    it) with each proxy; Spearman of score and validation accuracy over the whole table (a
    network a proxy cannot score ranks last), and the probe's seconds per network. The scores are
    kept in the table's file (measured once). This decides `proxy_evidence = "auto"` for the
    layers space (no proxy; NAS-Bench-201: synflow).

    Searches replayed on the table (``--replays`` seeds, default 50; a pick is a table row not
    yet picked, so nothing trains): at BUDGET evaluations, the best validation accuracy and the
    seconds spent, for random picks (what evolution does before its population of 20 is full),
    the selector as the default search uses it (agent.surrogate.selector, picking from every row
    not yet evaluated), and the same selector told each row's measured seconds (a perfect cost
    model: how far the cost term alone could cut the seconds).

How to run (from the repository root)
    python bench/layers_table.py                 # builds the table if missing, updates docs/benchmarks.md
    python bench/layers_table.py --no-write --repeats 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm, spearmanr

from agent.commands.options import positive_int
from agent.store import History
from agent.surrogate.model import FeatureMatrix, GaussianSurrogate, normal_scores
from agent.surrogate.selector import PoolMember, Selector
from evaluator.data import load_dataset
from evaluator.measure import PROXY_NAMES
from evaluator.measure.probe import ModelProbe, ProbeError, training_batch
from evaluator.spaces import get_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import REPO_ROOT, cli_search, run_info, stderr_progress, write_doc  # noqa: E402

TABLE = REPO_ROOT / "runs" / "bench-cache" / "digits-layers-random.json"
BUDGET, SEED = 120, 7
SIZES = (10, 30, 100)
DIGITS_SHAPE, DIGITS_CLASSES = (1, 8, 8), 10
Z80 = norm.ppf(0.9)
REPLAY_BUDGET = 12  # the digits target's evaluations (issue 23)


def build(path: Path) -> list[dict]:
    """Run the random search and keep each candidate's spec and measurements."""
    with tempfile.TemporaryDirectory(prefix="archagent-layers-table-") as home:
        summary, wall = cli_search(Path(home), "--task", "digits", "--proposer", "random", "--budget", str(BUDGET),
                                   "--seed", str(SEED), "--final-seeds", "1", timeout=7200)
        h = History(Path(home))
        rows = []
        for c in h.run_candidates(summary["run_id"]):
            evals = [e for e in h.get_candidate(c["candidate_id"])["evaluations"] if e["purpose"] == "search"]
            if not evals:
                continue
            e = evals[0]
            rows.append({"spec": c["spec"], "status": e["status"], "val_accuracy": e["val_accuracy"],
                         "wall_seconds": e["wall_seconds"], "device_seconds": e["device_seconds"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": f"agent search --task digits --proposer random --budget {BUDGET} "
                                           f"--seed {SEED} --final-seeds 1", "search_wall_seconds": round(wall, 1),
                                "rows": rows}))
    return rows


def score_proxies(rows: list[dict], specs: list[dict], path: Path) -> None:
    """Each row's zero-cost proxy scores and the probe's seconds for them (``row["proxies"]``),
    measured once and kept in the table's file."""
    missing = [i for i, r in enumerate(rows) if set(r.get("proxies", {})) != set(PROXY_NAMES) | {"seconds"}]
    if not missing:
        return
    data = load_dataset("digits", cache_dir=path.parent)
    batch = training_batch(data.x_train, data.y_train, data.x_scale, seed=SEED)
    with ModelProbe(threads=1, proxies=PROXY_NAMES, batch=batch) as probe, \
            stderr_progress(len(missing), "proxy scores") as advance:
        for k, i in enumerate(missing):
            try:
                m = probe.measure("layers", specs[i], DIGITS_SHAPE, DIGITS_CLASSES, latency=False)
                rows[i]["proxies"] = {name: m.proxies.get(name) for name in PROXY_NAMES} | {"seconds": m.seconds}
            except ProbeError:
                rows[i]["proxies"] = {name: None for name in PROXY_NAMES} | {"seconds": None}
            advance(f"{k + 1}/{len(missing)}", line=k == len(missing) - 1)
    stored = json.loads(path.read_text())
    by_spec = {json.dumps(r["spec"], sort_keys=True): r["proxies"] for r in rows}
    for r in stored["rows"]:
        r["proxies"] = by_spec.get(json.dumps(r["spec"], sort_keys=True), r.get("proxies"))
    path.write_text(json.dumps(stored))


def proxy_scores(rows: list[dict], name: str) -> np.ndarray:
    """A proxy's scores, the networks it could not score ranked last."""
    values = np.array([r["proxies"][name] if r["proxies"][name] is not None else np.nan for r in rows], dtype=float)
    values[~np.isfinite(values)] = -np.inf
    return values


def evaluate(x: np.ndarray, acc: np.ndarray, seconds: np.ndarray, flops: np.ndarray, synflow: np.ndarray, n: int,
             repeat: int) -> dict[str, float]:
    order = np.random.default_rng([repeat, n]).permutation(len(acc))
    train, test = order[:n], order[n:]
    out = {}
    model = GaussianSurrogate(seed=repeat).fit(x[train], acc[train])
    pred = model.predict(x[test])
    low, high = model.to_values(pred.mean - Z80 * pred.sd), model.to_values(pred.mean + Z80 * pred.sd)
    out["accuracy: Spearman"] = _rho(pred.mean, acc[test])
    out["accuracy: 80% coverage"] = float(np.mean((acc[test] >= low) & (acc[test] <= high)))
    z = normal_scores(synflow[np.concatenate([train, test])])
    with_synflow = GaussianSurrogate(seed=repeat).fit(x[train], acc[train], z[:n])
    out["accuracy (gp + synflow evidence): Spearman"] = _rho(with_synflow.predict(x[test], z[n:]).mean, acc[test])
    log_s = np.log(seconds)
    out["seconds: gp"] = _rho(GaussianSurrogate(seed=repeat).fit(x[train], log_s[train]).predict(x[test]).mean, log_s[test])
    out["seconds: FLOPs"] = _rho(flops[test], log_s[test])
    e = normal_scores(np.log(flops[np.concatenate([train, test])]))
    gp = GaussianSurrogate(seed=repeat).fit(x[train], log_s[train], e[:n])
    out["seconds: gp + FLOPs evidence"] = _rho(gp.predict(x[test], e[n:]).mean, log_s[test])
    return out


class _KnownSeconds(Selector):
    """The selector with a perfect cost model: each row's measured seconds."""

    def __init__(self, seconds: dict[str, float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.truth = seconds

    def _seconds(self, obs, pool, x_obs, x_pool):
        return np.array([self.truth[m.key] for m in pool])


def replay(members: list[PoolMember], acc: np.ndarray, seconds: np.ndarray, strategy: str, seed: int) -> tuple[float, float]:
    """One search of REPLAY_BUDGET picks on the table: (best validation accuracy, seconds spent)."""
    order = list(np.random.default_rng(seed).permutation(len(members)))
    if strategy == "random":
        picked = order[:REPLAY_BUDGET]
    else:
        truth = {m.key: float(s) for m, s in zip(members, seconds)}
        selector = _KnownSeconds(truth, seed=seed) if strategy == "known seconds" else Selector(seed=seed)
        picked = []
        for _ in range(REPLAY_BUDGET):
            left = [i for i in order if i not in picked]
            i = left[selector.choose([members[j] for j in left], 1)[0].index]
            picked.append(i)
            selector.observe(members[i].key, members[i].features, {"val_accuracy": float(acc[i])}, float(seconds[i]))
    return float(acc[picked].max()), float(seconds[picked].sum())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    rho = spearmanr(a, b)[0]
    return 0.0 if np.isnan(rho) else float(rho)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=positive_int, default=20, help="draws of training candidates per size (default 20)")
    parser.add_argument("--replays", type=positive_int, default=50, help="searches replayed on the table per strategy (default 50)")
    parser.add_argument("--rebuild", action="store_true", help=f"run the random search again ({TABLE.name})")
    parser.add_argument("--table", type=Path, default=TABLE, help=f"the table (default {TABLE.relative_to(REPO_ROOT)})")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.rebuild or not args.table.is_file():
        print(f"layers_table: building {args.table} (a {BUDGET}-evaluation random search, about 20 minutes)", file=sys.stderr)
        rows = build(args.table)
    else:
        rows = json.loads(args.table.read_text())["rows"]
    space = get_space("layers", input_shape=DIGITS_SHAPE, num_classes=DIGITS_CLASSES)
    rows = [r for r in rows if r["wall_seconds"]]
    specs = [space.validate(r["spec"]) for r in rows]
    x = FeatureMatrix([space.encode(s) for s in specs]).matrix
    acc = np.array([r["val_accuracy"] if r["val_accuracy"] is not None else 0.0 for r in rows])  # failed: worst
    seconds = np.array([r["wall_seconds"] for r in rows])
    flops = np.array([space.stats(s)["flops"] for s in specs], dtype=float)
    score_proxies(rows, specs, args.table)
    synflow = proxy_scores(rows, "synflow")
    results: dict[tuple[str, int], list[float]] = {}
    warnings.simplefilter("ignore")
    sizes = [n for n in SIZES if n <= len(rows) - 10]  # at least 10 held out
    with stderr_progress(len(sizes) * args.repeats, "fits") as advance:
        for n in sizes:
            for repeat in range(args.repeats):
                for name, value in evaluate(x, acc, seconds, flops, synflow, n, repeat).items():
                    results.setdefault((name, n), []).append(value)
                advance(f"n={n} repeat {repeat + 1}", line=repeat == args.repeats - 1)
    names = list(dict.fromkeys(k[0] for k in results))
    lines = ["| what is predicted: by | " + " | ".join(f"n={n}" for n in sizes) + " |", "|:---|" + "---:|" * len(sizes)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{np.mean(results[(name, n)]):.3f}" for n in sizes) + " |")
    probe_seconds = [r["proxies"]["seconds"] for r in rows if r["proxies"]["seconds"] is not None]
    proxies = [f"| proxy (model probe, 64 training images) | Spearman with validation accuracy ({len(rows)} networks) | "
               "unscored | probe s / network (all proxies) |", "|:---|---:|---:|---:|"]
    for name in PROXY_NAMES:
        unscored = sum(r["proxies"][name] is None for r in rows)
        proxies.append(f"| {name} | {_rho(proxy_scores(rows, name), acc):.3f} | {unscored} | "
                       f"{np.mean(probe_seconds):.3f} |")
    lines += ["", *proxies]
    encodings = [space.encode(s) for s in specs]
    members = [PoolMember(key=str(i), spec=s, features=e, operator="random", known={"flops": float(f)})
               for i, (s, e, f) in enumerate(zip(specs, encodings, flops))]
    searches = ["| strategy (on the table) | best validation (mean +- se) | seconds (mean) |", "|:---|---:|---:|"]
    with stderr_progress(3 * args.replays, "replayed searches") as advance:
        for strategy in ("random", "default", "known seconds"):
            got = []
            for seed in range(args.replays):
                got.append(replay(members, acc, seconds, strategy, seed))
                advance(f"{strategy} {seed + 1}/{args.replays}", line=seed == args.replays - 1)
            best, spent = np.array([g[0] for g in got]), np.array([g[1] for g in got])
            se = best.std(ddof=1) / np.sqrt(len(best)) if len(best) > 1 else 0.0
            searches.append(f"| {strategy} | {best.mean():.4f} +- {se:.4f} | {spent.mean():.1f} |")
    lines += ["", *searches]
    print("\n".join(lines))
    if not args.no_write:
        info = run_info(Path("."), started)
        write_doc("layers_table", "\n".join([
            "## Surrogate quality on the layers space (8x8 digits, real training)",
            "",
            f"Written by `bench/layers_table.py`: a table of {len(rows)} random layers networks trained on the digits "
            f"(`agent search --task digits --proposer random --budget {BUDGET} --seed {SEED}`: validation accuracy, the "
            "worker's wall seconds); the surrogate fitted on n of them at random predicts the others. Spearman of "
            "prediction and measurement, and the share inside the 80% interval, mean over "
            f"{args.repeats} draws. `seconds: gp + FLOPs evidence` is the cost model of the search's cost term. "
            f"Below: {args.replays} searches of {REPLAY_BUDGET} picks replayed on the table per strategy (random; "
            "the default's selector; the selector told the measured seconds, a perfect cost model); seconds are "
            "the picked rows' worker wall seconds, summed.",
            "",
            *lines,
            "",
            *info.bullets(),
            f"- table: {_shown(args.table)}; wall time: {info.wall_seconds} s",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
