"""The report as text: one self-contained HTML page, and a Markdown summary.

Both are made from the same :class:`~agent.reporting.data.ReportData` and the same sentences
(``_facts``, ``_baseline_lines`` ...), so they never disagree. Everything that came from the
history is untrusted (LLM rationales, specs, error texts, even ids): the HTML escapes every
such string with :func:`html.escape`, and the page carries a Content-Security-Policy that
allows no script and no request at all (images are ``data:`` URIs, the style is inline), so
it opens offline and a string that slipped through could still do nothing. The Markdown
escapes the characters that would make active markup (raw HTML, links and images that a viewer
would fetch, code spans, table cells, entities) and puts specs and ids in code spans.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime
from typing import Any

from agent.display import asha_line, early_stop_line, surrogate_line, training_epochs
from agent.reporting.data import CandidateInfo, ReportData, first_reaching
from agent.reporting.figures import Figure

TOP_ROWS = 10  # rows of the top-candidates table
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
SECTIONS = (("summary", "Summary"), ("progress", "Best so far, against random search"), ("pareto", "Pareto front"),
            ("curves", "Learning curves"), ("proposers", "Proposers and LLM"), ("lineage", "Lineage of the best"),
            ("top", "Top candidates"), ("failures", "Failures"))


# -- numbers and words -------------------------------------------------------------------

def acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _counts_text(data: ReportData) -> str:
    return ", ".join(f"{n} {status}" for status, n in data.counts.items() if n or status == "ok")


def _facts(data: ReportData) -> list[tuple[str, str]]:
    """The header: what ran, how far it got, how long it took and why it stopped."""
    s = data.summary
    facts = [("run", data.run_id), ("task", data.task), ("space", data.space), ("proposer", data.proposer),
             ("status", data.status), ("evaluations", f"{data.evaluations} of a budget of {data.budget}"),
             ("candidates by status", _counts_text(data) or "none yet"),
             ("wall time", f"{duration(data.wall_seconds)} ({data.wall_note})"),
             ("stop reason", data.stop_reason or "—"), ("started", when(data.created))]
    if data.finished is not None:
        facts.append(("finished", when(data.finished)))
    if s.get("proposals") is not None:
        facts.append(("proposals", f"{s['proposals']} ({s.get('duplicates_skipped', 0)} duplicates skipped, never "
                                   "evaluated)"))
    if (epochs := training_epochs(s)) is not None:
        facts.append(("training epochs", epochs))
    c = data.config
    settings = [f"seed {data.seed}"]
    for key, label in (("epochs", "epochs per candidate"), ("workers", "workers"), ("early_stop", "early stopping"),
                       ("device", "device"), ("llm", "LLM backend"), ("model", "model")):
        if c.get(key) not in (None, "", "off", []):
            settings.append(f"{label} {c[key]}")
    objectives = s.get("objectives") or c.get("objectives")
    if objectives and list(objectives) != ["accuracy"]:
        settings.append("objectives " + ", ".join(objectives))
    for key, label in (("max_latency_ms", "max latency ms"), ("max_params", "max params"), ("max_flops", "max FLOPs")):
        if c.get(key) is not None:
            settings.append(f"{label} {c[key]:,}" if isinstance(c[key], int) else f"{label} {c[key]}")
    facts.append(("settings", ", ".join(settings)))
    return facts


def _best_line(data: ReportData) -> str:
    b = data.best
    if b is None:
        return "no candidate has finished ok yet, so there is no best candidate"
    size = f", {b.params:,} parameters" if b.params is not None else ""
    return f"best by validation: {b.candidate_id}, validation accuracy {acc(b.val_accuracy)}{size}, proposer {b.proposer}"


def _final_line(data: ReportData) -> str:
    f = data.final
    if f is None:
        return ("final report: none yet (the best candidate is retrained on the test split when the search ends)"
                if data.status == "running" else "final report: none recorded (the run did not reach it)")
    if f.test_accuracy is None:
        return f"final report for {f.candidate_id}: no test accuracy ({f.source or 'no reason recorded'})"
    std = f" ± {f.test_accuracy_std:.4f}" if f.test_accuracy_std is not None else ""
    seeds = f" over {len(f.seeds)} seed(s) ({', '.join(map(str, f.seeds))})" if f.seeds else ""
    source = f"; {f.source}" if f.source else ""
    return f"final report for {f.candidate_id}: test accuracy {f.test_accuracy:.4f}{std}{seeds}{source}"


def _search_lines(data: ReportData) -> list[str]:
    """Early stopping and halving in words (the sentences `agent search` and `agent history` print)."""
    s, out = data.summary, []
    if s.get("early_stop"):
        out.append(early_stop_line(s["early_stop"]))
    if s.get("asha"):
        out.append(asha_line(s["asha"]))
    out += [f"warning: {w}" for w in s.get("warnings") or []]
    return out


def _baseline_lines(data: ReportData) -> list[str]:
    base = data.baseline
    if base is None:
        return [data.baseline_note]
    lines = [data.baseline_note + "."]
    if data.best is None:
        lines.append("This run has no ok candidate yet, so there is nothing to compare.")
        return lines
    if base.random_average is None:
        lines.append("The baseline has no ok candidate, so there is no random-sample average.")
        return lines
    ri = data.relative_improvement
    lines.append(f"Relative improvement over the random-sample average: {100 * ri:+.2f}% (best {acc(data.best.val_accuracy)} "
                 f"against the mean {acc(base.random_average)} of {base.samples} random samples; Yang et al. 2020).")
    same = base.best_after(data.evaluations)
    if same is not None:
        n = min(data.evaluations, base.evaluations)
        diff = data.best.val_accuracy - same
        lines.append(f"Random search's best after the same {n} evaluations: {acc(same)}; this run's best "
                     f"{acc(data.best.val_accuracy)} is {diff:+.4f} from it"
                     + (f" (the baseline made {base.evaluations} evaluations in all, best {acc(base.best)})"
                        if base.evaluations != n else "") + ".")
    mine = first_reaching(data.progress, data.best.val_accuracy)
    if mine is not None and base.progress:
        reached = first_reaching(base.progress, data.best.val_accuracy)
        lines.append(f"Evaluation time: this run reached its best after {duration(mine.seconds)} of "
                     f"{duration(data.progress[-1].seconds)} in all; random search "
                     + (f"reached that accuracy after {duration(reached.seconds)}" if reached is not None
                        else f"never reached it in {duration(base.progress[-1].seconds)}") + ".")
    return lines


def _depth_word(depth: int) -> str:
    return {0: "best", 1: "parent", 2: "grandparent"}.get(depth, f"{depth} generations back")


def _llm_rows(data: ReportData) -> list[tuple[str, str]]:
    llm = data.llm
    return [("calls", count(llm.get("calls"))), ("valid rate (after repairs)", _percent(llm.get("valid_rate"))),
            ("schema valid rate", _percent(llm.get("schema_valid_rate"))), ("repairs", count(llm.get("repairs"))),
            ("tokens in", count(llm.get("tokens_in"))), ("tokens out", count(llm.get("tokens_out"))),
            ("seconds", f"{llm.get('seconds') or 0:.1f}"),
            ("cost", "not priced" if llm.get("cost") is None else f"${llm['cost']:.4f}")]


_OP_COLUMNS = (("proposals", count), ("share", lambda v: _percent(v, 0)), ("outcomes", count),
               ("mean_reward", lambda v: "—" if v is None else f"{v:.3f}"), ("best", acc),
               ("seconds", lambda v: "—" if v is None else f"{v:.1f}"), ("dollars", lambda v: "—" if v is None else f"${v:.4f}"))


def _no_llm(data: ReportData) -> str:
    if data.proposer in ("random", "evolution"):
        return f"no LLM calls in this run (proposer {data.proposer} does not use an LLM)"
    return f"no LLM calls recorded for this run (proposer {data.proposer})"


def _size(c: CandidateInfo) -> str:
    return count(c.params)


def _insight_groups(data: ReportData) -> list[tuple[str, list[str]]]:
    groups: dict[str, tuple[int, list[str]]] = {}
    for i in data.insights:
        groups.setdefault(i["reflection"], (i["after_evaluations"], []))[1].append(i["text"])
    return [(f"after {after} evaluations", texts) for after, texts in groups.values()][-5:]


# -- HTML --------------------------------------------------------------------------------

def e(value: Any) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


CSS = """
:root { --ink: #1d2430; --muted: #5b6576; --line: #dfe3ea; --accent: #1f5fa8; --bg: #fbfcfd; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 10px; border-bottom: 1px solid var(--line);
padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 16px; }
code, pre, .num { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
code { background: #eef1f5; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
pre { background: #f2f4f7; padding: 8px; border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere;
      max-height: 320px; overflow: auto; }
nav { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 12px 0; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
.glance { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 4px; }
.glance div { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 160px; }
.glance b { display: block; font-size: 20px; } .glance span { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; margin: 8px 0; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f4f7; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
table.facts th { width: 190px; }
.wide td.text { max-width: 380px; overflow-wrap: anywhere; }
figure { margin: 14px 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.note { color: var(--muted); font-style: italic; }
details summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 40px; }
"""


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), cls: str = "") -> str:
    """A table whose cells are already HTML (escape before passing)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i in numeric else "text"}">{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(fig: Figure, number: int) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure id="fig-{e(fig.name)}"><img src="data:image/png;base64,{data}" alt="{e(fig.alt)}" '
            f'width="{fig.width}" height="{fig.height}"><figcaption><b>Figure {number}. {e(fig.title)}.</b> '
            f"{e(fig.caption)}</figcaption></figure>")


def _note(text: str) -> str:
    """A one-line note; `command` spans become <code> (after escaping, so nothing else can)."""
    return '<p class="note">' + re.sub(r"`([^`<>]+)`", r"<code>\1</code>", e(text)) + "</p>"


def _spec_cell(c: CandidateInfo) -> str:
    """The one-line spec, and the whole spec (a code-mode model file as its source) folded below it."""
    source = c.spec.get("source")
    label, full = ("model file", source) if isinstance(source, str) else \
        ("spec JSON", json.dumps(c.spec, sort_keys=True, indent=1))
    if len(full) > 8000:
        full = full[:8000] + "\n… (cut; `agent show ID --json` prints it whole)"
    return (f"<code>{e(_clip(c.spec_text, 300))}</code><details><summary>{label}</summary><pre>{e(full)}</pre>"
            "</details>")


def _clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_html(data: ReportData, figures: list[Figure], *, markdown_name: str, generated: datetime,
                version: str) -> str:
    figs = {f.name: f for f in figures}
    numbers = {f.name: i for i, f in enumerate(figures, 1)}

    def figure(name: str) -> str:
        return _figure_html(figs[name], numbers[name]) if name in figs else ""

    parts: list[str] = []
    add = parts.append
    # 1. summary
    glance = [(acc(data.best.val_accuracy) if data.best else "—", "best validation accuracy")]
    if data.final is not None and data.final.test_accuracy is not None:
        std = f" ± {data.final.test_accuracy_std:.4f}" if data.final.test_accuracy_std is not None else ""
        glance.append((f"{data.final.test_accuracy:.4f}{std}", "final test accuracy"))
    glance.append((f"{data.evaluations} / {data.budget}", "evaluations / budget"))
    if data.relative_improvement is not None:
        glance.append((f"{100 * data.relative_improvement:+.2f}%", "over the random-sample average"))
    glance.append((duration(data.wall_seconds), "wall time" + (" so far" if data.status == "running" else "")))
    add('<div class="glance">' + "".join(f"<div><b>{e(v)}</b><span>{e(k)}</span></div>" for v, k in glance) + "</div>")
    add('<table class="facts">' + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(data))
        + "</table>")
    add(f"<p>{e(_best_line(data))}.</p><p>{e(_final_line(data))}.</p>")
    for line in _search_lines(data):
        add(f"<p>{e(line)}</p>")
    sections = {"summary": "".join(parts)}
    # 2. progress
    body = "".join(f"<p>{e(line)}</p>" for line in _baseline_lines(data))
    body += figure("progress") or _note("no figure: no candidate has finished ok yet, so there is no best so far")
    sections["progress"] = body
    # 3. pareto
    if data.pareto is not None:
        p = data.pareto
        by_id = {cid: (x, a) for cid, x, a in p.points}
        rows = [[f"<code>{e(cid)}</code>", e(acc(by_id[cid][1])),
                 e(f"{by_id[cid][0]:.4g}" if p.metric == "latency_ms" else f"{int(by_id[cid][0]):,}")] for cid in p.front]
        sections["pareto"] = (figure("pareto") + "<h3>Non-dominated candidates</h3>"
                              + _table(["candidate", "val accuracy", e(p.label)], rows, {1, 2}))
    else:
        sections["pareto"] = _note(data.pareto_note)
    # 4. curves
    sections["curves"] = figure("curves") or _note("no learning curve was recorded for this run's candidates")
    # 5. proposers and LLM
    body = "<h3>Candidates by proposer</h3>" + (_note("no candidates yet") if not data.proposers else _table(
        ["proposer", "candidates", "evaluations", "ok", "invalid", "best val", "mean val (ok)"],
        [[e(r["proposer"]), e(r["candidates"]), e(r["evaluations"]), e(r["ok"]), e(r["invalid"]), e(acc(r["best"])),
          e(acc(r["mean"]))] for r in data.proposers], {1, 2, 3, 4, 5, 6}))
    if data.operators:
        body += "<h3>Portfolio operators</h3>" + figure("operators") + _table(
            ["operator"] + [k.replace("_", " ") for k, _ in _OP_COLUMNS],
            [[e(op)] + [e(fmt(row.get(k))) for k, fmt in _OP_COLUMNS] for op, row in data.operators.items()],
            set(range(1, len(_OP_COLUMNS) + 1)))
    else:
        body += _note(f"no portfolio operators: proposer {data.proposer} is not the portfolio")
    if data.summary.get("surrogate"):
        body += ("<h3>Surrogate</h3>" + _note(surrogate_line(data.summary["surrogate"]))
                 + (figure("surrogate") or _note("no prediction to compare yet: the surrogate predicts from its "
                                                 "first evaluations on")))
    body += "<h3>LLM calls</h3>"
    if data.llm.get("calls"):
        body += _table([k for k, _ in _llm_rows(data)], [[e(v) for _, v in _llm_rows(data)]],
                       set(range(len(_llm_rows(data)))))
        if data.llm_models:
            body += "<p>models: " + ", ".join(f"<code>{e(m['backend'])}</code> <code>{e(m['model'])}</code> "
                                              f"({e(m['calls'])} calls)" for m in data.llm_models) + "</p>"
    else:
        body += _note(_no_llm(data))
    body += "<h3>Insights from reflection</h3>"
    groups = _insight_groups(data)
    if groups:
        body += "".join(f"<p>{e(title)}:</p><ul>" + "".join(f"<li>{e(t)}</li>" for t in texts) + "</ul>"
                        for title, texts in groups)
    else:
        body += _note("no insights: reflection did not run in this run (it needs an LLM proposer and --reflect-every)")
    sections["proposers"] = body
    # 6. lineage
    if data.lineage is not None:
        lin = data.lineage
        by_id = {c.candidate_id: c for c in data.candidates}
        rows = [[e(_depth_word(n.depth)), f"<code>{e(n.candidate_id)}</code>", e(n.status), e(acc(n.val_accuracy)),
                 e(n.proposer), ", ".join(f"<code>{e(p)}</code>" for p in n.parents) or "—",
                 e(_clip(by_id[n.candidate_id].rationale, 240))] for n in lin.nodes]
        body = figure("lineage") + _table(["relation", "candidate", "status", "val accuracy", "proposer", "parents",
                                           "rationale"], rows, {3}, cls="wide")
        if lin.truncated:
            body += _note(f"{lin.truncated} more distant ancestors are not listed")
        if lin.outside:
            body += _note("parents outside this run: " + ", ".join(lin.outside))
        sections["lineage"] = body
    else:
        sections["lineage"] = _note(data.lineage_note)
    # 7. top candidates
    if data.top:
        rows = [[e(i), f"<code>{e(c.candidate_id)}</code>", e(c.status), e(acc(c.val_accuracy)), e(_size(c)),
                 e(c.proposer), _spec_cell(c), e(_clip(c.rationale, 600))] for i, c in enumerate(data.top[:TOP_ROWS], 1)]
        sections["top"] = (_table(["#", "candidate", "status", "val accuracy", "params", "proposer", "spec", "rationale"],
                                  rows, {0, 3, 4}, cls="wide")
                           + (_note(f"{len(data.top) - TOP_ROWS} more ok candidates: `agent history --run "
                                    f"{data.run_id}` lists them") if len(data.top) > TOP_ROWS else ""))
    else:
        sections["top"] = _note("no candidate has finished ok yet")
    # 8. failures
    if data.failures:
        sections["failures"] = _table(["error (first line)", "candidates", "one of them"],
                                      [[e(text), e(n), f"<code>{e(cid)}</code>"] for text, n, cid in data.failures],
                                      {1}, cls="wide") + _note("`agent show ID` prints a candidate's whole error")
    else:
        sections["failures"] = _note("no candidate failed, timed out or was rejected as invalid")

    nav = "".join(f'<a href="#{key}">{i}. {e(title)}</a>' for i, (key, title) in enumerate(SECTIONS, 1))
    content = "".join(f'<section id="{key}"><h2>{i}. {e(title)}</h2>{sections[key]}</section>'
                      for i, (key, title) in enumerate(SECTIONS, 1))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>archagent report: run {e(data.run_id)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>Run {e(data.run_id)}</h1>\n"
        f'<p class="sub">{e(data.task)} · space {e(data.space)} · proposer {e(data.proposer)} · {e(data.status)}</p>\n'
        f"<nav>{nav}</nav>\n{content}\n"
        f"<footer>Written by archagent {e(version)} at {e(when(generated))} from the history; the Markdown summary is "
        f"<code>{e(markdown_name)}</code> beside this file. Accuracies are fractions in [0, 1]; validation guides the "
        "search, test is read only for the final report.</footer>\n</main>\n</body>\n</html>\n"
    )


# -- Markdown ----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`\[\]<>|&])")  # raw HTML, links and images, code, table cells, entities


def md(value: Any, limit: int = 400) -> str:
    """Untrusted text as inert Markdown: one line, clipped, every markup character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _clip(str(value if value is not None else ""), limit))


def md_code(value: Any, limit: int = 200, *, cell: bool = False) -> str:
    """A code span that no backtick inside can end (in a table cell, pipes escaped as tables need)."""
    text = _clip(str(value), limit)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    if cell:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def render_markdown(data: ReportData, figures: list[Figure], *, html_name: str) -> str:
    out = [f"# archagent report: run {md_code(data.run_id)}", ""]
    for key, value in _facts(data):
        shown = md_code(value) if key in ("run", "task") else md(value)
        out.append(f"- **{key}**: {shown}")
    out += ["", f"**{md(_best_line(data))}**", "", md(_final_line(data)), ""]
    out += [f"- {md(line)}" for line in _search_lines(data)] + ([""] if _search_lines(data) else [])
    out += ["## Against random search", "", *(f"- {md(line)}" for line in _baseline_lines(data)), ""]
    out += ["## Pareto front", ""]
    if data.pareto is not None:
        p = data.pareto
        by_id = {cid: (x, a) for cid, x, a in p.points}
        out.append(f"{len(p.front)} of {len(p.points)} ok candidates are non-dominated in validation accuracy and "
                   f"{md(p.label)}:")
        out.append("")
        out += _md_table(["candidate", "val accuracy", md(p.label)],
                         [[md_code(cid, cell=True), acc(by_id[cid][1]),
                           f"{by_id[cid][0]:.4g}" if p.metric == "latency_ms" else f"{int(by_id[cid][0]):,}"]
                          for cid in p.front])
    else:
        out += [md(data.pareto_note), ""]
    out += ["## Top candidates", ""]
    if data.top:
        out += _md_table(["#", "candidate", "status", "val accuracy", "params", "proposer", "spec", "rationale"],
                         [[str(i), md_code(c.candidate_id, cell=True), c.status, acc(c.val_accuracy), _size(c),
                           md(c.proposer, 40), md_code(c.spec_text, 120, cell=True), md(c.rationale, 160)]
                          for i, c in enumerate(data.top[:TOP_ROWS], 1)])
    else:
        out += ["no candidate has finished ok yet", ""]
    out += ["## Lineage of the best", ""]
    if data.lineage is not None:
        out += [f"- {_depth_word(n.depth)}: {md_code(n.candidate_id)} val {acc(n.val_accuracy)}, {md(n.proposer, 40)}"
                f"{', ' + n.status if n.status != 'ok' else ''}" for n in data.lineage.nodes]
        if data.lineage.truncated:
            out.append(f"- … {data.lineage.truncated} more distant ancestors")
        out.append("")
    else:
        out += [md(data.lineage_note), ""]
    out += ["## Proposers and LLM", ""]
    if data.proposers:
        out += _md_table(["proposer", "candidates", "evaluations", "ok", "best val", "mean val (ok)"],
                         [[md(r["proposer"], 40), str(r["candidates"]), str(r["evaluations"]), str(r["ok"]),
                           acc(r["best"]), acc(r["mean"])] for r in data.proposers])
    else:
        out += ["no candidates yet", ""]
    if data.operators:
        out += _md_table(["operator"] + [k.replace("_", " ") for k, _ in _OP_COLUMNS],
                         [[md(op, 40)] + [fmt(row.get(k)) for k, fmt in _OP_COLUMNS] for op, row in data.operators.items()])
    if data.summary.get("surrogate"):
        out += [md(surrogate_line(data.summary["surrogate"]), 2000), ""]
    if data.llm.get("calls"):
        out += ["LLM: " + ", ".join(f"{k} {v}" for k, v in _llm_rows(data)), ""]
    else:
        out += [md(_no_llm(data)), ""]
    for title, texts in _insight_groups(data):
        out += [f"Insights {md(title)}:", *(f"- {md(t)}" for t in texts), ""]
    if data.failures:
        out += ["## Failures", ""]
        out += [f"- {n} × {md(text, 240)} (e.g. {md_code(cid)})" for text, n, cid in data.failures] + [""]
    names = ", ".join(f.name for f in figures) or "none"
    out += [f"Figures ({md(names)}) and the full tables: {md_code(html_name)}", ""]
    return "\n".join(out)


__all__ = ["acc", "duration", "e", "md", "md_code", "render_html", "render_markdown"]
