"""`agent history`: the runs in the home, or one run's candidates."""

from __future__ import annotations

import argparse

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a run id, or 'latest': list its candidates")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


MEASURED = (("latency_ms", "latency ms"), ("params", "params"), ("flops", "FLOPs"))  # before training, when measured


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


def asha_line(r: dict) -> str:
    """The successive-halving block of a run summary, in words."""
    rungs = ", ".join(f"{x['reached']} reached {x['epochs']} epochs ({x['promoted']} went on)" for x in r["rungs"])
    return f"successive halving (eta {r['eta']}, {r['max_epochs']} epochs): {rungs}; {r['pruned']} pruned at a rung"


def pareto_line(summary: dict) -> str:
    """The Pareto front of a multi-objective run, one candidate a line."""
    lines = [f"Pareto front ({', '.join(summary['objectives'])}): {len(summary['pareto'])} candidate(s)"]
    for m in summary["pareto"]:
        values = [f"val {m['val_accuracy']:.4f}"]
        if m.get("latency_ms") is not None:
            values.append(f"latency {m['latency_ms']:.3g} ms")
        values += [f"{m[k]:,} {k}" for k in ("params", "flops") if m.get(k) is not None]
        lines.append(f"  {m['candidate_id']}: " + ", ".join(values))
    return "\n".join(lines)


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
    measured = [k for k, label in MEASURED if any(c["measurements"].get(k) is not None for c in out["candidates"])]
    for col in ("candidate", "status", "val acc", "test acc", *(dict(MEASURED)[k] for k in measured), "proposer",
                "key / error"):
        table.add_column(col, justify="left" if col in ("candidate", "status", "proposer", "key / error") else "right")
    for c in out["candidates"]:
        m = c["measurements"]
        shown = [f"{m[k]:.3g}" if k == "latency_ms" else f"{m[k]:,}" if m.get(k) is not None else "" for k in measured]
        note = (c["error"] or "") if c["status"] != "ok" and c["error"] else (c["canonical_key"] or "")
        table.add_row(c["candidate_id"], c["status"], _fmt(c["val_accuracy"]), _fmt(c["test_accuracy"]), *shown,
                      c["proposer"], note[:100])
    console.print(table)
    summary = out.get("summary") or {}
    if summary.get("epochs_trained") is not None:
        console.print(f"training epochs: {summary['epochs_trained']} spent, {summary['epochs_saved']} saved by early "
                      "stopping", highlight=False)
    if summary.get("early_stop"):
        console.print(early_stop_line(summary["early_stop"]), highlight=False)
    if summary.get("asha"):
        console.print(asha_line(summary["asha"]), highlight=False)
    if summary.get("pareto"):
        console.print(pareto_line(summary), highlight=False)
    if out["insights"]:
        last = out["insights"][-1]["reflection"]
        latest = [i for i in out["insights"] if i["reflection"] == last]
        console.print(f"insights of the last reflection (after {latest[0]['after_evaluations']} evaluations):", highlight=False)
        for i in latest:
            console.print(f"  - {i['text']}", highlight=False)
    return 0
