"""Flags shared by several commands, and the value checks behind them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evaluator.measure import PROXY_NAMES


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list, got {text!r}")
    return items


def comma_ints(text: str) -> list[int]:
    try:
        return [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 2,5, got {text!r}") from None


def proxy_list(text: str) -> list[str]:
    """``all``, ``none``, or comma-separated proxy names (checked by the settings)."""
    if text.strip() == "none":
        return []
    if text.strip() == "all":
        return list(PROXY_NAMES)
    return comma_list(text)


def add_task_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="task name (`agent tasks` lists them)")
    parser.add_argument("--space", help="search space (default: the task's)")
    parser.add_argument("--space-file", dest="space_file", metavar="FILE",
                        help="a search space declared in a TOML file: its slots and choices, and a lookup table or a "
                             "builder to train (docs/spaces.md)")
    parser.add_argument("--table", dest="tables", action="append", metavar="TABLE",
                        help="--space-file: a CSV or JSON table to look candidates up in (repeatable: tables join on "
                             "the key); replaces the file's own tables")
    parser.add_argument("--benchmark-dir", dest="benchmark_dir",
                        help="folder with nb201_12epoch_accuracy.csv and optional nb201_<dataset>_200epoch_test.csv")
    parser.add_argument("--signal-table", dest="signal_table", help="the 12-epoch table file (overrides --benchmark-dir)")
    parser.add_argument("--final-table", dest="final_table", help="the 200-epoch test table file (overrides --benchmark-dir)")
    train = parser.add_argument_group("training tasks")
    train.add_argument("--data-dir", dest="data_dir", help="an existing copy of the data set (cifar10: holds cifar-10-batches-py)")
    train.add_argument("--epochs", type=positive_int, help="epochs per candidate (default: the task's)")
    train.add_argument("--workers", type=positive_int,
                       help="candidates trained at once (default 1; with --pool ray, as many as the cluster holds)")
    train.add_argument("--pool", choices=["local", "ray"],
                       help="where training jobs run: local (default) or ray (a Ray cluster: docs/ray.md)")
    train.add_argument("--ray-address", dest="ray_address",
                       help="--pool ray: join this cluster (auto, or HOST:PORT); default: a private cluster on 127.0.0.1")
    train.add_argument("--ray-cpus", dest="ray_cpus", type=positive_float, help="--pool ray: CPUs per candidate (default 1)")
    train.add_argument("--ray-gpus", dest="ray_gpus", type=non_negative_float,
                       help="--pool ray: GPUs per candidate, fractions share one (default: 1 when the cluster has GPUs)")
    train.add_argument("--ray-retries", dest="ray_retries", type=non_negative_int,
                       help="--pool ray: re-queues of a candidate whose worker was lost (default 2)")
    train.add_argument("--warm-workers", dest="warm_workers", type=non_negative_int,
                       help="workers kept started ahead of their candidates, one candidate each (default 1; 0: cold starts)")
    train.add_argument("--timeout", type=positive_float, help="wall-clock seconds one candidate may train (default 600)")
    train.add_argument("--memory-mb", dest="memory_mb", type=positive_int, help="memory limit of one worker, MB (default 4096)")
    train.add_argument("--disk-mb", dest="disk_mb", type=positive_int,
                       help="disk quota of one worker's scratch folder, MB (default 2048)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where candidates train (default auto)")
    train.add_argument("--final-seeds", dest="final_seeds", type=positive_int,
                       help="seeds of the final retraining of the best candidate (default 3)")
    train.add_argument("--sandbox", choices=["auto", "bwrap", "unshare", "none"],
                       help="what isolates each training job (default auto: the strongest layer here; `agent doctor` "
                            "lists them)")
    train.add_argument("--unsafe", action="store_true", default=None,
                       help="run code-mode candidates even where the sandbox cannot cut the network (recorded on the run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


TRAINING_FLAGS = ("data_dir", "epochs", "workers", "warm_workers", "pool", "ray_address", "ray_cpus", "ray_gpus",
                  "ray_retries", "timeout", "memory_mb", "disk_mb", "device", "final_seeds", "sandbox", "unsafe")


def settings_flags(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in ("home", *names)}


# With --json, stdout carries the JSON object only: the CLI points sys.stdout at stderr while the
# command runs (libraries that print, Ray's driver among them, cannot break the JSON) and keeps
# the real stdout here.
JSON_OUT: list[Any] = []


def print_json(obj: Any) -> None:
    out = JSON_OUT[-1] if JSON_OUT else sys.stdout
    json.dump(obj, out, indent=2, default=str)
    out.write("\n")
    out.flush()


def console(stderr: bool = False):
    """A rich console; when the output is not a terminal, wide enough not to cut ids."""
    from rich.console import Console

    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=max(c.width, 200))
    return c
