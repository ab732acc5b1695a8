"""Evaluation of a declared space by lookup in the user's tables (``[lookup]`` of a space file).

Tables are CSV (a header row, one row per combination) or JSON (a list of objects, one per row,
or an object mapping each key to an object of columns). A row is found by its key: with a
``key`` template (``"{op_1}-{width}"``) the table's ``key_column`` holds the rendered key, which
is read back into choices; without one, the table has one column per slot. Several tables join
on the key: the signal may come from one, the final report from another.

Every row is checked when the tables load: a key that does not match the template, a choice a
slot does not offer, a key held twice in one table, and a value that is not a number each give
an error naming the file, the line (JSON: the record) and the column, and the fix.

``signal`` is what the search maximises, recorded as the validation accuracy; ``report`` the
final report of the chosen candidate, recorded as its test accuracy. With ``goal = "maximize"``
they are accuracies, with ``"minimize"`` error rates (recorded as 1 - error); ``scale`` says
percent or fraction (``auto``: percent when a value of that column is above 1), converted to
fractions on load as every table in this project is. ``metrics`` columns (params, flops,
latency_ms) become the evaluation's metrics, which ``--objectives`` can optimise.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.errors import TableError, did_you_mean
from evaluator.pools.base import Job
from evaluator.records import CurvePoint, Evaluation, Purpose, Status
from evaluator.spaces.declared import DeclaredSpace
from evaluator.spaces.declared.file import DOCS, LookupDecl, TableRef, Value
from evaluator.tables.reader import read_csv

Combo = tuple[Value, ...]
TABLE_SUFFIXES = (".csv", ".json")


@dataclass
class _Table:
    path: Path
    columns: list[str]
    rows: dict[Combo, tuple[str, dict[str, Any]]]  # combination -> (where: "line 5", the row's cells)


class Lookup:
    """The joined tables of one declared space, checked; ``evaluate(job)`` reads one row."""

    def __init__(self, space: DeclaredSpace, decl: LookupDecl, tables: list[Path] | None = None) -> None:
        self.space, self.decl = space, decl
        refs = [TableRef(Path(p).expanduser().resolve()) for p in tables] if tables else list(decl.tables)
        if not refs:
            raise TableError(f"{space.file.path}: [lookup] names no table, and no --table was given",
                             hint="add tables = [\"results.csv\"] under [lookup] (paths relative to the space file), "
                                  "or pass --table FILE")
        self.tables = [self._load(ref) for ref in refs]
        wanted = {"signal": decl.signal} | ({"report": decl.report} if decl.report else {}) \
            | {f"metrics.{k}": v for k, v in decl.metrics.items()}
        self.where = {role: self._column_table(role, column) for role, column in wanted.items()}
        self.signal = self._values("signal", accuracy=True)
        self.report = self._values("report", accuracy=True) if decl.report else None
        self.metrics = {k: self._values(f"metrics.{k}", accuracy=False) for k in decl.metrics}
        self.fidelity = decl.fidelity or 1.0
        self.report_fidelity = decl.report_fidelity or self.fidelity
        self.warnings: list[str] = []

    # -- loading ------------------------------------------------------------------------------

    def _load(self, ref: TableRef) -> _Table:
        path = ref.path
        if not path.is_file():
            raise TableError(f"table not found: {path}" if not path.exists() else f"table {path} is not a file",
                             hint="fix the path in [lookup] tables of the space file (relative to that file), or --table")
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise TableError(f"table {path} is neither .csv nor .json", hint="give the table as CSV or JSON (" + DOCS + ")")
        key_column = ref.key_column or self.decl.key_column
        header, records = _read_json(path, key_column) if path.suffix.lower() == ".json" else _read_csv(path)
        if self.decl.key is not None:
            if key_column not in header:
                raise TableError(f"table {path} has no key column {key_column!r}{did_you_mean(key_column, header)} "
                                 f"(its columns: {', '.join(header)})",
                                 hint="set key_column under [lookup] (or for this table) to the column that holds "
                                      f"keys like {self.decl.key!r}")
            pattern, order = _template_pattern(self.decl.key)
        else:
            missing = [n for n in self.space.names if n not in header]
            if missing:
                raise TableError(f"table {path} has no column for slot(s) {', '.join(missing)} (its columns: "
                                 f"{', '.join(header)}); without a key template a table has one column per slot",
                                 hint="add the columns, or declare key = \"...\" and key_column under [lookup]")
        rows: dict[Combo, tuple[str, dict[str, Any]]] = {}
        for where, cells in records:
            if self.decl.key is not None:
                combo = self._combo_from_key(path, where, key_column, str(cells.get(key_column, "")), pattern, order)
            else:
                combo = self._combo_from_columns(path, where, cells)
            if combo in rows:
                raise TableError(f"table {path} {rows[combo][0]} and {where} hold the same key "
                                 f"({self.space.summary(dict(zip(self.space.names, combo)))})",
                                 hint="keep one row per combination (average repeated runs first)")
            rows[combo] = (where, cells)
        if not rows:
            raise TableError(f"table {path} has no rows", hint="the table needs one row per combination")
        return _Table(path=path, columns=header, rows=rows)

    def _combo_from_key(self, path: Path, where: str, column: str, key: str, pattern: re.Pattern[str],
                        order: list[str]) -> Combo:
        match = pattern.match(key.strip())
        if match is None:
            raise TableError(f"table {path} {where}, column {column}: key {key!r} does not match the template "
                             f"{self.decl.key!r}",
                             hint="fix the key, or the key template under [lookup] of the space file")
        found: dict[str, Value] = {}
        for i, slot in enumerate(order):
            text = match.group(f"s{i}")
            value = self.space.choice_from_text(slot, text)
            if value is None:
                raise TableError(self._unknown(path, where, column, slot, text), hint=self._unknown_fix(slot))
            if slot in found and found[slot] != value:
                raise TableError(f"table {path} {where}, column {column}: key {key!r} gives slot {slot} two values",
                                 hint="fix the key")
            found[slot] = value
        return tuple(found[n] for n in self.space.names)

    def _combo_from_columns(self, path: Path, where: str, cells: dict[str, Any]) -> Combo:
        combo = []
        for slot in self.space.names:
            text = "" if cells.get(slot) is None else str(cells[slot])
            value = self.space.choice_from_text(slot, text)
            if value is None:
                raise TableError(self._unknown(path, where, slot, slot, text), hint=self._unknown_fix(slot))
            combo.append(value)
        return tuple(combo)

    def _unknown(self, path: Path, where: str, column: str, slot: str, text: str) -> str:
        values = [str(v) for v in self.space.slot(slot).values]
        return (f"table {path} {where}, column {column}: {text!r} is not a choice of slot {slot}"
                f"{did_you_mean(text, values)} (its choices: {', '.join(values)})")

    def _unknown_fix(self, slot: str) -> str:
        return (f"add the value to choices under [slots.{slot}] in {self.space.file.path.name}, "
                "or remove the rows that use it from the table")

    def _column_table(self, role: str, column: str) -> _Table:
        holders = [t for t in self.tables if column in t.columns]
        if not holders:
            shown = "; ".join(f"{t.path.name}: {', '.join(t.columns)}" for t in self.tables)
            every = [c for t in self.tables for c in t.columns]
            raise TableError(f"{role} column {column!r}{did_you_mean(column, every)} is in none of the tables ({shown})",
                             hint=f"set {role} under [lookup] in {self.space.file.path.name} to one of the columns, "
                                  "or add the table that holds it")
        if len(holders) > 1:
            raise TableError(f"{role} column {column!r} is in several tables: "
                             + ", ".join(str(t.path) for t in holders),
                             hint="rename the column in all but one of them, so it is clear which is meant")
        return holders[0]

    def _values(self, role: str, *, accuracy: bool) -> dict[Combo, float]:
        table = self.where[role]
        column = {"signal": self.decl.signal, "report": self.decl.report}.get(role) or self.decl.metrics[role[8:]]
        numbers: dict[Combo, tuple[str, float]] = {}
        for combo, (where, cells) in table.rows.items():
            raw = cells.get(column)
            if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "nan", "null", "none", "-")):
                continue  # no value for this row: its evaluation fails, naming the column
            try:
                value = float(raw) if not isinstance(raw, bool) else math.nan
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise TableError(f"table {table.path} {where}, column {column}: {raw!r} is not a number",
                                 hint="write numbers (or leave the cell empty where there is none)")
            numbers[combo] = (where, value)
        if not numbers:
            raise TableError(f"table {table.path}: column {column} ({role}) has no values",
                             hint="fill the column, or point the lookup at another one")
        if not accuracy:
            for combo, (where, value) in numbers.items():
                if value < 0:
                    raise TableError(f"table {table.path} {where}, column {column}: {value:g} is negative",
                                     hint=f"{role[8:]} is a count or milliseconds, never negative")
            return {c: v for c, (_, v) in numbers.items()}
        scale = self.decl.scale
        if scale == "auto":
            scale = "percent" if any(v > 1.0 for _, v in numbers.values()) else "fraction"
        top = 100.0 if scale == "percent" else 1.0
        kind = "an accuracy" if self.decl.goal == "maximize" else "an error rate"
        out = {}
        for combo, (where, value) in numbers.items():
            if not 0.0 <= value <= top:
                raise TableError(f"table {table.path} {where}, column {column}: {value:g} is not {kind} in {scale} "
                                 f"(0-{top:g})",
                                 hint="the signal and report of a lookup are accuracies (goal = \"maximize\") or error "
                                      "rates (goal = \"minimize\"), in percent or fractions; set scale under [lookup]")
            fraction = value / 100.0 if scale == "percent" else value
            out[combo] = fraction if self.decl.goal == "maximize" else 1.0 - fraction
        return out

    # -- what it holds ---------------------------------------------------------------------------

    def combinations(self) -> set[Combo]:
        """The combinations with a signal value."""
        return set(self.signal)

    def describe(self) -> str:
        sig = self.where["signal"].path.name
        text = f"{self.decl.signal} of {sig}" + (" (1 - error)" if self.decl.goal == "minimize" else "")
        if self.report is not None:
            text += f"; final report: {self.decl.report} of {self.where['report'].path.name}"
        return text

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, job: Job) -> Evaluation:
        start = time.perf_counter()
        combo = tuple(job.spec[n] for n in self.space.names)
        label = self.space.table_key(job.spec) or self.space.summary(job.spec)
        common: dict[str, Any] = dict(candidate_id=job.candidate_id, purpose=job.purpose, fidelity=self.fidelity)
        sig_table = self.where["signal"]
        if combo not in self.signal:
            held = combo in sig_table.rows
            return Evaluation(**common, status=Status.FAILED, source=str(sig_table.path),
                              error=f"{label}: " + (f"no {self.decl.signal} value in {sig_table.path}" if held else
                                                    f"no row in {sig_table.path}"))
        val = self.signal[combo]
        metrics = {k: (int(v) if k != "latency_ms" and float(v).is_integer() else v)
                   for k, column in self.metrics.items() if (v := column.get(combo)) is not None}
        if job.purpose is Purpose.FINAL:
            common["fidelity"] = self.report_fidelity
            if self.report is None:
                return Evaluation(**common, status=Status.OK, val_accuracy=val, metrics=metrics,
                                  source=f"no report column: the lookup of {self.space.file.path.name} names none",
                                  wall_seconds=time.perf_counter() - start)
            test = self.report.get(combo)
            table = self.where["report"].path
            if test is None:
                return Evaluation(**common, status=Status.FAILED, val_accuracy=val, metrics=metrics, source=str(table),
                                  error=f"{label}: no {self.decl.report} value in {table}")
            return Evaluation(**common, status=Status.OK, val_accuracy=val, test_accuracy=test, metrics=metrics,
                              source=f"{self.decl.report} from {table.name}", wall_seconds=time.perf_counter() - start)
        return Evaluation(**common, status=Status.OK, val_accuracy=val, metrics=metrics,
                          curve=[CurvePoint(epoch=self.fidelity, val_accuracy=val)],
                          source=f"{sig_table.path.name}: {self.decl.signal}", wall_seconds=time.perf_counter() - start)

    def random_sample_average(self) -> float | None:
        """Mean final-report accuracy over the table (the random-sample baseline), or None."""
        values = list((self.report or self.signal).values())
        return sum(values) / len(values) if values else None


def _template_pattern(template: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex that reads a key back into its slots' texts, and the slot of each group."""
    parts, order, at = [], [], 0
    for m in re.finditer(r"\{([^{}]*)\}", template):
        parts.append(re.escape(template[at:m.start()]))
        parts.append(f"(?P<s{len(order)}>.+?)")
        order.append(m.group(1))
        at = m.end()
    parts.append(re.escape(template[at:]))
    return re.compile("^" + "".join(parts) + "$", re.DOTALL), order


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    table = read_csv(path, "table", empty_hint="the table needs a header row and one row per combination")
    return table.header, [(f"line {lineno}", cells) for lineno, cells in table.rows]


def _read_json(path: Path, key_column: str) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TableError(f"table {path} is not valid JSON: {exc}", hint="fix the JSON at that line") from None
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        records = [{key_column: k, **v} for k, v in data.items()]
        label = lambda i, r: f"key {r[key_column]!r}"  # noqa: E731
    elif isinstance(data, list):
        records = data
        label = lambda i, r: f"record {i + 1}"  # noqa: E731
    else:
        raise TableError(f"table {path} must hold a list of objects (one per row) or an object of key -> object",
                         hint=f"e.g. [{{\"{key_column}\": \"...\", \"val_accuracy\": 0.91}}] ({DOCS})")
    header: list[str] = []
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TableError(f"table {path} record {i + 1} is {type(record).__name__}, not an object",
                             hint="every row is an object of column -> value")
        for k, v in record.items():
            if k not in header:
                header.append(k)
            if isinstance(v, (dict, list)):
                raise TableError(f"table {path} {label(i, record)}, column {k}: nested values are not supported",
                                 hint="flatten the row into column -> number or text")
        out.append((label(i, record), {k: ("" if v is None else v) for k, v in record.items()}))
    return header, out
