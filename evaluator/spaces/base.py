"""The search-space plug-in interface.

A space owns everything that is specific to one kind of architecture description:

- ``proposal_schema``: the pydantic model an LLM must emit (bounded, so constrained
  decoding terminates) and that every spec is validated against;
- ``describe()``: a text description for prompts;
- ``sample`` / ``mutate``: what the random and evolution baselines need;
- ``canonical_key``: two specs with the same key are the same candidate (de-duplication);
- ``validate``: static checks that turn untrusted input into a normalised spec, or raise
  :class:`~evaluator.errors.SpecError` naming the offending field and why.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from evaluator.errors import SpecError, did_you_mean


class SearchSpace(ABC):
    name: ClassVar[str]
    proposal_schema: ClassVar[type[BaseModel]]

    @abstractmethod
    def describe(self) -> str:
        """A description of the space for people and prompts."""

    @abstractmethod
    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random valid spec."""

    @abstractmethod
    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """A valid spec one small edit away from ``spec`` and different from it."""

    @abstractmethod
    def canonical_key(self, spec: dict[str, Any]) -> str:
        """A string equal for exactly the specs that describe the same candidate."""

    def validate(self, spec: Any) -> dict[str, Any]:
        """Parse untrusted input into a normalised spec; raise SpecError naming the field."""
        if not isinstance(spec, dict):
            raise SpecError(
                f"a {self.name} spec must be a JSON object, got {type(spec).__name__}",
                hint=f"emit an object with the fields of the {self.name} proposal schema",
            )
        try:
            parsed = self.proposal_schema.model_validate(spec)
        except ValidationError as exc:
            raise spec_error_from_validation(exc, self.name) from None
        return parsed.model_dump(mode="json")

    def summary(self, spec: dict[str, Any]) -> str:
        """A one-line human description of a spec (tables, logs)."""
        return self.canonical_key(spec)

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Space-specific fields shown beside a spec in summaries (``arch`` for nb201)."""
        return {}


def spec_error_from_validation(exc: ValidationError, space: str) -> SpecError:
    """Turn pydantic's errors into one SpecError whose message names every bad field."""
    problems = []
    first_field = None
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<spec>"
        first_field = first_field or field
        value = err.get("input")
        shown = f" (got {value!r})" if err["type"] != "missing" else ""
        if err["type"] == "literal_error" and isinstance(value, str):
            choices = [c.strip().strip("'") for c in str(err.get("ctx", {}).get("expected", "")).replace(" or ", ", ").split(",")]
            shown += did_you_mean(value, [c for c in choices if c])
        problems.append(f"{field}: {err['msg']}{shown}")
    return SpecError(
        f"invalid {space} spec: " + "; ".join(problems),
        hint=f"fix the named field(s); `agent spaces {space}` describes the schema",
        field=first_field,
    )
