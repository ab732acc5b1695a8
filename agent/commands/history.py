"""`agent history`: the runs in the home, or one run's candidates."""

from __future__ import annotations

import argparse

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a run id, or 'latest': list its candidates")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agent.api import history

    out = history(args.run, home=args.home)
    if args.json:
        print_json(out)
        return 0
    console = make_console()
    if args.run is None:
        if not out["runs"]:
            console.print("no runs yet: start one with `agent search --task ...`")
            return 0
        table = Table(title="runs", title_justify="left")
        for col in ("run", "task", "proposer", "status", "created", "evaluations", "best val acc"):
            table.add_column(col, justify="right" if col in ("evaluations", "best val acc") else "left")
        for r in out["runs"]:
            table.add_row(r["run_id"], r["task"], r["proposer"], r["status"], r["created"][:19],
                          str(r["evaluations"]), _fmt(r["best_val_accuracy"]))
        console.print(table)
        return 0
    table = Table(title=f"run {out['run_id']}: {out['task']}, {out['status']}, {out['evaluations']} evaluations",
                  title_justify="left")
    for col in ("candidate", "status", "val acc", "test acc", "proposer", "key / error"):
        table.add_column(col, justify="right" if "acc" in col else "left")
    for c in out["candidates"]:
        table.add_row(c["candidate_id"], c["status"], _fmt(c["val_accuracy"]), _fmt(c["test_accuracy"]), c["proposer"],
                      c["canonical_key"] or (c["error"] or "")[:80])
    console.print(table)
    if out["insights"]:
        last = out["insights"][-1]["reflection"]
        latest = [i for i in out["insights"] if i["reflection"] == last]
        console.print(f"insights of the last reflection (after {latest[0]['after_evaluations']} evaluations):", highlight=False)
        for i in latest:
            console.print(f"  - {i['text']}", highlight=False)
    return 0
