"""Tasks: what to design for, where its data is, how it is measured.

Tabular tasks (``nb201-*``) look cells up in NAS-Bench-201 tables found by path:
``benchmark_dir`` holds ``nb201_12epoch_accuracy.csv`` (the search signal) and, if present,
``nb201_<dataset>_200epoch_test.csv`` (the final report); ``signal_table`` and
``final_table`` name files directly and win over the directory.

Training tasks (``digits``, ``cifar10``, ``file:PATH.npz``, ``folder:DIR``) train every
candidate on real data; their shape and classes come from the data (``training_task``).

Curve tasks (``curves:FILE.csv``) replay recorded per-epoch learning curves of NAS-Bench-201
cells (evaluator.pools.replay): a search over the file's cells in which early stopping and
successive halving act as on real training, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from evaluator.errors import TaskError, did_you_mean
from evaluator.tables.nb201 import SIGNAL_TABLE_NAME, final_table_name


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["tabular", "train", "curves"]
    description: str
    dataset: str
    input_shape: tuple[int, ...] = ()  # (): a lookup of a declared space, which has no network
    num_classes: int | None = Field(default=None, gt=1)
    metric: Literal["accuracy"] = "accuracy"
    default_budget: int = Field(gt=0)
    default_space: str
    fidelity: float = Field(gt=0, description="epochs behind the search signal (training tasks: epochs per candidate)")
    signal_column: str | None = None  # tabular: the column prefix in the signal table
    signal_table: Path | None = None
    final_table: Path | None = None  # None: the final report falls back to the signal table's test column


class _Nb201Def(BaseModel):
    dataset: str  # as in final table names: nb201_<dataset>_200epoch_test.csv
    column: str  # as in the signal table: <column>-val, <column>-test
    input_shape: tuple[int, ...]
    num_classes: int
    about: str


_NB201 = {
    "nb201-cifar10": _Nb201Def(dataset="cifar10", column="cifar10", input_shape=(3, 32, 32), num_classes=10, about="CIFAR-10"),
    "nb201-cifar100": _Nb201Def(dataset="cifar100", column="cifar100", input_shape=(3, 32, 32), num_classes=100, about="CIFAR-100"),
    "nb201-imagenet16": _Nb201Def(dataset="imagenet16", column="imagenet", input_shape=(3, 16, 16), num_classes=120, about="ImageNet16-120"),
}

TASK_NAMES: tuple[str, ...] = tuple(_NB201)  # the tabular tasks


def tabular_task_shape(name: str) -> tuple[tuple[int, ...], int, str]:
    """``(input_shape, num_classes, data set)`` of a tabular task's benchmark, without its tables:
    the NAS-Bench-201 network of a cell is built for these."""
    if name not in _NB201:
        raise TaskError(f"unknown tabular task {name!r}{did_you_mean(name, TASK_NAMES)}",
                        hint="tabular tasks are " + ", ".join(TASK_NAMES))
    d = _NB201[name]
    return d.input_shape, d.num_classes, d.about


class _TrainDef(BaseModel):
    about: str
    default_budget: int
    epochs: int  # per candidate during the search; the final retraining uses the same
    default_space: str = "layers"


_TRAINING = {
    "digits": _TrainDef(about="scikit-learn's 8x8 digits, offline (1,797 images, 60/20/20 split)", default_budget=12, epochs=15),
    "cifar10": _TrainDef(about="CIFAR-10 (downloaded once into $AGENT_HOME/data, or --data-dir)", default_budget=30, epochs=10),
}
_TRAINING_PREFIXES = {"file:": _TrainDef(about="your arrays: file:PATH.npz", default_budget=20, epochs=10),
                      "folder:": _TrainDef(about="your images: folder:DIR with one sub-folder per class", default_budget=20, epochs=10)}
TRAINING_TASKS: tuple[str, ...] = tuple(_TRAINING)


def is_training_task(name: str) -> bool:
    return name in _TRAINING or name.startswith(tuple(_TRAINING_PREFIXES))


CURVES_PREFIX = "curves:"


def is_curves_task(name: str) -> bool:
    return name.startswith(CURVES_PREFIX)


CURVES_INPUT_SHAPE, CURVES_NUM_CLASSES = (3, 32, 32), 10  # the cells' NAS-Bench-201 CIFAR-10 network


def curves_task(name: str, path: Path, cells: int, epochs: int) -> Task:
    """The Task of ``curves:FILE``: the NAS-Bench-201 skeleton on CIFAR-shaped input, the file's epochs."""
    return Task(name=name, kind="curves", description=f"{cells} NAS-Bench-201 cells with recorded {epochs}-epoch "
                f"learning curves from {path.name}, replayed epoch by epoch (validation accuracy is the signal; no test split)",
                dataset=path.stem, input_shape=CURVES_INPUT_SHAPE, num_classes=CURVES_NUM_CLASSES,
                default_budget=min(50, cells),
                default_space="nb201", fidelity=epochs)


