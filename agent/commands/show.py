"""`agent show CANDIDATE`: spec, arch string, metrics, curve, status and error of one candidate."""

from __future__ import annotations

import argparse
import json

from agent.commands.options import console as make_console, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("candidate", help="a candidate id (from `agent history --run RUN`)")
    parser.add_argument("--prompt", action="store_true",
                        help="print the LLM calls behind the candidate: every message and reply, exactly")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agent.api import show

    c = show(args.candidate, home=args.home)
    if args.prompt:
        return _print_prompt(c, args.json)
    if args.json:
        print_json(c)
        return 0
    console = make_console()
    console.print(f"[bold]{c['candidate_id']}[/]  status [bold]{c['status']}[/]  run {c['run_id']}  "
                  f"proposer {c['proposer']}", highlight=False)
    if c.get("arch"):
        console.print(f"arch: {c['arch']}", highlight=False)
    console.print("spec: " + json.dumps(c["spec"], sort_keys=True), highlight=False)
    if c["parents"]:
        console.print("parents: " + ", ".join(c["parents"]), highlight=False)
    if c["rationale"]:
        console.print(f"rationale: {c['rationale']}", highlight=False)
    if c["error"]:
        console.print(f"[red]error:[/] {c['error']}", highlight=False)
    if c.get("measurements"):
        console.print("measured before training: " + measurement_text(c["measurements"]), highlight=False)
    if c.get("selection"):
        console.print("why it was evaluated: " + selection_text(c["selection"], c), highlight=False)
    table = Table(title="evaluations", title_justify="left")
    for col in ("purpose", "status", "fidelity", "val acc", "test acc", "source", "wall s"):
        table.add_column(col)
    for e in c["evaluations"]:
        table.add_row(e["purpose"], e["status"], f"{e['fidelity']:g} {e['fidelity_unit']}" if e["fidelity"] else "",
                      "" if e["val_accuracy"] is None else f"{e['val_accuracy']:.4f}",
                      "" if e["test_accuracy"] is None else f"{e['test_accuracy']:.4f}",
                      e["source"] or "", f"{e['wall_seconds']:.3f}")
    if c["evaluations"]:
        console.print(table)
    if c["curve"]:
        points = ", ".join(f"epoch {p['epoch']:g}: {p['val_accuracy']:.4f}" for p in c["curve"] if p["val_accuracy"] is not None)
        console.print(f"validation curve: {points}", highlight=False)
    if c.get("forecasts"):
        console.print(_forecast_table(c))
    return 0


def selection_text(why: dict, c: dict) -> str:
    """The surrogate's choice in words: what it predicted, how sure it was, by which rule, against what."""
    parts = [f"{why.get('operator', '?')} proposal picked from a pool of {why.get('pool', '?')} by {why.get('rule', '?')}"]
    predicted, interval = why.get("predicted_val_accuracy"), why.get("interval80")
    if why.get("evaluations") and predicted is not None:
        text = f"predicted val {predicted:.4f}"
        if interval and None not in interval:
            text += f" (80% interval {interval[0]:.4f}-{interval[1]:.4f})"
        measured = next((e["val_accuracy"] for e in c.get("evaluations", [])
                         if e["purpose"] == "search" and e["val_accuracy"] is not None), None)
        if measured is not None:
            text += f", measured {measured:.4f}"
        parts.append(text + f", from {why['evaluations']} evaluation(s)")
    if why.get("acquisition") is not None:
        parts.append(f"acquisition value {why['acquisition']:.4g}" + (f" (batch pick {why['batch_rank']})"
                                                                    if why.get("batch_rank", 1) > 1 else ""))
    if why.get("evidence") is not None:
        parts.append(f"evidence {why['evidence']:+.2f} sd from " + "+".join(why.get("evidence_sources", []))
                     + f", weighted {why.get('evidence_weight', 0):.2f}")
    if why.get("prior_weight") is not None:
        parts.append(f"prior runs' share of the prediction {why['prior_weight']:.0%}")
    if why.get("predicted_seconds") is not None:
        parts.append(f"predicted training {why['predicted_seconds']:.1f} s")
    return "; ".join(parts)


def measurement_text(m: dict) -> str:
    """The probe's measurements in words: params, FLOPs, latency (and how it was measured), proxies."""
    parts = []
    if m.get("params") is not None:
        parts.append(f"{m['params']:,} params")
    if m.get("flops") is not None:
        parts.append(f"{m['flops']:,} FLOPs")
    if m.get("latency_ms") is not None:
        text = f"latency {m['latency_ms']:.4g} ms (IQR {m.get('latency_iqr_ms', 0):.3g}, raw {m.get('latency_raw_ms', 0):.4g} ms"
        if m.get("throughput_images_per_s") is not None:
            text += f"; {m['throughput_images_per_s']:,.0f} images/s at batch {m['throughput_batch']}"
        parts.append(text + f"; {m.get('latency_device', '')})")
    proxies = {k[6:]: v for k, v in m.items() if k.startswith("proxy_")}
    if proxies:
        parts.append("proxies " + ", ".join(f"{k} {'undefined' if v is None else f'{v:.4g}'}" for k, v in proxies.items()))
    return "; ".join(parts)


def _forecast_table(c: dict):
    """The early-stop rule's forecasts, epoch by epoch; with the final value once it is known."""
    from rich.table import Table

    final = next((e["val_accuracy"] for e in c["evaluations"] if e["purpose"] == "search" and e["status"] == "ok"), None)
    title = "learning-curve forecasts of the final validation accuracy"
    if final is not None:
        title += f" (final: {final:.4f})"
    table = Table(title=title, title_justify="left")
    for col in ("epoch", "val so far", "forecast", "80% interval", "incumbent", "P(beat)", "action", "method"):
        table.add_column(col)
    for f in c["forecasts"]:
        style = {"stop": "red", "audit": "yellow"}.get(f["action"])
        hit = final is not None and f["lower"] <= final <= f["upper"]
        interval = f"{f['lower']:.4f}-{f['upper']:.4f}" + ("" if final is None else (" ok" if hit else " missed"))
        table.add_row(f"{f['epoch']:g}/{f['final_epoch']:g}", f"{f['last_value']:.4f}", f"{f['median']:.4f}", interval,
                      "" if f["incumbent"] is None else f"{f['incumbent']:.4f}", f"{f['p_beat']:.3g}",
                      f"[{style}]{f['action']}[/]" if style else f["action"], f"{f['method']} ({f['reference_curves']})")
    return table


def _print_prompt(c: dict, as_json: bool) -> int:
    """The calls that proposed the candidate, in order; the texts are printed exactly as stored."""
    import sys

    calls = c.get("llm_calls") or []
    if as_json:
        print_json({"candidate_id": c["candidate_id"], "llm_calls": calls})
        return 0
    if not calls:
        print(f"{c['candidate_id']} was not proposed by an LLM (proposer {c['proposer']})")
        return 0
    out = sys.stdout
    for call in calls:
        out.write(f"=== call {call['call_id']}: {call['backend']} {call['model']}, {call['template']}, attempt "
                  f"{call['attempt']}, outcome {call['outcome']}, {call['tokens_in']} tokens in, {call['tokens_out']} out, "
                  f"{call['seconds']:.2f} s ===\n")
        for m in call["messages"]:
            out.write(f"--- {m['role']} ---\n{m['content']}\n")
        out.write(f"--- reply ---\n{call['response']}\n")
        if call["error"]:
            out.write(f"--- why it was not used ---\n{call['error']}\n")
    return 0
