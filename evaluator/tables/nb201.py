"""Loading NAS-Bench-201 tables by path.

Two table formats (both CSV, accuracies in percent, converted to fractions on load):

- the **signal table** ``nb201_12epoch_accuracy.csv``: columns ``index, arch`` and
  ``<dataset>-val`` / ``<dataset>-test`` for the 12-epoch schedule (``dataset`` is
  ``cifar10``, ``cifar100`` or ``imagenet``);
- the **final table** ``nb201_<dataset>_200epoch_test.csv``: columns ``index, arch`` and one
  ``*_test_200ep`` column with the 200-epoch test accuracy.

Any file in the same format works, so users can point the loaders at their own copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from evaluator.errors import SpecError, TableError
from evaluator.spaces.nb201 import NUM_CELLS, arch_string, parse_arch
from evaluator.tables.reader import CsvTable, read_csv, read_header

SIGNAL_TABLE_NAME = "nb201_12epoch_accuracy.csv"


def final_table_name(dataset: str) -> str:
    return f"nb201_{dataset}_200epoch_test.csv"


@dataclass(frozen=True)
class AccuracyTable:
    """Accuracy (fraction) per arch string for each named column."""

    path: Path
    columns: dict[str, dict[str, float]]  # column -> arch -> accuracy in [0, 1]

    def column(self, name: str) -> dict[str, float]:
        try:
            return self.columns[name]
        except KeyError:
            raise TableError(
                f"{self.path} has no column {name!r} (columns: {', '.join(self.columns)})",
                hint="use a table in the NAS-Bench-201 format described in docs/training.md (NAS-Bench-201 tables)",
            ) from None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), {}))


def _check_file(path: Path, what: str, flag: str) -> None:
    if not path.exists():
        raise TableError(
            f"{what} not found: {path}",
            hint=f"pass {flag} with the right path (docs/training.md, NAS-Bench-201 tables, describes them)",
        )
    if not path.is_file():
        raise TableError(f"{what} {path} is not a file", hint=f"pass {flag} with a CSV file")


def _read_csv(path: Path, what: str, flag: str, *, header_only: bool = False) -> CsvTable | list[str]:
    _check_file(path, what, flag)
    read = read_header if header_only else read_csv
    return read(path, what, unreadable_hint=f"pass {flag} with a CSV table",
                empty_hint="the table needs a header row and one row per cell")


def _load_table(path: Path, what: str, flag: str, wanted: tuple[str, ...]) -> AccuracyTable:
    # Cached by the file's identity, so an edited file is read again.
    stat = path.stat() if path.is_file() else None
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) if stat else None
    return _load_table_cached(path, what, flag, wanted, key)


@lru_cache(maxsize=8)
def _load_table_cached(path: Path, what: str, flag: str, wanted: tuple[str, ...], _key: object) -> AccuracyTable:
    table = _read_csv(path, what, flag)
    missing = [c for c in ("arch", *wanted) if c not in table.header]
    if missing:
        raise TableError(
            f"{what} {path} lacks column(s) {', '.join(missing)}; it has {', '.join(table.header)}",
            hint=f"a NAS-Bench-201 {what} has columns index, arch, {', '.join(wanted)}",
        )
    columns: dict[str, dict[str, float]] = {c: {} for c in wanted}
    for lineno, row in table.rows:
        try:
            arch = arch_string(parse_arch(row["arch"]))
        except SpecError as exc:
            raise TableError(f"{what} {path} line {lineno}: {exc.message}", hint=exc.hint) from None
        for column in wanted:
            text = row[column]
            try:
                percent = float(text)
            except ValueError:
                percent = math.nan
            if not (0.0 <= percent <= 100.0):
                raise TableError(
                    f"{what} {path} line {lineno}, column {column}: {text!r} is not an accuracy in percent (0-100)",
                    hint="accuracies in NAS-Bench-201 tables are percentages",
                )
            columns[column][arch] = percent / 100.0
    if not columns[wanted[0]]:
        raise TableError(f"{what} {path} has a header but no rows", hint="the table needs one row per cell")
    return AccuracyTable(path=path, columns=columns)


def load_signal_table(path: Path, dataset: str) -> AccuracyTable:
    """The 12-epoch table, keeping ``<dataset>-val`` and ``<dataset>-test`` as fractions."""
    return _load_table(Path(path).resolve(), "signal table", "--signal-table", (f"{dataset}-val", f"{dataset}-test"))


def final_column(path: Path) -> str:
    header = _read_csv(path, "final table", "--final-table", header_only=True)
    found = [h for h in header if h.endswith("_test_200ep")]
    if len(found) != 1:
        raise TableError(
            f"final table {path} should have exactly one '*_test_200ep' column; it has {', '.join(header)}",
            hint="a 200-epoch table has columns index, arch, <dataset>_test_200ep",
        )
    return found[0]


def load_final_table(path: Path) -> AccuracyTable:
    """The 200-epoch test table (one ``*_test_200ep`` column) as fractions."""
    path = Path(path).resolve()
    return _load_table(path, "final table", "--final-table", (final_column(path),))


def coverage_note(table: AccuracyTable) -> str | None:
    """A warning when a table does not hold every cell of the space."""
    n = len(table)
    if n < NUM_CELLS:
        return f"{table.path} holds {n} of {NUM_CELLS} cells; cells it lacks evaluate as failed"
    return None
