"""The sentences that describe a search, written once: ``agent search`` prints them when a run
ends, ``agent history --run`` for a recorded run, and ``agent report`` puts them in its page.

Every function takes the search summary as its JSON object (``SearchSummary.to_json()``, the
``summary`` of a recorded run; docs/contracts.md) or one block of it, and returns plain text
(no markup: callers escape it for HTML or Markdown, or print it as it is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MEASURED = (("latency_ms", "latency ms"), ("params", "params"), ("flops", "FLOPs"))  # before training, when measured


def accuracy(value: float | None, missing: str = "") -> str:
    return missing if value is None else f"{value:.4f}"


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def counts_text(counts: dict[str, int]) -> str:
    """``3 ok, 1 failed``: the statuses that occurred."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def outcome_line(s: dict[str, Any]) -> str:
    """Evaluations, counts by status, duplicates, why it stopped and how long it took."""
    return (f"{s['evaluations']} evaluations ({counts_text(s['counts']) or 'none'}); {s['duplicates_skipped']} duplicate "
            f"proposals skipped; stopped: {s['stop_reason']}; {s['wall_seconds']:.1f} s")


def training_epochs(s: dict[str, Any]) -> str | None:
    """``12 spent, 3 saved by early stopping`` where the run trained (None where it looked results up)."""
    if s.get("epochs_trained") is None:
        return None
    return f"{s['epochs_trained']:,} spent, {s.get('epochs_saved') or 0:,} saved by early stopping"


def early_stop_line(r: dict[str, Any]) -> str:
    """The early-stop block of a run summary, in words: what the rule did and how its audits came out."""
    text = (f"early stopping (P(beat incumbent) < {r['threshold']:g}): {r['forecasts']} forecasts, {r['stopped']} "
            f"candidates stopped; audits ({r['audit_fraction']:.0%} of would-be stops train on): {r['audits_finished']} finished")
    if r["audits_finished"]:
        text += (f", forecast error {r['audit_mean_abs_error']:.4f} (mean abs), {r['audit_coverage80']:.0%} inside "
                 f"their 80% interval, {r['audit_would_have_won']} would have beaten the incumbent")
    return text


def asha_line(r: dict[str, Any]) -> str:
    """The successive-halving block of a run summary, in words."""
    rungs = ", ".join(f"{x['reached']} reached {x['epochs']} epochs ({x['promoted']} went on)" for x in r["rungs"])
    return f"successive halving (eta {r['eta']}, {r['max_epochs']} epochs): {rungs}; {r['pruned']} pruned at a rung"


def pretraining_line(p: dict[str, Any]) -> str:
    """What was measured before training, and what it rejected."""
    return (f"before training: {p['measured']} candidates measured ({p['seconds']:.1f} s), "
            f"{p['rejected_by_constraints']} rejected by a constraint"
            + (f", {p['screened_out']} screened out by {p['proxy']}" if p["proxy"] else ""))


def proxies_line(proxies: dict[str, Any]) -> str | None:
    """How each zero-cost proxy ranked the run's candidates (None when no proxy has a correlation)."""
    rhos = [f"{name} {r['spearman_val_accuracy']:+.2f}" for name, r in proxies.items()
            if r["spearman_val_accuracy"] is not None]
    return "zero-cost proxies vs validation accuracy (Spearman, this run): " + ", ".join(rhos) if rhos else None


def pareto_line(s: dict[str, Any]) -> str:
    """The Pareto front of a multi-objective run, one candidate a line."""
    lines = [f"Pareto front ({', '.join(s['objectives'])}): {len(s['pareto'])} candidate(s)"]
    for m in s["pareto"]:
        values = [f"val {m['val_accuracy']:.4f}"]
        if m.get("latency_ms") is not None:
            values.append(f"latency {m['latency_ms']:.3g} ms")
        values += [f"{m[k]:,} {k}" for k in ("params", "flops") if m.get(k) is not None]
        lines.append(f"  {m['candidate_id']}: " + ", ".join(values))
    return "\n".join(lines)


def llm_line(m: dict[str, Any]) -> str:
    """The LLM's calls, repairs, validity, tokens, seconds and dollars."""
    return (f"LLM: {m['calls']} calls ({m['repairs']} repairs), replies in schema {rate(m['schema_valid_rate'])}, "
            f"proposals valid {rate(m['valid_rate'])}, {m['tokens_in']} tokens in / {m['tokens_out']} out, "
            f"{m['seconds']:.1f} s" + (f", ${m['cost']:.4f}" if m.get("cost") is not None else ""))


def operators_line(operators: dict[str, Any]) -> str:
    """The portfolio's operators: proposals, mean reward, best."""
    return "portfolio (improvement per " + operators["cost"] + "): " + "; ".join(
        f"{op} {o['proposals']} proposals" + (f", mean reward {o['mean_reward']:.2f}" if o["mean_reward"] is not None else "")
        + (f", best {o['best']:.4f}" if o["best"] is not None else "") for op, o in operators["operators"].items())


def search_lines(s: dict[str, Any]) -> list[str]:
    """What early stopping, halving, the pre-training screen, the proxies, the Pareto front, the LLM
    and the portfolio did, in that order: the lines a run's summary has of them."""
    out = []
    epochs = training_epochs(s)
    if epochs is not None:
        out.append(f"training epochs: {epochs}")
    if s.get("early_stop"):
        out.append(early_stop_line(s["early_stop"]))
    if s.get("asha"):
        out.append(asha_line(s["asha"]))
    if s.get("pretraining"):
        out.append(pretraining_line(s["pretraining"]))
    if s.get("proxies") and (line := proxies_line(s["proxies"])) is not None:
        out.append(line)
    if s.get("pareto"):
        out.append(pareto_line(s))
    if s.get("llm"):
        out.append(llm_line(s["llm"]))
    if s.get("operators"):
        out.append(operators_line(s["operators"]))
    if s.get("surrogate"):
        out.append(surrogate_line(s["surrogate"]))
    return out


def surrogate_line(g: dict[str, Any]) -> str:
    """The surrogate's work: the pool, its seconds, the proxy evidence's seconds, the priors used."""
    line = f"surrogate: each evaluation picked from a pool of about {g.get('pool', '?')} proposals; {g['fit_seconds']:.1f} s fitting and choosing"
    proxy = g.get("proxy_evidence")
    if proxy:
        line += (f"; {proxy['proxy']} scored {proxy['scored']} proposals in {proxy['seconds']:.1f} s"
                 + (f" ({proxy['failures']} could not be measured)" if proxy.get("failures") else ""))
    if g.get("priors"):
        line += "; priors: " + ", ".join(f"{p['run_id']} ({p['task']}, {p['candidates']} results)" for p in g["priors"])
    return line


def final_report_line(best: dict[str, Any], emphasis: Callable[[str], str] = str) -> str:
    """The final report of the best by validation: test accuracy (+- std over the seeds), its
    source, and the validation accuracy (with the rechecks' mean). ``emphasis`` marks up the
    words to stand out (the terminal's bold)."""
    test = accuracy(best.get("test_accuracy"), "n/a")
    if best.get("test_accuracy") is not None and best.get("test_accuracy_std") is not None:
        test += f" +- {best['test_accuracy_std']:.4f}"
    val = f"validation {best['val_accuracy']:.4f}"
    if best.get("val_accuracy_mean") is not None:
        val += f" (mean {best['val_accuracy_mean']:.4f} over {best['val_seeds']} seeds with its rechecks)"
    return (f"{emphasis('final report')} of the best by validation, {best['candidate_id']}: test accuracy "
            f"{emphasis(test)} ({best.get('test_source')}); {val}")
