"""The ``code`` space itself: its schemas (a spec, one search/replace edit, an LLM proposal) and
``CodeSpace`` (validation, canonical key, sampling, mutation, descriptions, proposals)."""

from __future__ import annotations

import ast
import difflib
import hashlib
import random
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evaluator.errors import SpecError, did_you_mean
from evaluator.recipe import Training
from evaluator.spaces.base import SearchSpace, field_text, spec_error_from_validation
from evaluator.spaces.encoding import flatten, source_features
from evaluator.spaces.code.edits import apply_edit, format_literal, knob_options, set_training, splice, training_options
from evaluator.spaces.code.source import (MAX_CHARS, MAX_LINES, clip, count_lines, docstring_line, span,
                                          without_docstrings, parse_source)

MAX_EDITS = 4
MAX_SEARCH_CHARS = 2_000
MAX_REPLACE_CHARS = 4_000
MAX_PROPOSAL_SOURCE = 16_000  # a whole file in one proposal (tighter than MAX_CHARS: generation time)
SUMMARY_CHARS = 200
_MUTABLE_TRAINING = ("lr", "weight_decay", "label_smoothing", "batch_size", "optimizer", "schedule", "augmentation")
_KNOB_WEIGHT = 0.7  # chance that a mutation edits a knob rather than TRAINING (when the file has knobs)


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


