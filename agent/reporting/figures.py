"""The report's figures: matplotlib, drawn off-screen (Agg) into PNG bytes.

matplotlib is the ``report`` extra; it is imported only here and only when a report is made.
No pyplot: every figure is a ``matplotlib.figure.Figure`` on its own Agg canvas, so drawing
touches no global backend state and leaves nothing open. Every figure comes with alt text
that states what it shows in numbers, and a caption; both are plain text (the HTML renderer
escapes them). Labels that carry history text go through :func:`_plain`, since matplotlib
would read ``$...$`` in them as mathematics.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from agent.reporting.data import ReportData, first_reaching
from evaluator.errors import ArchAgentError

INSTALL_HINT = "pip install 'archagent[report]' (it installs matplotlib>=3.7)"
RUN_COLOR = "#1f5fa8"
BASELINE_COLOR = "#8a8a8a"
FRONT_COLOR = "#c0392b"
PRUNED_COLOR = "#c0392b"
STOPPED_COLOR = "#e08a00"
DPI = 110


@dataclass(frozen=True)
class Figure:
    name: str  # stable identifier: progress, pareto, curves, lineage, operators
    title: str
    caption: str
    alt: str
    png: bytes
    width: int  # pixels
    height: int


def require_matplotlib() -> None:
    """Fail early, with the fix, when the report extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ArchAgentError("`agent report` draws its figures with matplotlib, which is not installed",
                             hint=INSTALL_HINT) from None


def _new(width: float, height: float, panels: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    for ax in axes:
        ax.grid(True, color="#e4e4e4", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def _png(fig) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    width, height = fig.canvas.get_width_height()
    return buffer.getvalue(), int(width), int(height)


def _plain(text: Any, limit: int = 40) -> str:
    """History text as a matplotlib label: clipped, with ``$`` kept literal (no mathtext)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("\\", "/").replace("$", r"\$")


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "hours"
    if seconds >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _step(ax, xs: list[float], ys: list[float | None], **style) -> None:
    """A best-so-far staircase from the first evaluation that has a value."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", **style)


def progress(data: ReportData) -> Figure | None:
    points = data.progress
    if not any(p.best is not None for p in points):
        return None
    base = data.baseline
    fig, (by_n, by_t) = _new(11.0, 4.6, panels=2)
    scale, unit = _time_unit(max([points[-1].seconds] + ([base.progress[-1].seconds] if base and base.progress else [])))
    label = f"this run ({_plain(data.proposer)})"
    for ax, key in ((by_n, "evaluations"), (by_t, "seconds")):
        xs = [getattr(p, key) / (scale if key == "seconds" else 1) for p in points]
        ok = [(x, p.value) for x, p in zip(xs, points) if p.value is not None]
        ax.scatter([x for x, _ in ok], [v for _, v in ok], s=14, color=RUN_COLOR, alpha=0.28, linewidths=0,
                   label="each ok evaluation (this run)")
        _step(ax, xs, [p.best for p in points], color=RUN_COLOR, linewidth=2.2, label=label, zorder=3)
        if base is not None and base.progress:
            bxs = [getattr(p, key) / (scale if key == "seconds" else 1) for p in base.progress]
            _step(ax, bxs, [p.best for p in base.progress], color=BASELINE_COLOR, linewidth=1.8, linestyle="--",
                  label=f"random search, run {_plain(base.run_id)}")
            if base.random_average is not None:
                ax.axhline(base.random_average, color=BASELINE_COLOR, linewidth=1.0, linestyle=":",
                           label=f"random-sample average {base.random_average:.4f}")
        ax.set_ylabel("validation accuracy")
    from matplotlib.ticker import MaxNLocator

    by_n.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_n.set_xlabel("evaluations")
    by_t.set_xlabel(f"evaluation time ({unit}, summed over workers)")
    by_n.set_title("best so far, against evaluations", fontsize=10)
    by_t.set_title("best so far, against evaluation time", fontsize=10)
    handles, labels = by_n.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=len(labels), frameon=False)
    png, w, h = _png(fig)
    top = max(p.best for p in points if p.best is not None)
    first = first_reaching(points, top)
    alt = (f"Two panels: best validation accuracy so far of run {data.run_id} against evaluations (left) and against "
           f"evaluation time (right). It reaches {top:.4f} after {first.evaluations} of "
           f"{len(points)} evaluations ({first.seconds:.0f} s of evaluation time).")
    if base is not None and base.best is not None:
        same = base.best_after(len(points))
        alt += (f" The random-search baseline, run {base.run_id}, reaches {base.best:.4f} after {base.evaluations} "
                f"evaluations" + (f" ({same:.4f} after {len(points)})" if same is not None else "")
                + (f"; its random-sample average is {base.random_average:.4f}." if base.random_average is not None
                   else "."))
    caption = ("Best validation accuracy among the candidates that finished ok, after each evaluation (dots: each ok "
               "evaluation). Time is the running sum of the search evaluations' seconds, so runs with different worker "
               "counts compare fairly (replayed curves count their virtual seconds).")
    if base is not None:
        caption += f" Dashed: the random-search baseline, run {base.run_id}; dotted: its random-sample average."
    return Figure("progress", "Best so far", caption, alt, png, w, h)


