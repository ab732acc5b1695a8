"""A chat session about one run, as a langgraph graph with a checkpointer.

    listen --(the person's message)--> act --> listen ...

``listen`` waits in an ``interrupt`` for the next message; ``act`` answers it: a slash
command, or the model's reply (a structured turn: intent, reply, candidate id, direction)
with the numbers it is about cited from the history. Directions are stored in the history,
where every later prompt of the run (this session's proposals, a resumed loop's) shows them.
A proposal waits in the state for review (/approve, /edit JSON, /reject); an approved one is
recorded as a candidate of the run and trained or looked up as the run's pool does, its
events streamed to the terminal. The conversation lives in a SQLite checkpointer under
``$AGENT_HOME/chat``, one thread per run: leaving and coming back resumes it, pending
proposal included.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import BaseModel, Field, create_model

from agent.chat.facts import RunFacts
from agent.config import Settings
from agent.llm import LLMBackend, LLMError
from agent.prompting import Prompts
from agent.proposers import ProposalContext
from agent.proposers.llm import call_record
from agent.store import History
from agent.store.history import RunBusyError
from evaluator.errors import SpecError
from evaluator.pools.base import Job, PoolEvent
from agent.records import LLMOutcome
from evaluator.records import Candidate, Evaluation, Status

RECENT_MESSAGES = 6  # conversation shown to the model with each message
HELP = """Ask about the run in your own words ("which candidate is best?", "why did c0003 fail?"), give
directions ("keep it under 20k parameters", "never use pooling"), or ask for a proposal.
  /status            the run's progress          /best [K]        the top K candidates (default 5)
  /propose           a new proposal to review     /approve         evaluate the proposal under review
  /edit {JSON}       change the proposal's spec   /reject          drop the proposal under review
  /direct TEXT       store a direction            /directions      the run's directions
  /budget            budget and spend so far      /help            this text
  /quit              leave (the conversation is kept; `agent chat --run RUN` resumes it)"""


class ChatTurn(BaseModel):
    """The model's reading of one message, and its answer."""

    intent: Literal["best", "status", "candidate", "direction", "propose", "chat"]
    candidate_id: str | None = Field(default=None, max_length=48)
    direction: str | None = Field(default=None, max_length=240)
    reply: str = Field(min_length=1, max_length=240)


@functools.lru_cache(maxsize=None)
def turn_schema(intent: str | None) -> type[ChatTurn]:
    """The reply schema; with ``intent`` fixed, constrained decoding can only write that intent."""
    if intent is None:
        return ChatTurn
    return create_model(f"ChatTurn_{intent}", __base__=ChatTurn, intent=(Literal[intent], intent))  # type: ignore[valid-type]


# Unambiguous phrasings are read by rule, before the model: a small model mistakes directions
# for questions. The model still writes the reply; what it may say the intent is, is fixed.
_RULES = (
    ("direction", re.compile(r"^\W*(from now on\W+)?(never|always|avoid|don'?t|do not|keep|prefer|try|use only|only use|"
                             r"stick to|limit|stay|make sure|no more than|at most)\b|\b(from now on|never use|must not|"
                             r"should not|shouldn'?t|no more than|at most \d|under \d|below \d)", re.I)),
    ("propose", re.compile(r"\b(propose|suggest|new (candidate|design|architecture|cell|model|proposal)|another "
                           r"(candidate|design|one|proposal))\b", re.I)),
    ("candidate", re.compile(r"\bc\d{4}\b")),
    ("best", re.compile(r"\b(best|top|leading|winner|strongest|highest)\b", re.I)),
    ("status", re.compile(r"\b(status|progress|how far|how many|budget|remaining|left|done yet)\b", re.I)),
)


def intent_by_rule(text: str) -> str | None:
    return next((intent for intent, rule in _RULES if rule.search(text)), None)


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], operator.add]  # {"role": "user" | "assistant", "content"}
    pending: dict[str, Any] | None  # the proposal under review


@dataclass
class RunTools:
    """What evaluating and proposing for the run needs: its space, pool and LLM proposer
    (built once per session, from the run's own settings)."""

    settings: Settings
    history: History
    run_id: str
    setup: Any = None
    proposer: Any = None

    def __post_init__(self) -> None:
        from agent.engine.llm_wiring import llm_parts
        from agent.engine.setup import prepare
        from evaluator.objectives import Constraints, Objectives

        self.setup = prepare(self.settings, self.run_id)
        constraints = Constraints(max_latency_ms=self.settings.max_latency_ms, max_params=self.settings.max_params,
                                  max_flops=self.settings.max_flops)
        parts = llm_parts(self.settings, self.setup.space, self.setup.task, self.run_id, self.history,
                          Objectives.parse(self.settings.objectives), constraints, max_repairs=2)
        self.proposer = parts.proposer

    @property
    def space(self):
        return self.setup.space

    def close(self) -> None:
        self.setup.pool.close()


