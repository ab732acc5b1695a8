"""`agent history`: the runs in the home, or one run's candidates."""

from __future__ import annotations

import argparse

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a run id, or 'latest': list its candidates")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agent.api import history
    from agent.display import MEASURED, accuracy, search_lines

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
                          str(r["evaluations"]), accuracy(r["best_val_accuracy"]))
        console.print(table)
        return 0
    table = Table(title=f"run {out['run_id']}: {out['task']}, {out['status']}, {out['evaluations']} evaluations",
                  title_justify="left")
    measured = [k for k, label in MEASURED if any(c["measurements"].get(k) is not None for c in out["candidates"])]
    for col in ("candidate", "status", "val acc", "test acc", *(dict(MEASURED)[k] for k in measured), "proposer",
                "key / error"):
        table.add_column(col, justify="left" if col in ("candidate", "status", "proposer", "key / error") else "right")
    for c in out["candidates"]:
        m = c["measurements"]
        shown = [f"{m[k]:.3g}" if k == "latency_ms" else f"{m[k]:,}" if m.get(k) is not None else "" for k in measured]
        note = (c["error"] or "") if c["status"] != "ok" and c["error"] else (c["canonical_key"] or "")
        table.add_row(c["candidate_id"], c["status"], accuracy(c["val_accuracy"]), accuracy(c["test_accuracy"]), *shown,
                      c["proposer"], note[:100])
    console.print(table)
    for line in search_lines(out.get("summary") or {}):
        console.print(line, highlight=False)
    if out["insights"]:
        last = out["insights"][-1]["reflection"]
        latest = [i for i in out["insights"] if i["reflection"] == last]
        console.print(f"insights of the last reflection (after {latest[0]['after_evaluations']} evaluations):", highlight=False)
        for i in latest:
            console.print(f"  - {i['text']}", highlight=False)
    return 0
