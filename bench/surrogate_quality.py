"""Which surrogate model: rank correlation and interval coverage on NAS-Bench-201, by model family.

What it measures
    For each data set of nb201_12epoch_accuracy.csv (the 12-epoch validation accuracy: the search
    signal) and each number of training points (10, 30, 100), it draws the training cells at
    random (repeat r: numpy.random.default_rng([r, n])), fits each model on the cells' encodings
    (NB201 space's ``encode``: edge ops, op counts, paths), and predicts 2,000 held-out cells.
    Per (model, n): the Spearman rank correlation of prediction and measurement, and the share of
    held-out cells inside the model's 80% interval (0.80 is calibrated). Mean over the repeats.

    Models: ``gp`` is the project's surrogate (agent.surrogate.model.GaussianSurrogate: a
    Matern-5/2 Gaussian process on normal scores, scikit-learn); ``gp+synflow`` the same with the
    synflow scores (from bench/nb201_proxy_table.py's table, when it exists) as its evidence
    mean; ``random forest`` and ``extra trees`` (scikit-learn, 200 trees, interval from the spread
    of the trees' predictions, normal approximation); ``bayesian ridge`` (scikit-learn, its
    predictive sd).

How to run (from the repository root; about 3 minutes on 2 cores)
    python bench/surrogate_quality.py                   # updates docs/benchmarks.md
    python bench/surrogate_quality.py --repeats 2 --no-write
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm, spearmanr

from agent.commands.options import positive_int
from agent.surrogate.model import FeatureMatrix, GaussianSurrogate
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import parse_arch
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import DEFAULT_BENCHMARK_DIR, run_info, stderr_progress, write_doc  # noqa: E402
from nb201_proxy_table import default_path  # noqa: E402

DATASETS = {"cifar10": "nb201-cifar10", "cifar100": "nb201-cifar100", "imagenet": "nb201-imagenet16"}
SIZES = (10, 30, 100)
HELD_OUT = 2000
Z80 = norm.ppf(0.9)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--benchmark-dir", type=Path, default=DEFAULT_BENCHMARK_DIR)
    parser.add_argument("--repeats", type=positive_int, default=10, help="draws of training cells per size (default 10)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    return parser.parse_args(argv)


def _synflow(task: str, archs: list[str]) -> np.ndarray | None:
    path = default_path(task, ("synflow",))
    if not path.is_file():
        return None
    with path.open() as f:
        table = {r["arch"]: float(r["synflow"]) if r["synflow"] else np.nan for r in csv.DictReader(f)}
    if not all(a in table for a in archs):
        return None
    return np.array([table[a] for a in archs])


def _tree_prediction(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    every = np.stack([tree.predict(x) for tree in model.estimators_])
    return every.mean(axis=0), every.std(axis=0)


def evaluate(x: np.ndarray, y: np.ndarray, synflow: np.ndarray | None, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.linear_model import BayesianRidge

    rng = np.random.default_rng([repeat, n])
    order = rng.permutation(len(y))
    train, test = order[:n], order[n:n + HELD_OUT]
    out: dict[str, tuple[float, float]] = {}

    def score(name: str, mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        rho = spearmanr(mean, y[test])[0]
        out[name] = (0.0 if np.isnan(rho) else float(rho), float(np.mean((y[test] >= low) & (y[test] <= high))))

    evidence = None
    if synflow is not None:
        finite = np.where(np.isfinite(synflow), synflow, np.nanmin(synflow))
        ranks = np.argsort(np.argsort(finite[np.concatenate([train, test])]))
        evidence = norm.ppf((ranks + 0.5) / len(ranks))
    for name, ev in (("gp", None), ("gp+synflow", evidence)):
        if name == "gp+synflow" and ev is None:
            continue
        model = GaussianSurrogate(seed=repeat).fit(x[train], y[train], None if ev is None else ev[:n])
        pred = model.predict(x[test], None if ev is None else ev[n:])
        score(name, model.to_values(pred.mean), model.to_values(pred.mean - Z80 * pred.sd),
              model.to_values(pred.mean + Z80 * pred.sd))
    for name, model in (("random forest", RandomForestRegressor(200, max_features=0.5, random_state=repeat)),
                        ("extra trees", ExtraTreesRegressor(200, min_samples_leaf=2, max_features=0.7, random_state=repeat))):
        model.fit(x[train], y[train])
        mean, sd = _tree_prediction(model, x[test])
        score(name, mean, mean - Z80 * sd, mean + Z80 * sd)
    ridge = BayesianRidge().fit(x[train], y[train])
    mean, sd = ridge.predict(x[test], return_std=True)
    score("bayesian ridge", mean, mean - Z80 * sd, mean + Z80 * sd)
    return out


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    table = args.benchmark_dir / SIGNAL_TABLE_NAME
    if not table.is_file():
        print(f"surrogate_quality: no NAS-Bench-201 table at {table}; pass --benchmark-dir DIR", file=sys.stderr)
        return 2
    with table.open() as f:
        rows = list(csv.DictReader(f))
    archs = [r["arch"] for r in rows]
    space = get_space("nb201")
    x = FeatureMatrix([space.encode(parse_arch(a)) for a in archs]).matrix
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    warnings.simplefilter("ignore")
    with stderr_progress(len(DATASETS) * len(SIZES) * args.repeats, "fits") as advance:
        for column, task in DATASETS.items():
            y = np.array([float(r[f"{column}-val"]) for r in rows])
            synflow = _synflow(task, archs)
            for n in SIZES:
                for repeat in range(args.repeats):
                    for name, value in evaluate(x, y, synflow, n, repeat).items():
                        results.setdefault((task, name, n), []).append(value)
                    advance(f"{task} n={n} repeat {repeat + 1}", line=repeat == args.repeats - 1)
    names = list(dict.fromkeys(k[1] for k in results))
    lines = ["| data set | model | " + " | ".join(f"Spearman n={n}" for n in SIZES) + " | "
             + " | ".join(f"80% coverage n={n}" for n in SIZES) + " |",
             "|:---|:---|" + "---:|" * (2 * len(SIZES))]
    for task in DATASETS.values():
        for name in names:
            if (task, name, SIZES[0]) not in results:
                continue
            rho = [np.mean([v[0] for v in results[(task, name, n)]]) for n in SIZES]
            cov = [np.mean([v[1] for v in results[(task, name, n)]]) for n in SIZES]
            lines.append(f"| {task} | {name} | " + " | ".join(f"{r:.3f}" for r in rho) + " | "
                         + " | ".join(f"{c:.2f}" for c in cov) + " |")
    print("\n".join(lines))
    info = run_info(args.benchmark_dir, started)
    if not args.no_write:
        doc = "\n".join([
            "## Surrogate quality: which model family ranks NAS-Bench-201 cells",
            "",
            f"Written by `bench/surrogate_quality.py`. Each model is fitted on n cells drawn at random (the cells' "
            f"encodings: edge ops, op counts, paths) and predicts {HELD_OUT} held-out cells' 12-epoch validation "
            f"accuracy; Spearman rank correlation of prediction with measurement, and the share of held-out cells "
            f"inside the model's 80% interval (0.80 is calibrated). Mean over {args.repeats} draws. `gp` is the "
            "project's surrogate (a Gaussian process on normal scores); `gp+synflow` the same with synflow scores "
            "as its evidence mean (scores from `bench/nb201_proxy_table.py`).",
            "",
            *lines,
            "",
            *info.bullets(),
            f"- wall time: {info.wall_seconds} s",
        ])
        write_doc("surrogate_quality", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