@dataclass
class ChatContext:
    history: History
    run_id: str
    llm: Callable[[], LLMBackend]  # loaded on first use: slash commands need no model
    tools: Callable[[], RunTools]  # built on first use (loads the data set, prepares the pool)
    prompts: Prompts = field(default_factory=Prompts)
    on_event: Callable[[PoolEvent], None] | None = None  # evaluations stream here
    on_note: Callable[[str], None] | None = None  # "thinking...", before a slow step


def listen(state: ChatState) -> dict:
    text = interrupt({"waiting_for": "message"})
    return {"messages": [{"role": "user", "content": str(text)}]}


def act(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    text = state["messages"][-1]["content"].strip()
    pending = state.get("pending")
    if text.startswith("/"):
        name, _, arg = text[1:].partition(" ")
        reply, pending = _slash(ctx, name.lower(), arg.strip(), pending)
    else:
        reply, pending = _converse(ctx, state, text, pending)
    return {"messages": [{"role": "assistant", "content": reply}], "pending": pending}


def build_chat_graph(checkpointer):
    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("listen", listen)
    graph.add_node("act", act)
    graph.add_edge(START, "listen")
    graph.add_edge("listen", "act")
    graph.add_edge("act", "listen")
    return graph.compile(checkpointer=checkpointer)


# -- answers ---------------------------------------------------------------------------


def _converse(ctx: ChatContext, state: ChatState, text: str, pending: dict | None) -> tuple[str, dict | None]:
    facts = RunFacts.read(ctx.history, ctx.run_id)
    recent = [m for m in state["messages"][:-1] if m["role"] in ("user", "assistant")][-RECENT_MESSAGES:]
    system = ctx.prompts.render("chat.j2", facts=facts.prompt_block(),
                                recent=[{"role": m["role"], "content": m["content"][:300]} for m in recent])
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    if ctx.on_note:
        ctx.on_note("thinking...")
    call_id = f"{ctx.run_id}-chat{uuid.uuid4().hex[:8]}"
    backend = ctx.llm()
    try:
        reply = backend.complete(messages, turn_schema(intent_by_rule(text)), max_tokens=160, temperature=0.3,
                                     seed=len(state["messages"]))
    except LLMError as exc:
        ctx.history.add_llm_calls([call_record(backend, ctx.run_id, call_id, "chat.j2", messages, None,
                                               LLMOutcome.FAILED, str(exc))])
        return f"The model could not be reached ({exc.message}). Slash commands still work: /help.", pending
    turn = reply.value
    ctx.history.add_llm_calls([call_record(backend, ctx.run_id, call_id, "chat.j2", messages, reply,
                                           LLMOutcome.VALID if turn else LLMOutcome.SCHEMA_INVALID, reply.error)])
    if turn is None:
        return "I could not read my own answer (" + (reply.error or "no reply") + ").\n" + facts.status_line(), pending
    cited = _cite(ctx, facts, turn, text)
    if turn.intent == "propose":
        answer, pending = _propose(ctx, facts, pending)
        return turn.reply + "\n" + answer, pending
    return turn.reply + ("\nFrom the history: " + cited if cited else ""), pending


def _cite(ctx: ChatContext, facts: RunFacts, turn: ChatTurn, text: str) -> str:
    """The numbers the answer is about, read from the history (never from the model)."""
    if turn.intent == "best":
        return facts.best_line()
    if turn.intent == "status":
        return facts.status_line()
    if turn.intent == "direction":
        direction = (text if intent_by_rule(text) == "direction" else turn.direction or text).strip()
        n = ctx.history.add_direction(ctx.run_id, direction)
        return f"stored as direction {n}: \"{direction}\"; every later proposal of this run sees it."
    if turn.intent == "candidate":
        refs = [turn.candidate_id] if turn.candidate_id else []
        refs += re.findall(r"\bc\d{4}\b", text)
        found = []
        for ref in refs:
            c = facts.find(ref)
            if c is not None and c["candidate_id"] not in {f["candidate_id"] for f in found}:
                found.append(c)
        lines = [facts.candidate_line(c) for c in found]
        if lines:
            return "; ".join(lines)
        return f"no candidate {refs[0]} in this run" if refs else "which candidate? Name its id (e.g. c0003)."
    return ""


# -- slash commands --------------------------------------------------------------------


def _slash(ctx: ChatContext, name: str, arg: str, pending: dict | None) -> tuple[str, dict | None]:
    facts = RunFacts.read(ctx.history, ctx.run_id)
    if name == "help":
        return HELP, pending
    if name == "status":
        return facts.status_line() + ("\nA proposal is waiting for review: /approve or /reject." if pending else ""), pending
    if name == "best":
        k = int(arg) if arg.isdigit() and int(arg) > 0 else 5
        return "\n".join(facts.top_lines(k)) or "No candidate has finished ok yet.", pending
    if name == "direct":
        if not arg:
            return "Give the direction after the command: /direct keep every candidate under 20k parameters", pending
        n = ctx.history.add_direction(ctx.run_id, arg)
        return f"Stored as direction {n}: \"{arg}\"; every later proposal of this run sees it.", pending
    if name == "directions":
        return "\n".join(f"{i}. {d}" for i, d in enumerate(facts.directions, 1)) or "No directions yet.", pending
    if name == "budget":
        totals = ctx.history.llm_totals(ctx.run_id)
        cost = f", ${totals['cost']:.4f}" if totals["cost"] is not None else ""
        return (f"{facts.run['evaluations']} of {facts.run['budget']} evaluations spent; LLM: {totals['calls']} calls, "
                f"{totals['tokens_in']} tokens in / {totals['tokens_out']} out, {totals['seconds']:.1f} s{cost}. "
                f"`agent loop --resume {ctx.run_id} --budget N` continues the run to N evaluations."), pending
    if name == "propose":
        return _propose(ctx, facts, pending)
    if name == "reject":
        if not pending:
            return "There is no proposal under review.", None
        return "Dropped the proposal.", None
    if name == "edit":
        return _edit(ctx, facts, arg, pending)
    if name == "approve":
        if not pending:
            return "There is no proposal under review: /propose asks for one.", None
        return _evaluate(ctx, facts, pending)
    return f"Unknown command /{name}.\n{HELP}", pending


def _propose(ctx: ChatContext, facts: RunFacts, pending: dict | None) -> tuple[str, dict | None]:
    if pending:
        return "A proposal is already under review:\n" + _show(ctx, pending) + _REVIEW, pending
    tools = ctx.tools()
    seen = frozenset(c["canonical_key"] for c in facts.candidates if c["canonical_key"])
    best = facts.ranked[0] if facts.ranked else None
    context = ProposalContext(seen=seen, evaluations=facts.run["evaluations"], budget=facts.run["budget"],
                              best=(best["candidate_id"], best["spec"], best["val_accuracy"]) if best else None,
                              pending=tuple((c["candidate_id"], c["spec"]) for c in facts.candidates
                                            if c["status"] in ("queued", "running")))
    if ctx.on_note:
        ctx.on_note("asking the model for a proposal...")
    try:
        proposal = tools.proposer.propose_one(context)
    except LLMError as exc:
        return f"The model could not be reached ({exc.message}).", None
    try:
        spec = tools.space.validate(proposal.spec)
    except SpecError as exc:
        return f"The model's proposal is not valid in this space: {proposal.error or exc}. /propose asks again.", None
    key = tools.space.canonical_key(spec)
    if key in seen:
        return "The model proposed a candidate the run already has. /propose asks again.", None
    pending = {"spec": spec, "canonical_key": key, "rationale": proposal.rationale, "parents": proposal.parents,
               "model": proposal.model, "prompt_ref": proposal.prompt_ref, "proposer": "chat:llm"}
    return "Proposal for review:\n" + _show(ctx, pending) + _REVIEW, pending


_REVIEW = "\n/approve evaluates it, /edit {JSON} changes its spec, /reject drops it."


def _show(ctx: ChatContext, pending: dict) -> str:
    space = ctx.tools().space
    return (f"  {space.summary(pending['spec'])}\n  rationale: {pending.get('rationale') or '-'}\n"
            f"  spec: {json.dumps(pending['spec'], sort_keys=True)[:1500]}")


def _edit(ctx: ChatContext, facts: RunFacts, arg: str, pending: dict | None) -> tuple[str, dict | None]:
    if not pending:
        return "There is no proposal under review to edit: /propose asks for one.", None
    try:
        change = json.loads(arg)
    except json.JSONDecodeError as exc:
        return f"/edit needs a JSON object (the spec or the fields to change): {exc}", pending
    if not isinstance(change, dict):
        return "/edit needs a JSON object, e.g. /edit {\"edge_1_0\": \"nor_conv_3x3\"}", pending
    space = ctx.tools().space
    try:
        spec = space.validate({**pending["spec"], **change})
    except SpecError as exc:
        return f"That edit is not valid: {exc}. The proposal is unchanged.", pending
    key = space.canonical_key(spec)
    if key in {c["canonical_key"] for c in facts.candidates}:
        return "After that edit it is a candidate the run already has. The proposal is unchanged.", pending
    pending = {**pending, "spec": spec, "canonical_key": key, "proposer": "chat:edited",
               "rationale": (pending.get("rationale") or "") + " (edited in chat)"}
    return "Edited proposal:\n" + _show(ctx, pending) + _REVIEW, pending


def _evaluate(ctx: ChatContext, facts: RunFacts, pending: dict) -> tuple[str, dict | None]:
    run = ctx.history.get_run(ctx.run_id)
    if run["status"] == "running":
        return (f"Run {ctx.run_id} is being searched by another process right now; it evaluates its own candidates. "
                "The proposal stays under review: /approve again once that process has stopped."), pending
    tools = ctx.tools()

    def build(seq: int) -> Candidate:  # the number comes from the history, in the transaction that adds it
        return Candidate(candidate_id=f"{ctx.run_id}-c{seq:04d}", run_id=ctx.run_id, seq=seq, space=tools.space.name,
                         spec=pending["spec"], canonical_key=pending["canonical_key"],
                         parents=pending.get("parents") or [], proposer=pending.get("proposer") or "chat",
                         model=pending.get("model"), rationale=pending.get("rationale"),
                         prompt_ref=pending.get("prompt_ref"), status=Status.RUNNING)

    try:
        candidate = ctx.history.append_candidate(ctx.run_id, build, lambda c: {
            "run_id": ctx.run_id, "kind": "chat_approved", "candidate_id": c.candidate_id,
            "payload": {"host": socket.gethostname(), "pid": os.getpid()}})
    except RunBusyError:
        return (f"Run {ctx.run_id} is being searched by another process right now; it evaluates its own candidates. "
                "The proposal stays under review: /approve again once that process has stopped."), pending
    if ctx.on_note:
        ctx.on_note(f"evaluating {candidate.candidate_id}...")
    pool = tools.setup.pool
    pool.submit(Job(candidate_id=candidate.candidate_id, spec=candidate.spec))
    evaluation: Evaluation | None = None
    try:
        while evaluation is None:
            for event in pool.events(timeout=None):
                if ctx.on_event is not None:
                    ctx.on_event(event)
                if event.kind == "finished" and event.candidate_id == candidate.candidate_id and event.evaluation:
                    evaluation = event.evaluation
    except BaseException:
        ctx.history.set_status([candidate.candidate_id], Status.QUEUED)  # `agent loop --resume` evaluates it
        raise
    ctx.history.add_evaluations(ctx.run_id, [evaluation])
    text = f"Evaluated {candidate.candidate_id}: {evaluation.status.value}"
    if evaluation.val_accuracy is not None:
        text += f", validation accuracy {evaluation.val_accuracy:.4f}"
    if evaluation.fidelity:
        text += f" ({evaluation.fidelity:g} {evaluation.fidelity_unit})"
    if evaluation.error:
        text += f"; {evaluation.error[:300]}"
    ranked = RunFacts.read(ctx.history, ctx.run_id).ranked
    if ranked and ranked[0]["candidate_id"] == candidate.candidate_id:
        text += ". It is the run's best now."
    return text, None


# -- the session -----------------------------------------------------------------------


class ChatSession:
    """One run's conversation: ``send`` a message, get the assistant's reply; the graph's
    checkpointer keeps every turn, so a new session on the same run continues it."""

    def __init__(self, home: Path, context: ChatContext) -> None:
        folder = Path(home) / "chat"
        folder.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(folder / "sessions.sqlite"), check_same_thread=False)
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.graph = build_chat_graph(SqliteSaver(self.connection))
        self.context = context
        self.config = {"configurable": {"thread_id": context.run_id}}
        state = self.graph.get_state(self.config)
        if not state.next:  # a new conversation: run to the first interrupt
            self.graph.invoke({"messages": [], "pending": None}, self.config, context=context)
        elif "act" in state.next:  # the last session stopped while answering: answer now
            self.graph.invoke(None, self.config, context=context)

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.graph.get_state(self.config).values.get("messages", []))

    @property
    def pending(self) -> dict | None:
        return self.graph.get_state(self.config).values.get("pending")

    def send(self, text: str) -> str:
        before = len(self.messages)
        self.graph.invoke(Command(resume=text), self.config, context=self.context)
        new = [m for m in self.messages[before:] if m["role"] == "assistant"]
        return "\n".join(m["content"] for m in new)

    def close(self) -> None:
        self.connection.close()