def pareto(data: ReportData) -> Figure | None:
    p = data.pareto
    if p is None:
        return None
    fig, (ax,) = _new(7.5, 4.6)
    front = set(p.front)
    others = [(x, a) for cid, x, a in p.points if cid not in front]
    ax.scatter([x for x, _ in others], [a for _, a in others], s=22, color=RUN_COLOR, alpha=0.45, linewidths=0,
               label=f"ok candidates ({len(p.points)})")
    by_id = {cid: (x, a) for cid, x, a in p.points}
    fx = [by_id[cid][0] for cid in p.front]
    fa = [by_id[cid][1] for cid in p.front]
    ax.step(fx, fa, where="post", color=FRONT_COLOR, linewidth=1.6, alpha=0.9)
    ax.scatter(fx, fa, s=46, color=FRONT_COLOR, edgecolors="black", linewidths=0.6, zorder=3,
               label=f"non-dominated ({len(p.front)})")
    for cid in p.front[:12]:
        ax.annotate(_plain(cid.rsplit("-", 1)[-1]), by_id[cid], textcoords="offset points", xytext=(5, -10), fontsize=7)
    if data.best is not None and data.best.candidate_id in by_id:
        ax.scatter(*by_id[data.best.candidate_id], marker="*", s=180, color="#f1c40f", edgecolors="black",
                   linewidths=0.6, zorder=4, label="best by validation")
    xs = [x for _, x, _ in p.points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    if p.metric != "latency_ms":
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(f"{p.label} (lower is better)")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8, loc="best")
    png, w, h = _png(fig)
    best_front = max(p.front, key=lambda cid: by_id[cid][1])
    small = min(p.front, key=lambda cid: by_id[cid][0])
    alt = (f"Scatter of validation accuracy against {p.label} for the {len(p.points)} ok candidates of run "
           f"{data.run_id}; {len(p.front)} are non-dominated, from {small} ({_num(by_id[small][0], p.metric)}, "
           f"{by_id[small][1]:.4f}) to {best_front} ({_num(by_id[best_front][0], p.metric)}, {by_id[best_front][1]:.4f}).")
    caption = (f"Accuracy against {p.label}: every ok candidate; the non-dominated ones (no other is both at least as "
               f"accurate and at most as large) in red, joined by the front's staircase.")
    if p.missing:
        caption += f" {p.missing} ok candidate(s) without a recorded {p.label} are not drawn."
    return Figure("pareto", "Pareto front", caption, alt, png, w, h)


def _num(value: float, metric: str) -> str:
    return f"{value:.3g} ms" if metric == "latency_ms" else f"{int(value):,} {metric}"


