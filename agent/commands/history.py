"""`agent history`: the runs in the home, or one run's candidates."""

from __future__ import annotations

import argparse

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a run id, or 'latest': list its candidates")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def early_stop_line(r: dict) -> str:
    """The early-stop block of a run summary, in words: what the rule did and how its audits came out."""
    text = (f"early stopping (P(beat incumbent) < {r['threshold']:g}): {r['forecasts']} forecasts, {r['stopped']} "
            f"candidates stopped; audits ({r['audit_fraction']:.0%} of would-be stops train on): {r['audits_finished']} finished")
    if r["audits_finished"]:
        text += (f", forecast error {r['audit_mean_abs_error']:.4f} (mean abs), {r['audit_coverage80']:.0%} inside "
                 f"their 80% interval, {r['audit_would_have_won']} would have beaten the incumbent")
    return text


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
    summary = out.get("summary") or {}
    if summary.get("epochs_trained") is not None:
        console.print(f"training epochs: {summary['epochs_trained']} spent, {summary['epochs_saved']} saved by early "
                      "stopping", highlight=False)
    if summary.get("early_stop"):
        console.print(early_stop_line(summary["early_stop"]), highlight=False)
    if out["insights"]:
        last = out["insights"][-1]["reflection"]
        latest = [i for i in out["insights"] if i["reflection"] == last]
        console.print(f"insights of the last reflection (after {latest[0]['after_evaluations']} evaluations):", highlight=False)
        for i in latest:
            console.print(f"  - {i['text']}", highlight=False)
    return 0
