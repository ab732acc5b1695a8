"""A search space declared in a file: named slots, each with its choices (``--space-file FILE``).

The file (evaluator.spaces.declared.file, docs/spaces.md) gives the slots, what the choices mean,
the rules between slots, and how candidates are evaluated. A spec is one choice per slot:
``{"op_1": "conv3", "width": 32}``. The LLM's schema is made from the slots (each an enumeration
of its choices, so constrained decoding keeps every reply valid), and its prompt describes the
slots, the choices and the rules from the file.

Sampling and mutation are uniform and, without rules or a table restriction, draw exactly as the
built-in spaces do (one ``rng.choice`` per slot in file order; a mutation picks a slot, then
another of its choices): a file that declares the NAS-Bench-201 cell searches exactly as the
built-in ``nb201`` space with the same seed. ``restrict`` (the combinations a lookup table holds,
when it holds fewer than the space) keeps every sample and mutation inside that set.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from evaluator.errors import SpecError, UserInputError, did_you_mean
from evaluator.spaces.base import SearchSpace
from evaluator.spaces.encoding import flatten
from evaluator.spaces.declared.file import ENUMERATE_LIMIT, Slot, SpaceFile, Value

SAMPLE_TRIES = 10_000  # rejection sampling under rules before falling back to the enumerated set
JUMP = 0.2  # inside a restricted set, the share of mutations that go to any other combination
LIST_ALLOWED = 40  # a restriction to this many combinations or fewer lists them in the prompt
ENUM_SCHEMA_LIMIT = 5000  # valid combinations up to this many: the LLM's schema enumerates them whole


def describe_value(value: Value) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


class DeclaredSpace(SearchSpace):
    """The space a file declares. ``restrict`` (value tuples in slot order) limits it to those
    combinations, for example the rows a lookup table holds; ``restrict_source`` says whose."""

    name: ClassVar[str] = "declared"
    # Trained through the space file's builder (given to the pool, written beside every job), which
    # runs only in the sandboxed worker; a spec's keys are the file's own slots (one may be "training").
    network_file: ClassVar[str | None] = "builder.py"
    builds_in_trusted_process: ClassVar[bool] = False
    recipe_in_spec: ClassVar[bool] = False
    proposal_schema: ClassVar[type[BaseModel]] = BaseModel  # per instance: see llm_schema

    def __init__(self, file: SpaceFile, *args: Any, restrict: Iterable[tuple[Value, ...]] | None = None,
                 restrict_source: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.file = file
        self.slots = file.slots
        self.names = tuple(s.name for s in file.slots)
        self.rules = file.rules
        self._mutable = [s.name for s in self.slots if len(s.choices) > 1]
        self._by_text = {s.name: {str(v): v for v in s.values} for s in self.slots}
        self._allowed: list[tuple[Value, ...]] | None = None
        if restrict is not None:
            allowed = sorted({tuple(r) for r in restrict if self._passes(dict(zip(self.names, r)))},
                             key=lambda t: tuple(str(v) for v in t))
            if not allowed:
                raise UserInputError(f"no combination of {file.path.name} is both in {restrict_source or 'the table'} "
                                     "and allowed by its constraints", hint="check the table's keys and the constraints")
            self._allowed = allowed
        self._allowed_set = frozenset(self._allowed) if self._allowed is not None else None
        self.restrict_source = restrict_source
        self._enumerated: list[tuple[Value, ...]] | None = None

    # -- what it is -------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.file.name

    @property
    def size(self) -> int:
        """Combinations a search may propose (after the restriction, before the rules when unrestricted)."""
        return len(self._allowed) if self._allowed is not None else self.file.size

    def describe(self) -> str:
        f = self.file
        parts = [f"{f.name}: " + (f.description or f"a space of {len(self.slots)} slots declared in {f.path.name}")]
        parts.append(f"A candidate picks one choice for each of the {len(self.slots)} slots "
                     f"({f.size:,} combinations in all):")
        # A choice described alike wherever it appears is explained once, below the slots.
        meanings: dict[str, set[tuple[str | None, str | None]]] = {}
        for s in self.slots:
            for c in s.choices:
                meanings.setdefault(describe_value(c.value), set()).add((c.description, c.code))
        shared = {v: next(iter(m)) for v, m in meanings.items() if len(m) == 1 and any(next(iter(m)))}

        def explain(value: str, description: str | None, code: str | None) -> str:
            return f"{value}" + (f": {description}" if description else "") + (f" (code: {code})" if code else "")

        for s in self.slots:
            head = f"- {s.name}" + (f": {s.description}" if s.description else "")
            own = [c for c in s.choices if describe_value(c.value) not in shared and (c.description or c.code)]
            parts.append(head + ". Choices: " + ", ".join(describe_value(v) for v in s.values))
            parts += [f"  - {explain(describe_value(c.value), c.description, c.code)}" for c in own]
        if shared:
            parts.append("What the choices mean:")
            parts += [f"- {explain(v, *m)}" for v, m in shared.items()]
        if self.rules:
            parts.append("Every candidate must satisfy: " + "; ".join(r.explain() for r in self.rules) + ".")
        if self._allowed is not None:
            parts.append(f"This search is restricted to the {len(self._allowed):,} combinations that "
                         f"{self.restrict_source or 'the table'} holds; any other is rejected.")
            if len(self._allowed) <= LIST_ALLOWED:
                parts.append("They are:")
                parts += [f"- {self.summary(dict(zip(self.names, c)))}" for c in self._allowed]
        if self._by_combination:
            parts.append(f"A proposal names one of the {len(self._by_combination):,} allowed combinations as its "
                         "text, slot=choice for every slot in this order, e.g. "
                         + next(iter(self._by_combination)) + ".")
        return "\n".join(parts)

    def _schema_combinations(self) -> list[tuple[Value, ...]] | None:
        """The combinations the LLM's schema enumerates, when a restriction or the rules leave few
        enough: then decoding can only emit a valid candidate. None: one enumeration per slot."""
        if self._allowed is not None:
            return self._allowed if len(self._allowed) <= ENUM_SCHEMA_LIMIT else None
        if self.rules and self.file.size <= ENUMERATE_LIMIT:
            valid = self.valid_combinations()
            return valid if len(valid) <= ENUM_SCHEMA_LIMIT else None
        return None

    @functools.cached_property
    def _by_combination(self) -> dict[str, tuple[Value, ...]]:
        """The combinations the LLM's schema names, by their text; empty where it enumerates each
        slot instead. Made on first use: only LLM proposers need it."""
        combos = self._schema_combinations()
        return {self.summary(dict(zip(self.names, c))): c for c in combos} if combos is not None else {}

    def _make_schema(self) -> type[BaseModel]:
        if self._by_combination:
            return create_model("DeclaredCombination", __config__=ConfigDict(extra="forbid"), combination=(
                Literal[tuple(self._by_combination)],  # type: ignore[valid-type]
                Field(description="one allowed combination, written slot=choice for every slot")))
        fields: dict[str, Any] = {}
        for s in self.slots:
            values = s.values
            text = s.description or f"one of {len(values)} choices"
            fields[s.name] = (Literal[values], Field(description=text[:300]))  # type: ignore[valid-type]
        return create_model("DeclaredSpec", __config__=ConfigDict(extra="forbid"), **fields)

    @functools.cached_property
    def llm_schema(self) -> type[BaseModel]:  # type: ignore[override]
        return self._make_schema()

    def apply_proposal(self, value: Any, base: dict[str, Any] | None) -> Any:
        """The LLM's reply as a spec: its slots, or the combination it named (see ``_make_schema``)."""
        if self._by_combination and isinstance(value, dict) and set(value) == {"combination"}:
            combo = self._by_combination.get(str(value["combination"]))
            return dict(zip(self.names, combo)) if combo is not None else value
        return value

    def nearest_valid(self, spec: Any, seen: frozenset[str] | set[str], rng: random.Random) -> dict[str, Any] | None:
        """The valid candidate not in ``seen`` nearest to ``spec`` (a proposal with a choice for every
        slot that breaks a rule or the restriction), fewest slots changed, ties at random; None
        when ``spec`` does not name a choice for every slot or nothing fits."""
        spec = self.apply_proposal(spec, None)
        if not isinstance(spec, dict):
            return None
        values = [self._choice_of(s, spec.get(s.name)) for s in self.slots]
        if any(v is None for v in values):
            return None
        if self._allowed is not None:
            pool = self._allowed
        elif self.file.size <= ENUMERATE_LIMIT:
            pool = self.valid_combinations() if self.rules else None
        else:
            pool = None
        if pool is None:  # a large space: walk single-slot changes outward
            here = dict(zip(self.names, values))
            for _ in range(SAMPLE_TRIES // 10):
                child = self.mutate(here, rng)
                if self.allows(child) and self.canonical_key(child) not in seen:
                    return child
            return None
        here_t = tuple(values)
        fresh = [c for c in pool if self.canonical_key(dict(zip(self.names, c))) not in seen]
        if not fresh:
            return None
        distance = [sum(a != b for a, b in zip(c, here_t)) for c in fresh]
        nearest = min(distance)
        return dict(zip(self.names, rng.choice([c for c, d in zip(fresh, distance) if d == nearest])))

    # -- specs ------------------------------------------------------------------------------

    def validate(self, spec: Any) -> dict[str, Any]:
        if isinstance(spec, BaseModel):
            spec = spec.model_dump()
        if not isinstance(spec, dict):
            raise SpecError(f"a {self.label} spec must be a JSON object with one choice per slot, got "
                            f"{type(spec).__name__}", hint="emit an object with the slots: " + ", ".join(self.names))
        problems, first = [], None
        out: dict[str, Any] = {}
        for key in spec:
            if key not in self.names:
                problems.append(f"{key}: not a slot{did_you_mean(str(key), self.names)}")
                first = first or str(key)
        for s in self.slots:
            if s.name not in spec:
                problems.append(f"{s.name}: missing (choices: {', '.join(describe_value(v) for v in s.values)})")
                first = first or s.name
                continue
            value = self._choice_of(s, spec[s.name])
            if value is None:
                got = spec[s.name]
                problems.append(f"{s.name}: {got!r} is not one of its choices "
                                f"({', '.join(describe_value(v) for v in s.values)}){did_you_mean(str(got), map(str, s.values))}")
                first = first or s.name
                continue
            out[s.name] = value
        if problems:
            raise SpecError(f"invalid {self.label} spec: " + "; ".join(problems),
                            hint="give every slot one of its choices, and nothing else", field=first)
        broken = [r for r in self.rules if not r.holds(out)]
        if broken:
            raise SpecError(f"{self.summary(out)} breaks the constraint(s): " + "; ".join(r.explain() for r in broken),
                            hint="change the choices so that every constraint holds")
        if self._allowed_set is not None and self._values(out) not in self._allowed_set:
            here = self._values(out)
            near = sorted(self._allowed, key=lambda c: sum(a != b for a, b in zip(c, here)))[:3]
            raise SpecError(f"{self.summary(out)} is not among the {len(self._allowed_set):,} combinations that "
                            f"{self.restrict_source or 'the table'} holds",
                            hint="propose one of those combinations; the nearest: "
                                 + "; ".join(self.summary(dict(zip(self.names, c))) for c in near))
        return out

    def _choice_of(self, slot: Slot, value: Any) -> Value | None:
        """The slot's choice equal to ``value`` (32 for "32" too: a choice written as text), or None."""
        for v in slot.values:
            if value == v and isinstance(value, bool) == isinstance(v, bool):
                return v
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return self._by_text[slot.name].get(str(value).strip())
        return None

    def choice_from_text(self, slot: str, text: str) -> Value | None:
        """The choice of ``slot`` written as ``text`` (a table cell), or None."""
        text = text.strip()
        found = self._by_text[slot].get(text)
        if found is not None:
            return found
        for v in self.slot(slot).values:  # "32.0" for 32, "True" for true
            if isinstance(v, bool):
                if text.lower() == str(v).lower():
                    return v
            elif isinstance(v, (int, float)):
                try:
                    if float(text) == v:
                        return v
                except ValueError:
                    pass
        return None

    def slot(self, name: str) -> Slot:
        return self.file.slot(name)

    def _values(self, spec: Mapping[str, Any]) -> tuple[Value, ...]:
        return tuple(spec[n] for n in self.names)

    def _passes(self, spec: Mapping[str, Any]) -> bool:
        return all(r.holds(spec) for r in self.rules)

    def allows(self, spec: Mapping[str, Any]) -> bool:
        """Whether a search may propose ``spec`` (slot -> choice): inside the restriction, else within the rules."""
        if self._allowed_set is not None:
            return self._values(spec) in self._allowed_set
        return self._passes(spec)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        if self._allowed is not None:
            return dict(zip(self.names, rng.choice(self._allowed)))
        for _ in range(SAMPLE_TRIES):
            spec = {s.name: rng.choice(s.values) for s in self.slots}
            if self._passes(spec):
                return spec
        return dict(zip(self.names, rng.choice(self.valid_combinations())))

    def valid_combinations(self) -> list[tuple[Value, ...]]:
        """Every combination the rules allow, in slot order (enumerated once; spaces up to
        ENUMERATE_LIMIT combinations, else SpecError)."""
        if self._enumerated is None:
            if self.file.size > ENUMERATE_LIMIT:
                raise SpecError(f"the constraints of {self.file.path.name} let fewer than 1 in {SAMPLE_TRIES:,} random "
                                f"combinations of its {self.file.size:,} through, too few to sample",
                                hint="loosen the constraints or split the space")
            self._enumerated = [c for c in itertools.product(*(s.values for s in self.slots))
                                if self._passes(dict(zip(self.names, c)))]
        return self._enumerated

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        if not self._mutable:
            raise SpecError(f"every slot of {self.label} has one choice: there is nothing to mutate",
                            hint="give a slot a second choice")
        if self._allowed is None:
            for _ in range(100):  # one slot changed, as the built-in spaces do
                child = dict(spec)
                slot = rng.choice(self._mutable)
                child[slot] = rng.choice([v for v in self.slot(slot).values if v != spec[slot]])
                if self._passes(child):
                    return child
            pool = [c for c in self.valid_combinations() if c != self._values(spec)]
        else:
            pool = [c for c in self._allowed if c != self._values(spec)]
        if not pool:
            raise SpecError(f"{self.summary(spec)} is the only combination the search may propose; "
                            "there is nothing to mutate it into", hint="widen the space or the table")
        here = self._values(spec)
        if rng.random() < JUMP:  # now and then anywhere: the nearest of the best parents may all be taken
            return dict(zip(self.names, rng.choice(pool)))
        # Change a slot drawn at random, as the unrestricted mutation does, and as little else as the set allows.
        at = self.names.index(rng.choice(self._mutable))
        pool = [c for c in pool if c[at] != here[at]] or pool
        distance = [sum(a != b for a, b in zip(c, here)) for c in pool]
        nearest = min(distance)
        return dict(zip(self.names, rng.choice([c for c, d in zip(pool, distance) if d == nearest])))

    def canonical_key(self, spec: dict[str, Any]) -> str:
        return ",".join(f"{n}={describe_value(spec[n])}" for n in self.names)

    def encode(self, spec: dict[str, Any]) -> dict[str, float]:
        """Each slot's choice as an indicator; a numeric slot's value as a number as well."""
        out = {}
        for name in self.names:
            value = spec[name]
            out[f"{name}={describe_value(value)}"] = 1.0
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out |= flatten(value, name)
        return out

    def summary(self, spec: dict[str, Any]) -> str:
        return " ".join(f"{n}={spec[n]}" for n in self.names if n in spec)

    def table_key(self, spec: Mapping[str, Any]) -> str | None:
        """The key the file's template makes of ``spec`` (None without a lookup template)."""
        lookup = self.file.lookup
        if lookup is None or lookup.key is None:
            return None
        return re.sub(r"\{([^{}]*)\}", lambda m: str(spec[m.group(1)]), lookup.key)

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A one-line ``summary`` of the choices and, with a lookup template, the table ``key``."""
        key = self.table_key(spec)
        return {"summary": self.summary(spec)} | ({"key": key} if key is not None else {})