def curves(data: ReportData) -> Figure | None:
    c = data.curves
    if not c.top and not c.stopped:
        return None
    fig, (ax,) = _new(9.0, 4.8)
    for k in c.stopped:
        color = PRUNED_COLOR if k.status == "pruned" else STOPPED_COLOR
        xs, ys = [p[0] for p in k.points], [p[1] for p in k.points]
        ax.plot(xs, ys, color=color, linewidth=0.9, linestyle="--", alpha=0.45)
        ax.scatter([k.stopped_at], [ys[-1]], marker="X" if k.status == "pruned" else "v", s=36, color=color,
                   edgecolors="black", linewidths=0.4, zorder=3)
        if k.forecast is not None:
            f = k.forecast
            ax.errorbar([f["final_epoch"]], [f["median"]], yerr=[[f["median"] - f["lower"]], [f["upper"] - f["median"]]],
                        fmt="o", markersize=3, color=STOPPED_COLOR, alpha=0.6, capsize=2, linewidth=0.9)
    palette = ["#1f5fa8", "#2a9d8f", "#8e44ad", "#d35400", "#16a085", "#2c3e50", "#7f8c8d", "#c71585"]
    for i, k in enumerate(c.top):
        xs, ys = [p[0] for p in k.points], [p[1] for p in k.points]
        ax.plot(xs, ys, color=palette[i % len(palette)], linewidth=2.0 if i == 0 else 1.4, marker="o",
                markersize=6 if len(xs) == 1 else 3 if len(xs) < 30 else 0, label=f"{_plain(k.short_id)}  {k.val_accuracy:.4f}")
    rungs = [r["epochs"] for r in ((data.summary.get("asha") or {}).get("rungs") or []) if isinstance(r.get("epochs"), (int, float))]
    for epoch in rungs:
        ax.axvline(epoch, color="#999999", linewidth=0.8, linestyle=":")
    handles, labels = ax.get_legend_handles_labels()
    from matplotlib.lines import Line2D

    pruned = sum(k.status == "pruned" for k in c.stopped)
    stopped = len(c.stopped) - pruned
    if pruned:
        handles.append(Line2D([], [], color=PRUNED_COLOR, linestyle="--", marker="X", markeredgecolor="black"))
        labels.append(f"pruned ({pruned}), × at the stop")
    if stopped:
        handles.append(Line2D([], [], color=STOPPED_COLOR, linestyle="--", marker="v", markeredgecolor="black"))
        labels.append(f"stopped early ({stopped}), ▼ at the stop")
    if any(k.forecast for k in c.stopped):
        handles.append(Line2D([], [], color=STOPPED_COLOR, marker="o", linestyle="-", markersize=3))
        labels.append("its forecast at the last epoch (80%)")
    if rungs:
        handles.append(Line2D([], [], color="#999999", linestyle=":"))
        labels.append("successive-halving rungs")
    ax.legend(handles, labels, fontsize=8, loc="best", ncol=2 if len(labels) > 7 else 1)
    from matplotlib.ticker import MaxNLocator

    last = max([p[0] for k in c.top + c.stopped for p in k.points] + [c.max_epochs or 0])
    ax.set_xlim(0, last * 1.02 + (0.5 if last < 10 else 0))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    png, w, h = _png(fig)
    alt = f"Validation accuracy against epoch for the {len(c.top)} best ok candidates of run {data.run_id}"
    if c.top:
        alt += " (" + ", ".join(f"{k.short_id} {k.val_accuracy:.4f}" for k in c.top) + ")"
    if c.stopped:
        stops = sorted({k.stopped_at for k in c.stopped if k.stopped_at is not None})
        alt += (f", and {len(c.stopped)} candidates that did not train to the end ({pruned} pruned, {stopped} stopped "
                f"early), marked where they stopped (epochs {', '.join(f'{e:g}' for e in stops[:10])})")
    alt += "."
    caption = "Learning curves (validation accuracy per epoch) of the best ok candidates; the legend gives each final accuracy."
    if c.stopped:
        caption += (" Dashed: candidates that early stopping ended, each marked at the epoch it stopped "
                    "(× pruned by successive halving, ▼ stopped by the learning-curve forecast).")
        if c.stopped_total > len(c.stopped):
            caption += f" {len(c.stopped)} of {c.stopped_total} shown: those with the highest accuracy at their stop."
    if c.top and max(len(k.points) for k in c.top) == 1:
        caption += " Each candidate trained one epoch, so each curve is a single point."
    return Figure("curves", "Learning curves", caption, alt, png, w, h)