class CodeSpec(BaseModel):
    """A model file; ``training`` is derived from its TRAINING literal (ignored on input)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(max_length=MAX_CHARS, description="the whole Python file: defines "
                        "build_model(input_shape, num_classes) returning a torch.nn.Module")
    training: dict[str, Any] | None = Field(None, description="derived from the file's TRAINING dict; "
                                            "ignored on input")


class Edit(BaseModel):
    """One search/replace edit of the shown file."""

    model_config = ConfigDict(extra="forbid")

    search: str = Field(min_length=1, max_length=MAX_SEARCH_CHARS,
                        description="text copied exactly from the current file (whole lines, with their "
                        "indentation) that occurs exactly once in it; a few lines are enough")
    replace: str = Field(max_length=MAX_REPLACE_CHARS,
                         description="the text that takes the place of `search` (empty deletes it)")


class CodeProposal(BaseModel):
    """1 to 4 search/replace edits of the shown file, or a whole new file in ``source``.

    ``edits`` comes first and is required (at least one): under constrained decoding a small
    model otherwise emits an empty object. A non-empty ``source`` replaces the file and the
    edits are then ignored."""

    model_config = ConfigDict(extra="forbid")

    edits: list[Edit] = Field(min_length=1, max_length=MAX_EDITS,
                              description=f"1 to {MAX_EDITS} search/replace edits, applied in order to the shown "
                              "file, e.g. {\"search\": \"WIDTH = 32\", \"replace\": \"WIDTH = 48\"}")
    source: str = Field("", max_length=MAX_PROPOSAL_SOURCE,
                        description="leave empty; a whole new file only when the change is too big for edits "
                        "(it then replaces the file and the edits are ignored)")


# --------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------


class CodeSpace(SearchSpace):
    """PyTorch model files; static checks only (nothing of a candidate runs on this side).

    The seed (what ``sample`` mutates and edits apply to without a base) is ``seed_source``, or
    the task's file from :mod:`evaluator.spaces.code.seeds`.
    """

    name: ClassVar[str] = "code"
    proposal_schema: ClassVar[type[BaseModel]] = CodeSpec
    llm_schema: ClassVar[type[BaseModel]] = CodeProposal
    runs_candidate_code: ClassVar[bool] = True
    network_file: ClassVar[str | None] = "model.py"  # the spec's source, written into the job's folder
    builds_in_trusted_process: ClassVar[bool] = False
    # A proposal is edits of a file shown in the prompt: a longer prompt and reply than a spec, and each
    # repair resends the file, so one repair, then the fallback mutation of the file.
    llm_limits: ClassVar[dict[str, int]] = {"max_tokens": 1536, "token_budget": 5000, "max_repairs": 1}

    def __init__(self, input_shape: tuple[int, ...] | None = None, num_classes: int | None = None, *,
                 max_params: int | None = None, max_flops: int | None = None, task: str | None = None,
                 seed_source: str | None = None) -> None:
        super().__init__(input_shape, num_classes, max_params=max_params, max_flops=max_flops)
        self.task = task
        self._seed_text = seed_source

    @property
    def seed(self) -> str:
        """The seed file's text (read on first use)."""
        if self._seed_text is None:
            from evaluator.spaces.code.seeds import seed_source

            self._seed_text = seed_source(self.task)
        return self._seed_text

    # -- validation ------------------------------------------------------------------

    def validate(self, spec: Any) -> dict[str, Any]:
        """``{"source": str}`` (or the text itself) -> ``{"source", "training"}``; ``training``
        is always derived from the file, whatever the input says."""
        if isinstance(spec, str):
            spec = {"source": spec}
        if not isinstance(spec, dict):
            raise SpecError(f"a code spec must be a JSON object with a `source` string, got {type(spec).__name__}",
                            hint='emit {"source": "<the whole Python file>"}')
        unknown = [k for k in spec if k not in ("source", "training")]
        if unknown:
            raise SpecError(f"unknown field {unknown[0]!r} in a code spec{did_you_mean(str(unknown[0]), ['source'])}",
                            hint="a code spec has one field, `source`; training settings go in the file's TRAINING "
                                 "dict", field=str(unknown[0]))
        if "source" not in spec:
            raise SpecError("a code spec needs `source`: the whole Python file",
                            hint='emit {"source": "<the whole Python file>"}', field="source")
        parsed = parse_source(spec["source"])
        return {"source": parsed.text, "training": parsed.training}

    def canonical_key(self, spec: dict[str, Any]) -> str:
        source = spec["source"] if isinstance(spec, dict) else spec
        try:
            text = ast.unparse(without_docstrings(ast.parse(source)))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            text = source  # an invalid file: its text is all there is
        return "code:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def stats(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"lines": count_lines(spec["source"]), "chars": len(spec["source"])}

    def encode(self, spec: dict[str, Any]) -> dict[str, float]:
        """The TRAINING fields, the knobs and the calls in the source, parsed (never run)."""
        parsed = parse_source(spec["source"])
        knobs = {name: value for name, (value, _) in parsed.knobs.items()}
        return flatten(parsed.training, "training") | flatten(knobs, "knob") | source_features(parsed.tree)

    @classmethod
    def network_source(cls, spec: dict[str, Any]) -> str:
        """The candidate's own file: ``network_file`` of its jobs."""
        return spec["source"]

    # -- baselines -------------------------------------------------------------------

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """The seed with 1..3 knob mutations (it may come back to the seed when two cancel)."""
        spec = self.validate({"source": self.seed})
        for _ in range(rng.randint(1, 3)):
            spec = self.mutate(spec, rng)
        return spec

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """One knob or TRAINING key changed in the text (see the module docstring); always valid
        and different from ``spec``. Deterministic for a given ``rng`` state."""
        parsed = parse_source(spec["source"])
        key = self.canonical_key(spec)
        knobs = [(n, opts) for n, (v, _) in parsed.knobs.items() if (opts := knob_options(n, v, parsed.choices))]
        training = [(k, opts) for k in _MUTABLE_TRAINING if (opts := training_options(k, parsed.training[k]))]
        for _ in range(20):
            if knobs and (not training or rng.random() < _KNOB_WEIGHT):
                name, options = rng.choice(knobs)
                value, node = parsed.knobs[name]
                start, end = span(parsed.text, node)
                new_text = splice(parsed.text, start, end,
                                   format_literal(rng.choice(options), parsed.text[start:end]))
            else:
                name, options = rng.choice(training)
                new_text = set_training(parsed, name, rng.choice(options))
            child = self.validate({"source": new_text})
            if self.canonical_key(child) != key:
                return child
        raise SpecError("no knob or TRAINING edit changes this file", hint="add UPPER_CASE knobs to the file",
                        field="source")  # unreachable for a valid file: TRAINING always has options

    # -- text ------------------------------------------------------------------------

    def describe(self) -> str:
        training = "; ".join(field_text(n, f) for n, f in Training.model_fields.items())
        lines = [
            "A candidate is one Python file (PyTorch) that defines `build_model(input_shape, num_classes)`: "
            "input_shape is (C, H, W) as a tuple of ints; it returns a torch.nn.Module that maps a float tensor "
            "(B, C, H, W), normalised per channel to mean 0 and std 1, to logits (B, num_classes) (no softmax).",
        ]
        if self.input_shape is not None or self.num_classes is not None:
            shape = "x".join(map(str, self.input_shape)) if self.input_shape else "?"
            lines.append(f"This task: input_shape (C, H, W) = {shape}, num_classes = {self.num_classes or '?'}"
                         + (f" ({self.task})" if self.task else "") + ".")
        limits = [f"at most {v:,} {what}" for v, what in ((self.max_params, "parameters"),
                                                          (self.max_flops, "FLOPs (multiply-accumulates per image)"))
                  if v is not None]
        if limits:
            lines.append("The built model may have " + " and ".join(limits) + "; the evaluator measures it.")
        lines += [
            "The evaluator trains the module with cross-entropy and the file's TRAINING recipe for the task's "
            "epochs (not yours to set), and measures accuracy on held-out data that the file never sees; it "
            "computes every metric itself.",
            "The file runs in a sandbox: no network, no files outside its scratch directory, limited memory and "
            "time. Use torch only (plus math, typing, functools); no downloads, no pretrained weights.",
            f"Static checks before anything runs: at most {MAX_CHARS:,} characters and {MAX_LINES} lines; the top "
            "level holds only the docstring, imports, def/class definitions and assignments (and "
            "`if __name__ == \"__main__\":`); `def build_model` takes exactly two positional parameters; every "
            "imported module must be installed.",
            "Knobs: UPPER_CASE module-level constants (WIDTH = 32, ACTIVATION = \"relu\"); CHOICES = "
            "{\"KNOB\": [values]} lists the values a knob may take. Keep the network valid for any knob value "
            "(padding kernel // 2, adaptive pooling before the head).",
            "TRAINING = {...} is a literal dict read without running the file (no names, calls or arithmetic); "
            f"keys and allowed values: {training}.",
            f"Proposals: `edits`, 1 to {MAX_EDITS} search/replace pairs applied in order to the shown file "
            "(each `search` copied exactly from the file, whole lines with their indentation, and matching exactly "
            "once; `replace` is its new text), with `source` left empty; only for a change too big for edits, a "
            "whole new file in `source` (the edits are then ignored). Change one idea at a time and leave the rest "
            "of the file as it is.",
        ]
        return "\n".join(lines)

    def summary(self, spec: dict[str, Any]) -> str:
        try:
            parsed = parse_source(spec["source"])
        except SpecError:
            return clip("(invalid file) " + docstring_line(None, spec.get("source", "")), SUMMARY_CHARS)
        knobs = " ".join(f"{n}={v}" for n, (v, _) in parsed.knobs.items())
        tr = parsed.training
        train = f"{tr['optimizer']} lr={tr['lr']:g} bs={tr['batch_size']}"
        if tr["augmentation"] != "none":
            train += f" aug={tr['augmentation']}"
        head = f"{knobs} {train}".strip()
        return clip(f"{head} | {docstring_line(parsed.tree, parsed.text)}", SUMMARY_CHARS)

    def edit_example(self, spec: dict[str, Any] | None, rng: random.Random) -> dict[str, Any] | None:
        """One knob mutation of ``spec`` (None: the seed) written as a one-line search/replace edit."""
        text = self.show(spec)
        child = self.mutate({"source": text}, rng)["source"]
        old, new = text.splitlines(), child.splitlines()
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
                return {"search": old[i1].strip(), "replace": new[j1].strip()}
        return None

    def show(self, spec: dict[str, Any] | None) -> str:
        """The whole file, as the LLM sees it (edits must copy their search text from it)."""
        return self.seed if spec is None else spec["source"]

    # -- proposals -------------------------------------------------------------------

    def apply_proposal(self, value: Any, base: dict[str, Any] | None) -> dict[str, Any]:
        """A :class:`CodeProposal` (dict or model) applied to ``base`` (None: the seed) ->
        ``{"source": new_text}``, not yet validated; SpecError names the edit that failed."""
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict):
            raise SpecError(f"a code proposal must be an object with `edits` or `source`, got {type(value).__name__}",
                            hint='emit {"edits": [{"search": "...", "replace": "..."}]} or {"source": "..."}')
        source = value.get("source")
        if isinstance(source, str) and source.strip():  # a whole new file: the edits, if any, are ignored
            if len(source) > MAX_PROPOSAL_SOURCE:
                raise SpecError(f"source has {len(source)} characters; at most {MAX_PROPOSAL_SOURCE}",
                                hint="shorten the file, or give edits of the shown file instead", field="source")
            return {"source": source}
        try:
            proposal = CodeProposal.model_validate({"source": "", **value})
        except ValidationError as exc:
            raise spec_error_from_validation(exc, self.name, CodeProposal) from None
        text = base["source"] if base is not None else self.seed
        for i, edit in enumerate(proposal.edits):
            new = apply_edit(text, edit.search, edit.replace, i)
            if new == text:
                raise SpecError(f"edits[{i}] changes nothing in the file",
                                hint="put the changed text in `replace`, or drop this edit", field=f"edits[{i}]")
            text = new
        return {"source": text}
