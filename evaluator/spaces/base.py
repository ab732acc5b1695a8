"""The search-space plug-in interface.

A space owns everything that is specific to one kind of architecture description:

- ``proposal_schema``: the pydantic model an LLM must emit (bounded, so constrained
  decoding terminates) and that every spec is validated against;
- ``describe()``: a text description for prompts;
- ``sample`` / ``mutate``: what the random and evolution baselines need;
- ``canonical_key``: two specs with the same key are the same candidate (de-duplication);
- ``validate``: static checks that turn untrusted input into a normalised spec, or raise
  :class:`~evaluator.errors.SpecError` naming the offending field and why;
- ``stats``: static facts about a validated spec (parameters, FLOPs, shapes), where the space
  can compute them.

Three hooks for the LLM proposer have defaults that suit spaces whose proposal is the spec
itself (``layers``, ``nb201``); a space whose LLM emits something else overrides them (``code``:
search/replace edits of a file):

- ``llm_schema``: what the LLM emits for one proposal (default: ``proposal_schema``);
- ``apply_proposal(value, base)``: that output, applied to ``base`` (the parent spec, or None),
  as a spec still to be validated (default: ``value`` as it is);
- ``show(spec)``: the text a prompt shows for a spec, or None to show its summary (default).

A space is made for one task: it is given the task's ``input_shape`` and ``num_classes`` and
optional limits (``max_params``, ``max_flops``) that ``validate`` enforces. Spaces whose
specs do not depend on the task (``nb201``) work without them.

What the rest of the system may do with a space's candidates is said by its capabilities
(class attributes, read by the runner, the pools, the worker and the exporter; never a check
of the space's name):

- ``runs_candidate_code``: a spec carries code a proposer wrote (hostile input): it is written
  to ``network_file`` in the job's folder and runs only in a sandboxed worker, which must have no
  network unless the user says ``--unsafe`` (``code``);
- ``network_file``: the file in a training job's folder that the worker builds the network from
  (the candidate's ``model.py``; a space file's ``builder.py``, given to the pool); None where
  the project's own builders (``evaluator.models``) build it;
- ``builds_in_trusted_process``: whether a trusted process may build its networks (the
  pre-training probe, ONNX export): not where building runs a file;
- ``recipe_in_spec``: whether ``spec["training"]`` is the training recipe
  (``evaluator.recipe.Training``); not where the spec's keys are the user's own slots;
- ``llm_limits``: the LLM proposer's limits where one proposal is longer than a spec
  (``max_tokens``, ``token_budget``, ``max_repairs``);
- ``evidence_proxy``: the zero-cost proxy whose scores the portfolio's surrogate takes as
  evidence by default (``proxy_evidence = "auto"``), chosen by measurement for the space; None
  where no proxy earned it (docs/search.md, "The surrogate").
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from evaluator.errors import SpecError, did_you_mean
from evaluator.spaces.encoding import count_stats, flatten


class SearchSpace(ABC):
    name: ClassVar[str]
    proposal_schema: ClassVar[type[BaseModel]]

    # Capabilities (the module docstring says what each allows).
    runs_candidate_code: ClassVar[bool] = False
    network_file: ClassVar[str | None] = None
    builds_in_trusted_process: ClassVar[bool] = True
    recipe_in_spec: ClassVar[bool] = True
    llm_limits: ClassVar[dict[str, int]] = {}
    evidence_proxy: ClassVar[str | None] = None

    def __init__(
        self,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        *,
        max_params: int | None = None,
        max_flops: int | None = None,
    ) -> None:
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if not input_shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
                raise ValueError(f"{input_shape=} must be a non-empty tuple of positive ints, e.g. (3, 32, 32)")
        for label, value in (("num_classes", num_classes), ("max_params", max_params), ("max_flops", max_flops)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{label}={value!r} must be a positive int or None")
        self.input_shape: tuple[int, ...] | None = input_shape
        self.num_classes = num_classes
        self.max_params = max_params
        self.max_flops = max_flops

    @abstractmethod
    def describe(self) -> str:
        """A description of the space for people and prompts."""

    @abstractmethod
    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A random valid spec: uniform over a small space (nb201); a large one may say how it is biased."""

    @abstractmethod
    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """A valid spec one small edit away from ``spec`` and different from it."""

    def neighbours(self, spec: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every spec one edit away from ``spec``, where the space can list them (small discrete
        spaces); None where it cannot (``mutate`` then draws them one at a time)."""
        return None

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
            raise spec_error_from_validation(exc, self.name, self.proposal_schema) from None
        return parsed.model_dump(mode="json")

    def stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Static facts about a validated spec (``params``, ``flops``, shapes); ``{}`` if none."""
        return {}

    def encode(self, spec: dict[str, Any]) -> dict[str, float]:
        """A validated spec as named numeric features for the surrogate (evaluator.spaces.encoding):
        the spec flattened, and the static parameter / FLOP counts where ``stats`` has them."""
        try:
            stats = self.stats(spec)
        except (SpecError, ValueError):
            stats = {}
        return flatten(spec) | count_stats(stats)

    @classmethod
    def network_source(cls, spec: dict[str, Any]) -> str | None:
        """The text of ``network_file`` that a spec itself carries (``runs_candidate_code``), or None:
        the pool is given the file (a space file's builder), or there is none."""
        return None

    @classmethod
    def recipe_of(cls, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The training recipe a spec carries (``spec["training"]``), or None: the trainer's defaults."""
        return spec.get("training") if cls.recipe_in_spec else None

    @property
    def label(self) -> str:
        """The space's name in prompts and reports (a declared space: the file's own name)."""
        return self.name

    def summary(self, spec: dict[str, Any]) -> str:
        """A one-line human description of a spec (tables, logs)."""
        return self.canonical_key(spec)

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Space-specific fields shown beside a spec in summaries (``arch`` for nb201)."""
        return {}

    # -- LLM hooks (defaults: the LLM emits a spec) ----------------------------------------

    @property
    def llm_schema(self) -> type[BaseModel]:
        """The pydantic model an LLM emits for one proposal (a subclass may set a class attribute)."""
        return self.proposal_schema

    def apply_proposal(self, value: Any, base: dict[str, Any] | None) -> Any:
        """The spec (not yet validated) that an LLM output ``value`` makes of ``base`` (None: none)."""
        return value

    def nearest_valid(self, spec: Any, seen: frozenset[str] | set[str], rng: random.Random) -> dict[str, Any] | None:
        """A valid spec not in ``seen`` close to ``spec``, an LLM proposal (``llm_schema``'s terms)
        that stayed invalid after its repairs; None where the space has no notion of close (the default)."""
        return None

    def edit_example(self, spec: dict[str, Any] | None, rng: random.Random) -> dict[str, Any] | None:
        """A small valid edit of ``spec`` in ``llm_schema``'s terms, shown to the LLM as a format
        example where proposals are edits of a shown file; None where they are not."""
        return None

    def show(self, spec: dict[str, Any] | None) -> str | None:
        """The text a prompt shows for a spec (None: the space's starting point, where it has
        one); returns None where a prompt shows the ``summary`` instead."""
        return None


def spec_error_from_validation(exc: ValidationError, space: str, schema: type[BaseModel] | None = None) -> SpecError:
    """Turn pydantic's errors into one SpecError whose message names every bad field.

    With ``schema``, an unknown key gets the closest known key of its object as a suggestion.
    """
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
        if err["type"] == "extra_forbidden" and schema is not None and err["loc"]:
            shown += did_you_mean(str(err["loc"][-1]), _fields_at(schema, err["loc"][:-1]))
        problems.append(f"{field}: {err['msg']}{shown}")
    return SpecError(
        f"invalid {space} spec: " + "; ".join(problems),
        hint=f"fix the named field(s); `agent spaces {space}` describes the schema",
        field=first_field,
    )


def _fields_at(schema: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The field names of the object at ``path`` (a pydantic error location) in ``schema``."""
    node: Any = schema
    for part in path:
        if isinstance(part, int):  # an item of a list field
            args = get_args(node)
            node = args[0] if args else None
        elif isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = node.model_fields[part].annotation
        else:
            return []
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def field_text(name: str, info: Any, *, choices: str | None = None) -> str:
    """``name choices-or-bounds =default`` for one field of a pydantic schema (prompts, `agent
    spaces`): a Literal's choices joined by ``|``, else the ``ge``..``le`` bounds, else the type;
    ``choices`` replaces what the annotation would give."""
    annotation = info.annotation
    if choices is None:
        values = get_args(annotation) if get_origin(annotation) is Literal else ()
        if values:
            choices = "|".join(str(c) for c in values)
        else:
            lo = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
            hi = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
            choices = f"{lo:g}..{hi:g}" if lo is not None and hi is not None else annotation.__name__
    default = "" if info.is_required() or info.default_factory is not None else f" ={info.default}"
    return f"{name} {choices}{default}"
