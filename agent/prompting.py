"""Build the LLM's messages from jinja2 templates and the history, inside a token budget.

``HistoryView`` is what a prompt shows of a run: the best candidates, the most recent, a
seeded sample of the others and the failures with their errors, each chosen by a DuckDB query
(``History.prompt_history``), and the candidates being evaluated now (``pending``: the proposer
adds them from its ``ProposalContext``; their results are not known yet, and a proposal that
repeats one is a duplicate). ``Prompts.propose_messages`` renders the system and propose
templates and, while the result is over the token budget, drops history rows (the sample
first, then the recent, the pending, the failures, and the best last, keeping at least one)
and says how many it left out. Tokens are counted by the backend's tokenizer when given, else
estimated as ceil(characters / 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from prompts import TEMPLATE_DIR

ERROR_CHARS = 300  # an error text in a prompt is cut to this many characters


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Row:
    candidate_id: str
    description: str  # the spec as the space summarises it (an arch string, a layers summary)
    status: str = "ok"
    val_accuracy: float | None = None
    error: str | None = None
    measured: str | None = None  # the other objectives' values, e.g. "latency 0.41 ms, 12,300 params"

    @property
    def outcome(self) -> str:
        text = f"{self.val_accuracy:.4f}" if self.val_accuracy is not None else self.status
        return f"{text} ({self.measured})" if self.measured else text


@dataclass(frozen=True)
class HistoryView:
    evaluations: int = 0
    budget: int = 0
    best: list[Row] = field(default_factory=list)
    recent: list[Row] = field(default_factory=list)
    diverse: list[Row] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)  # the newest reflection's, never dropped for tokens
    omitted: int = 0  # rows the token budget left out
    pending: list[Row] = field(default_factory=list)  # candidates queued or being evaluated (no outcome yet)
    pending_omitted: int = 0  # pending rows the token budget left out

    @classmethod
    def from_rows(cls, rows: dict[str, list[dict[str, Any]]], describe: Callable[[dict], str], *,
                  evaluations: int, budget: int, insights: list[str] | None = None,
                  show: tuple[str, ...] = ()) -> "HistoryView":
        """From ``History.prompt_history`` rows; ``describe(spec)`` gives each row's description;
        ``show`` names the measurements (``latency_ms``, ``params``, ``flops``) each row states."""
        def make(r: dict[str, Any]) -> Row:
            error = r.get("error")
            if error and len(error) > ERROR_CHARS:
                error = error[:ERROR_CHARS] + " ..."
            return Row(candidate_id=r["candidate_id"], description=describe(r["spec"]), status=r["status"],
                       val_accuracy=r.get("val_accuracy"), error=error.replace("\n", " ") if error else None,
                       measured=measured_text(r.get("measurements") or {}, show))

        return cls(evaluations=evaluations, budget=budget, insights=list(insights or []),
                   **{k: [make(r) for r in rows.get(k, [])]
                                                              for k in ("best", "recent", "diverse", "failures")})


def measured_text(measurements: dict[str, Any], show: tuple[str, ...]) -> str | None:
    """``latency 0.41 ms, 12,300 params, 1.2M FLOPs`` for the measurements named in ``show``."""
    parts = []
    for key in show:
        value = measurements.get(key)
        if value is None:
            continue
        if key == "latency_ms":
            parts.append(f"latency {value:.3g} ms")
        elif key == "params":
            parts.append(f"{value:,} params")
        elif key == "flops":
            parts.append(f"{value / 1e6:.3g}M FLOPs")
    return ", ".join(parts) or None


class Prompts:
    """The templates, with a folder of the user's own taking precedence."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [jinja2.FileSystemLoader(str(override_dir))] if override_dir is not None else []
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader([*loaders, jinja2.FileSystemLoader(str(TEMPLATE_DIR))]),
                                      undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True,
                                      lstrip_blocks=True, keep_trailing_newline=True)

    def render(self, name: str, **context: Any) -> str:
        try:
            return self.env.get_template(name).render(**context).strip() + "\n"
        except jinja2.TemplateError as exc:
            where = getattr(exc, "filename", None) or name
            line = getattr(exc, "lineno", None)
            from evaluator.errors import UserInputError

            raise UserInputError(f"prompt template {where}{f' line {line}' if line else ''}: {exc}",
                                 hint="fix the template, or remove your copy to use the built-in one") from None

    def propose_messages(self, *, history: HistoryView, token_budget: int,
                         count_tokens: Callable[[str], int] = estimate_tokens, **context: Any) -> list[dict[str, str]]:
        """System and user messages for one proposal, within ``token_budget`` tokens. With
        ``parent`` (a Row) the model is asked for an edit of that candidate."""
        context = {"directions": [], "constraints": [], "parent": None, "base_source": None, "base_label": None,
                   "edit_example": None, **context}
        return self._fit(self.render("system.j2", **context), "propose.j2", history, token_budget, count_tokens, context)

    def reflect_messages(self, *, history: HistoryView, token_budget: int, max_insights: int,
                         count_tokens: Callable[[str], int] = estimate_tokens, **context: Any) -> list[dict[str, str]]:
        """The one user message that asks for insights, within ``token_budget`` tokens."""
        return self._fit(None, "reflect.j2", history, token_budget, count_tokens,
                         {"directions": [], "constraints": [], **context, "max_insights": max_insights})

    def _fit(self, system: str | None, template: str, history: HistoryView, token_budget: int,
             count_tokens: Callable[[str], int], context: dict[str, Any]) -> list[dict[str, str]]:
        context = {"insights": history.insights, **context}
        head = [{"role": "system", "content": system}] if system is not None else []
        fixed = count_tokens(system) if system is not None else 0
        view = history
        while True:
            user = self.render(template, history=view, **context)
            if fixed + count_tokens(user) <= token_budget:
                return head + [{"role": "user", "content": user}]
            smaller = _drop_one(view)
            if smaller is None:
                raise ValueError(f"token_budget={token_budget} is too small for the prompt without history "
                                 f"({fixed + count_tokens(user)} tokens)")
            view = smaller


def _drop_one(view: HistoryView) -> HistoryView | None:
    """The view with one row fewer: the sample first, then recent, pending, failures, and best (one stays)."""
    for name, keep in (("diverse", 0), ("recent", 0), ("pending", 0), ("failures", 0), ("best", 1)):
        rows = getattr(view, name)
        if len(rows) > keep:
            counter = "pending_omitted" if name == "pending" else "omitted"
            return replace(view, **{name: rows[:-1], counter: getattr(view, counter) + 1})
    return None