def lineage(data: ReportData) -> Figure | None:
    lin = data.lineage
    if lin is None:
        return None
    levels: dict[int, list[Any]] = {}
    for node in lin.nodes:
        levels.setdefault(node.depth, []).append(node)
    deepest = max(levels)
    widest = max(len(v) for v in levels.values())
    fig, (ax,) = _new(min(12.0, 2.0 + 1.6 * (deepest + 1)), min(7.5, 1.8 + 0.75 * widest))
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([])
    pos = {}
    for depth, nodes in levels.items():
        for i, node in enumerate(nodes):
            pos[node.candidate_id] = (deepest - depth, (len(nodes) - 1) / 2 - i)
    proposers = sorted({n.proposer for n in lin.nodes})
    palette = ["#1f5fa8", "#2a9d8f", "#d35400", "#8e44ad", "#16a085", "#c71585", "#7f8c8d", "#2c3e50"]
    color = {p: palette[i % len(palette)] for i, p in enumerate(proposers)}
    for node in lin.nodes:
        for parent in node.parents:
            if parent in pos:
                ax.annotate("", xy=pos[node.candidate_id], xytext=pos[parent],
                            arrowprops={"arrowstyle": "-|>", "color": "#555555", "linewidth": 1.0,
                                        "shrinkA": 11, "shrinkB": 11})
    for node in lin.nodes:
        x, y = pos[node.candidate_id]
        best = node.depth == 0
        ax.scatter([x], [y], s=420 if best else 260, color=color[node.proposer], edgecolors="black",
                   linewidths=1.6 if best else 0.6, zorder=3, marker="*" if best else "o")
        value = "—" if node.val_accuracy is None else f"{node.val_accuracy:.4f}"
        ax.annotate(f"{_plain(node.short_id)}\n{value}", (x, y), textcoords="offset points", xytext=(0, -24),
                    ha="center", va="top", fontsize=8)
    from matplotlib.lines import Line2D

    ax.legend([Line2D([], [], marker="o", linestyle="", color=color[p], markeredgecolor="black") for p in proposers],
              [_plain(p, 30) for p in proposers], fontsize=8, loc="upper left", title="proposer", title_fontsize=8)
    ax.set_xlim(-0.6, deepest + 0.6)
    half = max(len(v) for v in levels.values()) / 2
    ax.set_ylim(-half - 0.6, half + 0.3)
    png, w, h = _png(fig)
    alt = (f"Lineage of the best candidate {lin.best_id}: {len(lin.nodes) - 1} ancestor(s) over {deepest} generation(s), "
           "oldest on the left, arrows from parent to child: "
           + "; ".join(f"{n.short_id} {'—' if n.val_accuracy is None else f'{n.val_accuracy:.4f}'} ({n.proposer})"
                       for n in lin.nodes[:20]) + ".")
    caption = ("The best candidate (star, right) and its ancestors inside the run, oldest on the left; each node gives "
               "the candidate and its validation accuracy, coloured by proposer.")
    if lin.truncated:
        caption += f" {lin.truncated} more distant ancestors are not drawn."
    return Figure("lineage", "Lineage of the best", caption, alt, png, w, h)