def training_task(name: str, input_shape: tuple[int, ...], num_classes: int, source: str = "") -> Task:
    """The Task of a training task whose data are loaded (shape and classes come from them)."""
    d = _TRAINING.get(name) or next(v for k, v in _TRAINING_PREFIXES.items() if name.startswith(k))
    return Task(name=name, kind="train", description=f"{d.about}; {source}".rstrip("; "), dataset=name,
                input_shape=input_shape, num_classes=num_classes, default_budget=d.default_budget,
                default_space=d.default_space, fidelity=d.epochs)


LOOKUP_PREFIX = "lookup:"


def lookup_task(file_name: str, space_path: Path, description: str, combinations: int, fidelity: float) -> Task:
    """The Task of a declared space evaluated by lookup (``--space-file`` with tables)."""
    return Task(name=f"{LOOKUP_PREFIX}{space_path.name}", kind="tabular", description=description, dataset=file_name,
                default_budget=max(1, min(100, combinations)), default_space="declared", fidelity=fidelity)


def resolve_task(
    name: str,
    *,
    benchmark_dir: Path | None = None,
    signal_table: Path | None = None,
    final_table: Path | None = None,
) -> Task:
    """Build a Task by name, locating its data; errors say where we looked and what to pass."""
    if name not in _NB201:
        known = TASK_NAMES + TRAINING_TASKS
        raise TaskError(
            f"unknown task {name!r}{did_you_mean(name, known)}",
            hint="known tasks: " + ", ".join(known) + ", file:PATH.npz, folder:DIR, curves:FILE.csv (`agent tasks` lists them)",
        )
    d = _NB201[name]
    bdir = Path(benchmark_dir) if benchmark_dir is not None else None
    if bdir is not None and not bdir.is_dir():
        raise TaskError(
            f"benchmark directory not found: {bdir}",
            hint=f"pass --benchmark-dir with the folder that holds {SIGNAL_TABLE_NAME}",
        )
    if signal_table is None:
        if bdir is None:
            raise TaskError(
                f"task {name} needs the NAS-Bench-201 tables, and no benchmark directory was given",
                hint=f"pass --benchmark-dir DIR (the folder with {SIGNAL_TABLE_NAME}), --signal-table FILE, "
                "or set benchmark_dir in agent.toml / AGENT_BENCHMARK_DIR; docs/training.md (NAS-Bench-201 tables) says where to get them",
            )
        signal_table = bdir / SIGNAL_TABLE_NAME
        if not signal_table.is_file():
            raise TaskError(
                f"{bdir} has no {SIGNAL_TABLE_NAME}",
                hint=f"pass --benchmark-dir with the folder that holds {SIGNAL_TABLE_NAME}, or --signal-table FILE",
            )
    if final_table is None and bdir is not None:
        candidate = bdir / final_table_name(d.dataset)
        final_table = candidate if candidate.is_file() else None
    return Task(
        name=name,
        kind="tabular",
        description=f"NAS-Bench-201 on {d.about}, tabular: 12-epoch validation accuracy as the search signal",
        dataset=d.dataset,
        input_shape=d.input_shape,
        num_classes=d.num_classes,
        default_budget=100,
        default_space="nb201",
        fidelity=12,
        signal_column=d.column,
        signal_table=Path(signal_table).resolve(),
        final_table=Path(final_table).resolve() if final_table is not None else None,
    )


def describe_tasks() -> list[dict[str, str]]:
    rows = [{"task": name, "space": d.default_space, "kind": "train", "data": d.about}
            for name, d in (_TRAINING | {f"{k}...": v for k, v in _TRAINING_PREFIXES.items()}).items()]
    rows.append({"task": f"{CURVES_PREFIX}...", "space": "nb201", "kind": "curves",
                 "data": "recorded NAS-Bench-201 learning curves: curves:FILE.csv (replayed epoch by epoch)"})
    return rows + [
        {"task": name, "space": "nb201", "kind": "tabular", "data": f"NAS-Bench-201 tables, {d.about}"}
        for name, d in _NB201.items()
    ]
