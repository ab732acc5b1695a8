"""The LLM interface: one structured call -> a validated pydantic object, plus its usage.

Every backend (an OpenAI-compatible endpoint, a local open model) implements
:meth:`LLMBackend.complete`. A reply whose text does not parse into the schema is not an
exception: it comes back with ``value=None`` and the parse error, so the caller can send the
error back for repair and record the attempt. Exceptions are for what no retry of the same
call can fix (a bad key, an unknown model, an endpoint that stays down): :class:`LLMError`,
with a hint that says what to change.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from evaluator.errors import ArchAgentError

T = TypeVar("T", bound=BaseModel)


class LLMError(ArchAgentError):
    """The LLM cannot be used as configured (key, model, endpoint, timeout)."""



@dataclass
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0  # wall time of the call, retries and back-off included
    cost: float | None = None  # dollars, when prices are configured
    retries: int = 0  # attempts repeated after a rate limit, a server error or a timeout


@dataclass
class LLMReply(Generic[T]):
    value: T | None  # the parsed object; None when the text did not parse into the schema
    text: str  # the model's reply, exactly as received
    usage: Usage
    mode: str  # how the schema was enforced: json_schema, json_object, text, grammar
    error: str | None = None  # why the text did not parse, in words a model can act on
    notes: list[str] = field(default_factory=list)  # e.g. a structured-output mode the endpoint refused
    sent: list[dict[str, str]] | None = None  # the messages exactly as sent, when the backend added to them

    @property
    def schema_valid(self) -> bool:
        return self.value is not None


class LLMBackend(ABC):
    """One structured call at a time; implementations are cheap to keep and reuse."""

    name: str = "llm"
    model: str = ""

    @abstractmethod
    def complete(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int = 1024,
                 temperature: float = 0.7, seed: int | None = None) -> LLMReply[T]:
        """Ask for one object of ``schema`` given chat ``messages`` (role, content). ``seed``
        makes sampling repeatable where the backend can (always locally; endpoints that honour it)."""


def parse_reply(text: str, schema: type[T]) -> tuple[T | None, str | None]:
    """Validate ``text`` (a JSON object, possibly wrapped in prose or a code fence) against
    ``schema``; return the object, or None and the errors in words."""
    candidate = extract_json_object(text)
    if candidate is None:
        return None, "the reply holds no JSON object; answer with one JSON object that follows the schema"
    try:
        return schema.model_validate_json(candidate), None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                             for e in exc.errors()[:8])
        return None, f"the JSON does not follow the schema: {problems}"


MAX_OBJECT_STARTS = 1000  # "{" positions tried in a reply: a hostile one of a million "{" stays cheap


def extract_json_object(text: str) -> str | None:
    """The first complete JSON object in ``text``: the whole text when it is one, else the
    first ``{...}`` that parses (a fenced ```json block or an object inside prose)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            json.loads(stripped)
            return stripped
        except (ValueError, RecursionError):  # not JSON; an integer of more than 4,300 digits; nesting too deep
            pass
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start >= 0 and tries < MAX_OBJECT_STARTS:
        tries += 1
        try:
            obj, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return text[start:end]
        start = text.find("{", end)
    return None


def schema_instructions(schema: type[BaseModel]) -> str:
    """The schema in words for a model that gets no structured-output help from its endpoint."""
    return ("Answer with one JSON object and nothing else. It must follow this JSON schema:\n"
            + json.dumps(schema.model_json_schema(), separators=(",", ":")))
