"""`agent sql "SELECT ..."`: a read-only query on the history, as a table, JSON or CSV.

The query runs on a read-only connection cut off from files, extensions and other databases
(History.query_result): statements that change the history or touch anything outside it fail
with DuckDB's reason. One statement per call; transaction statements are refused; a query that
runs past --timeout is stopped.
"""

from __future__ import annotations

import argparse
import csv
import sys

from agent.commands.options import console as make_console, non_negative_float, non_negative_int, print_json
from evaluator.errors import UserInputError

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIMEOUT = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="one SQL statement, e.g. \"SELECT status, count(*) FROM candidates GROUP BY "
                                      "status\" (tables: runs, candidates, evaluations, curves, events, llm_calls, "
                                      "insights, forecasts, meta)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help='print {"columns", "rows", "truncated"} on stdout')
    out.add_argument("--csv", action="store_true", help="write CSV (a header line, then the rows) to stdout")
    parser.add_argument("--max-rows", dest="max_rows", type=non_negative_int, default=DEFAULT_MAX_ROWS,
                        help=f"rows to print at most (default {DEFAULT_MAX_ROWS}; 0: all)")
    parser.add_argument("--timeout", type=non_negative_float, default=DEFAULT_TIMEOUT,
                        help=f"seconds the query may run before it is stopped (default {DEFAULT_TIMEOUT:g}; 0: no "
                             "limit). Searches on the same home wait for the file while a query reads it.")


def run(args: argparse.Namespace) -> int:
    from agent.api import sql
    from agent.store.json_values import cell_text

    if not args.query.strip():
        raise UserInputError("the query is empty", hint='pass one SQL statement, e.g. agent sql "SELECT * FROM runs"')
    out = sql(args.query, home=args.home, max_rows=args.max_rows or None, timeout=args.timeout or None)
    if out["truncated"]:
        shown = "row is" if args.max_rows == 1 else f"{args.max_rows} rows are"
        print(f"note: only the first {shown} shown; pass --max-rows N for more (0: all), or add a LIMIT / WHERE to "
              "the query", file=sys.stderr)
    if args.json:
        print_json(out)
        return 0
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(out["columns"])
        writer.writerows([cell_text(v) for v in row] for row in out["rows"])
        sys.stdout.flush()
        return 0
    from rich.table import Table

    console = make_console()
    if not out["columns"]:
        console.print("the statement returned no result set", highlight=False)
        return 0
    table = Table(title_justify="left")
    for name in out["columns"]:
        table.add_column(name, overflow="fold")
    for row in out["rows"]:
        table.add_row(*("[dim]NULL[/]" if v is None else _escape(cell_text(v)) for v in row))
    console.print(table)
    console.print(f"{len(out['rows'])} row{'' if len(out['rows']) == 1 else 's'}"
                  + (" (truncated)" if out["truncated"] else ""), highlight=False)
    return 0


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
