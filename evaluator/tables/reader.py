"""One reader for every CSV table the project loads: the NAS-Bench-201 tables
(``evaluator.tables.nb201``), recorded learning curves (``evaluator.tables.curves``) and the
user's tables of a space file (``evaluator.pools.lookup``).

``read_csv`` reads a file as UTF-8 CSV and returns its header and its rows (``read_header`` only
the header), each with its line
number and its cells by column (stripped); blank lines are skipped. Each caller checks first
that the file exists (with a hint of its own). Every error names the table (``what`` and the
path), the line where there is one, and the fix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from evaluator.errors import TableError


@dataclass(frozen=True)
class CsvTable:
    path: Path
    header: list[str]  # the column names, stripped
    rows: list[tuple[int, dict[str, str]]]  # (line number, cells by column), blank lines left out


def read_header(path: Path, what: str = "table", *, unreadable_hint: str = "save it as UTF-8 CSV",
                empty_hint: str = "the table needs a header row and one row per entry") -> list[str]:
    """The column names of the table at ``path`` (stripped), without reading its rows."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{what} {path} is not a readable CSV file: {exc}", hint=unreadable_hint) from None
    if header is None:
        raise TableError(f"{what} {path} is empty", hint=empty_hint)
    return [h.strip() for h in header]


def read_csv(path: Path, what: str = "table", *, unreadable_hint: str = "save it as UTF-8 CSV",
             empty_hint: str = "the table needs a header row and one row per entry") -> CsvTable:
    """The table at ``path``; TableError (``what`` and path, line, fix) when it cannot be read,
    is empty, names a column twice, or has a row whose field count differs from the header's."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            lines = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{what} {path} is not a readable CSV file: {exc}", hint=unreadable_hint) from None
    if not lines:
        raise TableError(f"{what} {path} is empty", hint=empty_hint)
    header = [h.strip() for h in lines[0]]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise TableError(f"{what} {path} line 1: column(s) {', '.join(twice)} appear twice in the header",
                         hint="give every column its own name")
    rows = []
    for lineno, row in enumerate(lines[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TableError(f"{what} {path} line {lineno}: {len(row)} fields, the header has {len(header)}",
                             hint="every row needs one value per header column")
        rows.append((lineno, dict(zip(header, (cell.strip() for cell in row)))))
    return CsvTable(path=path, header=header, rows=rows)
