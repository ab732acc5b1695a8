"""Learning-curve tables: recorded per-epoch curves of NAS-Bench-201 cells.

A curves file (CSV) has one row per cell: ``arch_str`` (the NAS-Bench-201 arch string),
``val_accs`` (a JSON list of validation accuracies in percent, one per epoch) and optionally
``train_accs`` (training accuracy at the same epochs) and ``arch_i``. The team's copy,
``../shared/benchdata/curves/nb201_cifar10valid_200archs_curves.csv``, holds 200 cells of 200
epochs on cifar10-valid. ``evaluator.pools.replay.CurvePool`` replays them as training.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import SpecError, TableError
from evaluator.tables.reader import read_csv


@dataclass(frozen=True)
class CurveTable:
    path: Path
    val: dict[str, list[float]]  # arch string -> validation accuracy per epoch, fractions
    train: dict[str, list[float]] | None  # arch string -> training accuracy per epoch, fractions (when the file has them)
    epochs: int

    @property
    def archs(self) -> list[str]:
        return list(self.val)


def load_curve_table(path: Path) -> CurveTable:
    """Read and check a curves file; errors name the file, the line and the fix."""
    from evaluator.spaces.nb201 import arch_string, parse_arch

    path = Path(path)
    if not path.is_file():
        raise TableError(f"no curves file at {path}",
                         hint="pass a CSV with arch_str and val_accs columns (JSON lists of percentages); the team's "
                              "copy is ../shared/benchdata/curves/nb201_cifar10valid_200archs_curves.csv")
    table = read_csv(path, "curves file", unreadable_hint="pass a UTF-8 CSV file",
                     empty_hint="a curves file needs a header row and one row per cell")
    columns, rows = table.header, table.rows
    missing = [c for c in ("arch_str", "val_accs") if c not in columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(columns) or 'none'}",
                         hint="a curves file needs arch_str (NAS-Bench-201 arch string) and val_accs (a JSON list of "
                              "validation accuracies in percent per epoch)")
    has_train = "train_accs" in columns
    val: dict[str, list[float]] = {}
    train: dict[str, list[float]] = {}
    epochs = None
    for line, row in rows:
        where = f"{path}, line {line}"
        try:
            arch = arch_string(parse_arch(row["arch_str"]))
        except SpecError as exc:
            raise TableError(f"{where}: {exc.message}", hint=exc.hint) from None
        if arch in val:
            raise TableError(f"{where}: cell {arch} appears twice", hint="keep one row per cell")
        curves = {"val_accs": row["val_accs"]} | ({"train_accs": row["train_accs"]} if has_train else {})
        for column, text in curves.items():
            try:
                values = [float(v) for v in json.loads(text or "null")]
            except (TypeError, ValueError) as exc:
                raise TableError(f"{where}: {column} is not a JSON list of numbers ({exc})",
                                 hint="write the per-epoch accuracies as [12.5, 20.1, ...]") from None
            if not values or not all(math.isfinite(v) and 0 <= v <= 100 for v in values):
                raise TableError(f"{where}: {column} must hold percentages in [0, 100], one per epoch",
                                 hint="accuracies in percent, e.g. [12.5, 20.1, ...]")
            if epochs is None:
                epochs = len(values)
            if len(values) != epochs:
                raise TableError(f"{where}: {len(values)} epochs of {column}, but the first curve has {epochs}",
                                 hint="every curve in a file must cover the same epochs")
            (val if column == "val_accs" else train)[arch] = [v / 100.0 for v in values]
    if not val:
        raise TableError(f"{path} has no rows", hint="a curves file needs at least 2 cells")
    if len(val) < 2 or epochs < 2:
        raise TableError(f"{path}: {len(val)} cell(s) of {epochs} epoch(s)",
                         hint="a curves search needs at least 2 cells of at least 2 epochs")
    return CurveTable(path=path, val=val, train=train if has_train else None, epochs=epochs)