def operators(data: ReportData) -> Figure | None:
    ops = data.operators
    if not ops:
        return None
    names = list(ops)
    fig, (left, right) = _new(10.0, 0.9 + 0.45 * len(names) + 1.4, panels=2)
    ys = list(range(len(names)))
    proposals = [int(ops[n].get("proposals") or 0) for n in names]
    rewards = [ops[n].get("mean_reward") for n in names]
    left.barh(ys, proposals, color=RUN_COLOR, alpha=0.8)
    left.set_yticks(ys, [_plain(n, 24) for n in names])
    left.invert_yaxis()
    left.set_xlabel("proposals")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    for y, value in zip(ys, proposals):
        left.annotate(f"{value}", (value, y), textcoords="offset points", xytext=(3, -3), fontsize=8)
    right.barh(ys, [r if isinstance(r, (int, float)) else 0 for r in rewards], color="#2a9d8f", alpha=0.8)
    right.set_yticks(ys, [""] * len(names))
    right.invert_yaxis()
    right.set_xlim(0, 1.4)
    right.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    right.set_xlabel("mean reward (share of earlier candidates beaten)")
    for y, r, n in zip(ys, rewards, names):
        best = ops[n].get("best")
        text = ("no outcome yet" if not isinstance(r, (int, float)) else f"{r:.2f}") + \
               (f", best {best:.4f}" if isinstance(best, (int, float)) else "")
        right.annotate(text, (r if isinstance(r, (int, float)) else 0, y), textcoords="offset points", xytext=(3, -3),
                       fontsize=8)
    png, w, h = _png(fig)
    alt = ("Per proposal operator of the portfolio: proposals (left) and mean reward (right): "
           + "; ".join(f"{n} {p} proposals, mean reward {'none' if not isinstance(r, (int, float)) else f'{r:.2f}'}"
                       for n, p, r in zip(names, proposals, rewards)) + ".")
    caption = ("How the portfolio's bandit spent the proposals, and what each operator's candidates earned (the share "
               "of earlier candidates they beat).")
    return Figure("operators", "Portfolio operators", caption, alt, png, w, h)


def surrogate_points(data: ReportData) -> list[tuple[str, float, float, float, float]]:
    """(short id, predicted, low, high, measured) of the candidates the surrogate picked with a
    prediction (after its first evaluations) and that were measured."""
    out = []
    for c in data.candidates:
        why = c.selection or {}
        low, high = (why.get("interval80") or [None, None])[:2]
        predicted = why.get("predicted_val_accuracy")
        if why.get("evaluations") and None not in (predicted, low, high, c.val_accuracy):
            out.append((c.short_id, float(predicted), float(low), float(high), float(c.val_accuracy)))
    return out


def surrogate(data: ReportData) -> Figure | None:
    points = surrogate_points(data)
    if len(points) < 2:
        return None
    fig, (ax,) = _new(6.4, 5.0)
    predicted = [p[1] for p in points]
    measured = [p[4] for p in points]
    inside = [p[2] <= p[4] <= p[3] for p in points]
    ax.errorbar(predicted, measured, xerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]], fmt="none",
                ecolor="#bbbbbb", elinewidth=1, zorder=1)
    ax.scatter(predicted, measured, c=["#2a9d8f" if i else "#e76f51" for i in inside], s=22, zorder=2)
    low, high = min(predicted + measured), max(predicted + measured)
    ax.plot([low, high], [low, high], color="#555555", linewidth=1, linestyle="--", zorder=0)
    ax.set_xlabel("predicted validation accuracy when picked (80% interval)")
    ax.set_ylabel("measured validation accuracy")
    share = sum(inside) / len(points)
    png, w, h = _png(fig)
    alt = (f"Predicted against measured validation accuracy for {len(points)} candidates the surrogate picked; "
           f"{share:.0%} of the measurements fell inside the 80% interval predicted when each was picked.")
    caption = (f"What the surrogate predicted for each candidate it picked, against what training measured (the "
               f"dashed line is a perfect prediction); {sum(inside)} of {len(points)} inside their 80% interval "
               "(green).")
    return Figure("surrogate", "Surrogate: predicted against measured", caption, alt, png, w, h)


def make_figures(data: ReportData) -> list[Figure]:
    """The figures the data supports, in report order (a figure with nothing to draw is left out)."""
    require_matplotlib()
    out = []
    for draw in (progress, pareto, curves, operators, surrogate, lineage):
        fig = draw(data)
        if fig is not None:
            out.append(fig)
    return out
