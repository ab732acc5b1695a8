"""The LLM proposer: one proposal per call, grounded in the history, repaired when invalid.

For each proposal it renders the propose prompt from the run's history (``history()``: the
rows DuckDB picks and the newest insights) and the candidates being evaluated now
(``context.pending``, under their own heading: do not propose these again), asks the backend
for a ``{"rationale", "spec"}`` object, and checks the spec with the space. Given a ``parent``
it asks for an edit of that candidate instead (the portfolio's LLM-mutation operator). A reply
that does not parse, a spec the space rejects, or a spec already in the run goes back to the
model with the exact problem (the repair prompt), up to ``max_repairs`` times. Every call is
handed to ``record`` (the history's ``llm_calls``) with its outcome. When the repairs run out, a
spec that parsed but repeats an evaluated candidate is replaced by a mutation of it that is not
in the run (so no evaluation is spent on a duplicate). In spaces whose proposals edit a file
shown in the prompt (code: the parent, else the run's best, else the seed; with a format example
of one edit), an edit that stayed invalid is replaced by a mutation of that file, its rationale
saying so (the calls keep their invalid outcomes). A spec that stayed invalid in a space that
knows what is near it (``SearchSpace.nearest_valid``: a declared space whose rules or table the
model kept breaking) becomes the nearest valid candidate not in the run, its rationale saying so.
Any other failure is returned as it is, and the search records it as ``invalid`` with its error.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model

from agent.llm.base import LLMBackend, LLMError, LLMReply
from agent.prompting import HistoryView, Prompts, Row
from agent.proposers.base import Proposal, ProposalContext, Proposer
from evaluator.errors import SpecError
from agent.records import LLMCall, LLMOutcome
from evaluator.spaces import SearchSpace

RATIONALE_CHARS = 160  # short, so generation stays fast
UNSEEN_TRIES = 50  # mutations tried when moving a repeated proposal to a new candidate


def proposal_schema(space: SearchSpace) -> type[BaseModel]:
    """What the model must emit: a short rationale and the space's proposal (``llm_schema``: the
    spec itself, or for code an edit of the file shown)."""
    return create_model(f"{space.name.capitalize()}Proposal",
                        rationale=(str, Field(max_length=RATIONALE_CHARS, description="why this candidate, briefly")),
                        spec=(space.llm_schema, ...))


def unseen_mutation(space: SearchSpace, spec: dict[str, Any], seen: set[str] | frozenset[str],
                    rng: random.Random, tries: int = UNSEEN_TRIES) -> dict[str, Any]:
    """A mutation of ``spec`` whose key is not in ``seen``: one edit first, then walks of more
    edits; the last try when every one is taken (the search then skips it as a duplicate)."""
    current = child = spec
    for attempt in range(tries):
        child = space.mutate(current if attempt % 5 else spec, rng)
        if space.canonical_key(child) not in seen:
            return child
        current = child
    return child


class LLMProposer(Proposer):
    name: ClassVar[str] = "llm"

    def __init__(self, space: SearchSpace, seed: int = 0, *, backend: LLMBackend, run_id: str,
                 history: Callable[[ProposalContext], HistoryView], record: Callable[[list[LLMCall]], None],
                 task: dict[str, Any], prompts: Prompts | None = None, max_repairs: int = 2,
                 max_tokens: int = 768, token_budget: int = 3000, temperature: float = 0.7) -> None:
        super().__init__(space, seed)
        self.backend, self.run_id, self.history, self.record = backend, run_id, history, record
        self.task, self.prompts = task, prompts or Prompts()
        self.max_repairs, self.max_tokens, self.token_budget, self.temperature = max_repairs, max_tokens, token_budget, temperature
        self.schema = proposal_schema(space)

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        return [self.propose_one(context) for _ in range(n)]

    def propose_one(self, context: ProposalContext, parent: tuple[str, dict[str, Any], float] | None = None) -> Proposal:
        """One proposal; with ``parent`` (candidate id, spec, validation accuracy) an edit of it."""
        proposal_id = f"{self.run_id}-p{uuid.uuid4().hex[:8]}"
        parent_row = None
        if parent is not None:
            parent_row = Row(candidate_id=parent[0], description=self.space.summary(parent[1]), val_accuracy=parent[2])
        # Spaces whose proposals edit a candidate (code) show the one to edit in full: the parent,
        # else the run's best, else the space's seed.
        base = parent or context.best
        shown = self.space.show(base[1] if base else None)
        base_label = example = None
        if shown is not None:
            base_label = f"{base[0]} (validation accuracy {base[2]:.4f})" if base else "the seed model file"
            edit = self.space.edit_example(base[1] if base else None, self.rng)
            if edit is not None:
                example = json.dumps({"rationale": "...", "spec": {"edits": [edit]}})
        messages = self.prompts.propose_messages(history=self._view(context), token_budget=self.token_budget,
                                                 space=self.space.label, space_description=self.space.describe(),
                                                 parent=parent_row, base_source=shown, base_label=base_label,
                                                 edit_example=example, **self.task)
        template, last_spec, last_error, duplicate, seconds, costs = "propose.j2", None, None, None, 0.0, []
        common = dict(model=self.backend.model, prompt_ref=proposal_id, parents=[parent[0]] if parent else [])
        for attempt in range(self.max_repairs + 1):
            try:
                reply = self.backend.complete(messages, self.schema, max_tokens=self.max_tokens,
                                              temperature=self.temperature, seed=self.rng.randrange(2**31))
            except LLMError as exc:
                self._record(proposal_id, attempt, template, messages, None, LLMOutcome.FAILED, str(exc))
                raise
            seconds += reply.usage.seconds
            if reply.usage.cost is not None:
                costs.append(reply.usage.cost)
            outcome, error, spec = self._judge(reply, context, base[1] if base else None)
            self._record(proposal_id, attempt, template, messages, reply, outcome, error)
            usage = dict(llm_seconds=seconds, llm_cost=sum(costs) if costs else None)
            if outcome is LLMOutcome.VALID:
                return Proposal(spec=spec, rationale=reply.value.rationale, **common, **usage)
            last_error = error
            if reply.value is not None:
                last_spec = reply.value.spec.model_dump()
                duplicate = spec if error and error.startswith("duplicate") else None
            quoted = _quoted(reply.text)
            messages = messages + [{"role": "assistant", "content": quoted},
                                   {"role": "user", "content": self.prompts.render("repair.j2", error=error, reply=quoted)}]
            template = "repair.j2"
        if duplicate is not None:  # the model keeps repeating: move away from what it repeats
            return Proposal(spec=unseen_mutation(self.space, duplicate, context.seen, self.rng), **common, **usage,
                            rationale=f"mutation of a repeated proposal (the model proposed evaluated candidates "
                                      f"{self.max_repairs + 1} times)")
        near = self.space.nearest_valid(last_spec, context.seen, self.rng) if last_spec is not None else None
        if near is not None:  # e.g. a declared space's rule broken: the nearest candidate that keeps them
            return Proposal(spec=near, **common, **usage,
                            rationale=f"nearest valid candidate to the model's last proposal, which stayed invalid "
                                      f"after {self.max_repairs} repairs ({(last_error or '')[:120]})")
        if shown is not None:  # an edit of a shown file that stayed invalid: a valid edit of that file instead
            spec = unseen_mutation(self.space, base[1], context.seen, self.rng) if base else self.space.sample(self.rng)
            return Proposal(spec=spec, **common, **usage,
                            rationale=f"mutation of {base[0] if base else 'the seed'}: the model's edits stayed "
                                      f"invalid after {self.max_repairs} repairs ({(last_error or '')[:120]})")
        return Proposal(spec=last_spec if last_spec is not None else {"raw": reply.text[:2000]}, **common, **usage,
                        rationale="the model's last invalid reply", error=last_error)

    def _view(self, context: ProposalContext) -> HistoryView:
        """The history the prompt shows, with the candidates being evaluated now (no outcome yet)."""
        view = self.history(context)
        if not context.pending:
            return view
        return replace(view, pending=[Row(candidate_id=cid, description=self.space.summary(spec), status="pending")
                                      for cid, spec in context.pending])

    def _judge(self, reply: LLMReply, context: ProposalContext, base: dict[str, Any] | None
               ) -> tuple[LLMOutcome, str | None, dict | None]:
        if reply.value is None:
            return LLMOutcome.SCHEMA_INVALID, reply.error, None
        try:
            spec = self.space.validate(self.space.apply_proposal(reply.value.spec.model_dump(), base))
        except SpecError as exc:
            return LLMOutcome.SPEC_INVALID, str(exc), None
        key = self.space.canonical_key(spec)
        if key in context.seen:
            now = any(self.space.canonical_key(s) == key for _, s in context.pending)
            return LLMOutcome.SPEC_INVALID, (f"duplicate: this candidate {'is being' if now else 'was already'} "
                                             "evaluated in this run; propose a different one"), spec
        return LLMOutcome.VALID, None, spec

    def _record(self, proposal_id: str, attempt: int, template: str, messages: list[dict[str, str]],
                reply: LLMReply | None, outcome: LLMOutcome, error: str | None) -> None:
        self.record([call_record(self.backend, self.run_id, f"{proposal_id}-a{attempt}", template, messages, reply,
                                 outcome, error, proposal=proposal_id, attempt=attempt)])


REPAIR_QUOTE_CHARS = 6000  # of a reply sent back in a repair (twice: as the model's turn and quoted)


def _quoted(text: str) -> str:
    """A reply as a repair sends it back: a runaway or hostile reply (hundreds of KB) would
    otherwise grow every later prompt of the proposal and every record of its calls."""
    if len(text) <= REPAIR_QUOTE_CHARS:
        return text
    return text[:REPAIR_QUOTE_CHARS] + f"\n[... {len(text) - REPAIR_QUOTE_CHARS} more characters cut]"


def call_record(backend: LLMBackend, run_id: str, call_id: str, template: str, messages: list[dict[str, str]],
                reply: LLMReply | None, outcome: LLMOutcome, error: str | None, *, proposal: str | None = None,
                attempt: int = 0) -> LLMCall:
    """The history's record of one call: the messages as sent and the reply as received."""
    usage = reply.usage if reply is not None else None
    return LLMCall(
        call_id=call_id, run_id=run_id, proposal=proposal, attempt=attempt, backend=backend.name, model=backend.model,
        template=template, messages=reply.sent if reply is not None and reply.sent is not None else messages,
        response=reply.text if reply is not None else "", mode=reply.mode if reply is not None else None,
        tokens_in=usage.tokens_in if usage else 0, tokens_out=usage.tokens_out if usage else 0,
        seconds=usage.seconds if usage else 0.0, cost=usage.cost if usage else None,
        retries=usage.retries if usage else 0, outcome=outcome, error=error)
