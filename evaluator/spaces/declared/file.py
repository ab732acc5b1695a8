"""Reading a space file: the TOML that declares a search space (``--space-file FILE``).

The one format is TOML (docs/spaces.md has the reference and a worked example)::

    name = "cell"                        # optional (default: the file's name)
    description = "what the space is"    # shown in the prompt
    objectives = ["accuracy", "params"]  # optional: the run's default objectives

    [choices]                            # optional: what a choice means, for every slot that has it
    conv3 = "3x3 convolution, batch norm, ReLU"
    skip = { description = "identity", code = "nn.Identity()" }

    [slots.op_1]
    description = "the first block"
    choices = ["conv3", "skip", { value = "conv5", description = "5x5 convolution" }]

    [slots.width]
    choices = [16, 32, 64]

    [[constraints]]                      # optional: rules every combination must satisfy
    rule = "op_1 != 'skip' or width >= 32"
    message = "a skip block needs width 32 or more"

    [lookup]                             # evaluation by table lookup (evaluator.pools.lookup), or ...
    [train]                              # ... by real training of a builder (build_model(choices, ...))

``load_space_file`` checks everything it can without the tables: every key, slot and choice,
every rule against every combination (or a large sample), the key template against the slots,
the builder's existence. An error names the file, the line and the fix (SpaceFileError).
"""

from __future__ import annotations

import hashlib
import itertools
import keyword
import math
import random
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from evaluator.errors import UserInputError, did_you_mean
from evaluator.spaces.declared.rules import HELPERS, Rule, RuleError, parse_rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Value = str | int | float | bool
MAX_SLOTS = 200
MAX_CHOICES = 1000
MAX_TEXT = 2000  # characters of a description or a code definition
ENUMERATE_LIMIT = 200_000  # spaces up to this size are enumerated to check their rules
RULE_CHECK_SAMPLES = 20_000  # larger spaces: random combinations tried to find a valid one
OBJECTIVE_NAMES = ("accuracy", "latency", "params", "flops")
TOP_KEYS = ("name", "description", "objectives", "choices", "slots", "constraints", "lookup", "train")
LOOKUP_KEYS = ("tables", "key", "key_column", "signal", "report", "goal", "scale", "fidelity", "report_fidelity",
               "metrics")
TRAIN_KEYS = ("builder", "task")
METRIC_NAMES = ("params", "flops", "latency_ms")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DOCS = "docs/spaces.md"


class SpaceFileError(UserInputError):
    """A space file that cannot be used: the message names the file and line, the hint the fix."""


@dataclass(frozen=True)
class Choice:
    value: Value
    description: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Slot:
    name: str
    choices: tuple[Choice, ...]
    description: str | None = None
    line: int | None = None

    @property
    def values(self) -> tuple[Value, ...]:
        return tuple(c.value for c in self.choices)


@dataclass(frozen=True)
class TableRef:
    path: Path
    key_column: str | None = None  # None: the lookup's key_column


@dataclass(frozen=True)
class LookupDecl:
    """How a table row is found for a spec, and which columns are what (evaluator.pools.lookup)."""

    tables: tuple[TableRef, ...]
    signal: str
    key: str | None = None  # a template over the slots ("{op_1}-{width}"); None: one column per slot
    key_column: str = "key"
    report: str | None = None
    goal: Literal["maximize", "minimize"] = "maximize"
    scale: Literal["auto", "percent", "fraction"] = "auto"
    fidelity: float | None = None
    report_fidelity: float | None = None
    metrics: dict[str, str] = field(default_factory=dict)  # params / flops / latency_ms -> column
    line: int | None = None


@dataclass(frozen=True)
class TrainDecl:
    builder: Path
    task: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class SpaceFile:
    path: Path
    sha256: str
    name: str
    description: str | None
    slots: tuple[Slot, ...]
    rules: tuple[Rule, ...] = ()
    objectives: tuple[str, ...] | None = None
    lookup: LookupDecl | None = None
    train: TrainDecl | None = None
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return math.prod(len(s.choices) for s in self.slots)

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)


class _Lines:
    """Where things are in the file's text (tomllib gives values, not positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def header(self, name: str, occurrence: int = 0) -> int | None:
        """The line of ``[name]`` (or the ``occurrence``-th ``[[name]]``), 1-based."""
        pattern = re.compile(r"^\s*\[\[?\s*" + r"\s*\.\s*".join(re.escape(p) for p in name.split(".")) + r"\s*\]\]?")
        seen = 0
        for i, line in enumerate(self.lines, start=1):
            if pattern.match(line):
                if seen == occurrence:
                    return i
                seen += 1
        return None

    def key(self, key: str, after: int | None = None) -> int | None:
        """The line of ``key = ...`` at or after line ``after`` (a table's header)."""
        pattern = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for i, line in enumerate(self.lines[(after or 1) - 1:], start=after or 1):
            if i > (after or 1) and line.lstrip().startswith("[") and after is not None:
                break
            if pattern.match(line):
                return i
        return None


def load_space_file(path: Path | str) -> SpaceFile:
    """Read and check a space file; SpaceFileError naming the file, the line and the fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpaceFileError(f"space file not found: {path}" if not path.exists() else f"space file {path} is not a file",
                             hint=f"pass --space-file with a TOML file that declares the slots ({DOCS})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise SpaceFileError(f"space file {path} is not UTF-8 text: {exc}", hint=f"save it as UTF-8 TOML ({DOCS})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceFileError(f"space file {path} is not valid TOML: {exc}",
                             hint=f"fix the syntax at that line; {DOCS} shows the format") from None
    return _Parser(path.resolve(), text, hashlib.sha256(raw).hexdigest()).parse(data)


class _Parser:
    def __init__(self, path: Path, text: str, sha256: str) -> None:
        self.path, self.sha256, self.where = path, sha256, _Lines(text)
        self.notes: list[str] = []

    def error(self, message: str, hint: str, line: int | None = None) -> SpaceFileError:
        at = f"{self.path} line {line}" if line else str(self.path)
        return SpaceFileError(f"{at}: {message}", hint=hint)

    def parse(self, data: dict[str, Any]) -> SpaceFile:
        for key in data:
            if key not in TOP_KEYS:
                raise self.error(f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}",
                                 f"the top level holds {', '.join(TOP_KEYS)} ({DOCS})",
                                 self.where.header(key) or self.where.key(key))
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise self.error(f"name {name!r} must be a short non-empty string", "e.g. name = \"my-cell\"",
                             self.where.key("name"))
        description = self._text(data.get("description"), "description", self.where.key("description"))
        glossary = self._glossary(data.get("choices", {}))
        slots = self._slots(data.get("slots"), glossary)
        used = {str(c.value) for s in slots for c in s.choices}
        for unused in [k for k in glossary if k not in used]:
            self.notes.append(f"{self.path}: [choices] describes {unused!r}, which no slot offers")
        rules = self._rules(data.get("constraints", []), slots)
        objectives = self._objectives(data.get("objectives"))
        lookup = self._lookup(data["lookup"], slots) if "lookup" in data else None
        train = self._train(data["train"]) if "train" in data else None
        space = SpaceFile(path=self.path, sha256=self.sha256, name=name.strip(), description=description,
                          slots=slots, rules=rules, objectives=objectives, lookup=lookup, train=train,
                          notes=tuple(self.notes))
        if rules:
            self._check_rules(space)
        return space

    def _text(self, value: Any, label: str, line: int | None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise self.error(f"{label} must be a string of at most {MAX_TEXT} characters", f"shorten {label}", line)
        return value.strip() or None

    def _choice_info(self, value: Any, label: str, line: int | None) -> tuple[str | None, str | None]:
        """``"text"`` or ``{description = ..., code = ...}``."""
        if isinstance(value, str):
            return self._text(value, label, line), None
        if isinstance(value, dict):
            extra = set(value) - {"description", "code"}
            if extra:
                raise self.error(f"{label} has unknown key(s) {', '.join(sorted(extra))}",
                                 "a choice's entry holds description and, optionally, code", line)
            return (self._text(value.get("description"), f"{label}.description", line),
                    self._text(value.get("code"), f"{label}.code", line))
        raise self.error(f"{label} must be a description string or {{ description = ..., code = ... }}",
                         'e.g. conv3 = "3x3 convolution"', line)

    def _glossary(self, table: Any) -> dict[str, tuple[str | None, str | None]]:
        line = self.where.header("choices")
        if not isinstance(table, dict):
            raise self.error("[choices] must be a table of choice -> description", 'e.g. [choices]\nconv3 = "3x3 convolution"',
                             line)
        return {str(k): self._choice_info(v, f"[choices] {k}", self.where.key(str(k), line) or line)
                for k, v in table.items()}

    def _slots(self, table: Any, glossary: dict[str, tuple[str | None, str | None]]) -> tuple[Slot, ...]:
        if not isinstance(table, dict) or not table:
            raise self.error("the file declares no slots", "add one [slots.NAME] table per slot, each with "
                             "choices = [...] (" + DOCS + ")", self.where.header("slots"))
        if len(table) > MAX_SLOTS:
            raise self.error(f"{len(table)} slots; at most {MAX_SLOTS}", "merge slots or split the space")
        out = []
        for name, body in table.items():
            line = self.where.header(f"slots.{name}") or self.where.key(name, self.where.header("slots"))
            self._slot_name(name, line)
            if not isinstance(body, dict):
                raise self.error(f"slot {name!r} must be a table with choices = [...]",
                                 f"write [slots.{name}] and below it choices = [...]", line)
            extra = set(body) - {"choices", "description"}
            if extra:
                top = sorted(extra & set(TOP_KEYS))
                raise self.error(f"slot {name!r} has unknown key(s) {', '.join(sorted(extra))}"
                                 f"{did_you_mean(sorted(extra)[0], ('choices', 'description'))}",
                                 f"in TOML a key belongs to the [table] above it: move {', '.join(top)} to the top of "
                                 "the file, before the first [table]" if top else
                                 "a slot holds choices and, optionally, description", line)
            raw = body.get("choices")
            choices_line = self.where.key("choices", line) or line
            if not isinstance(raw, list) or not raw:
                raise self.error(f"slot {name!r} has no choices" if not raw else f"slot {name!r}: choices must be a list",
                                 f"give it at least one choice: choices = [\"a\", \"b\"] under [slots.{name}]", choices_line)
            if len(raw) > MAX_CHOICES:
                raise self.error(f"slot {name!r} has {len(raw)} choices; at most {MAX_CHOICES}", "split the slot",
                                 choices_line)
            choices: list[Choice] = []
            for item in raw:
                choice = self._choice(name, item, glossary, choices_line)
                if any(c.value == choice.value and type(c.value) is type(choice.value) for c in choices) \
                        or any(str(c.value) == str(choice.value) for c in choices):
                    raise self.error(f"slot {name!r} lists the choice {choice.value!r} twice",
                                     "list each choice once", choices_line)
                choices.append(choice)
            if len(choices) == 1:
                self.notes.append(f"{self.path}: slot {name!r} has one choice ({choices[0].value!r}): it never changes")
            out.append(Slot(name=name, choices=tuple(choices), line=line,
                            description=self._text(body.get("description"), f"slot {name!r} description", line)))
        return tuple(out)

    def _slot_name(self, name: str, line: int | None) -> None:
        problem = None
        if not _NAME.match(name):
            problem = "must start with a letter and hold only letters, digits and _"
        elif keyword.iskeyword(name) or name in ("True", "False", "None") or name in HELPERS:
            problem = "is a reserved word"
        elif name.startswith("model_") or hasattr(BaseModel, name):
            problem = "is reserved by the proposal schema (pydantic)"
        if problem:
            raise self.error(f"slot name {name!r} {problem}", "rename the slot, e.g. op_1 or width_2", line)

    def _choice(self, slot: str, item: Any, glossary: dict[str, tuple[str | None, str | None]],
                line: int | None) -> Choice:
        description = code = None
        if isinstance(item, dict):
            if "value" not in item:
                raise self.error(f"slot {slot!r}: a choice written as a table needs value = ...",
                                 '{ value = "conv5", description = "5x5 convolution" }', line)
            extra = set(item) - {"value", "description", "code"}
            if extra:
                raise self.error(f"slot {slot!r}: choice {item['value']!r} has unknown key(s) {', '.join(sorted(extra))}",
                                 "a choice holds value and, optionally, description and code", line)
            description = self._text(item.get("description"), f"choice {item['value']!r} description", line)
            code = self._text(item.get("code"), f"choice {item['value']!r} code", line)
            item = item["value"]
        if isinstance(item, float) and not math.isfinite(item):
            raise self.error(f"slot {slot!r}: choice {item!r} is not a finite number", "use finite numbers", line)
        if not isinstance(item, (str, int, float, bool)) or (isinstance(item, str) and not item.strip()):
            raise self.error(f"slot {slot!r}: choice {item!r} must be a non-empty string, a number or a boolean",
                             "write choices as strings (\"conv3\") or numbers (32)", line)
        if isinstance(item, str) and len(item) > 200:
            raise self.error(f"slot {slot!r}: choice {item[:40]!r}... is longer than 200 characters",
                             "use a short name and put the details in its description", line)
        shared = glossary.get(str(item), (None, None))
        return Choice(value=item, description=description or shared[0], code=code or shared[1])

    def _rules(self, items: Any, slots: tuple[Slot, ...]) -> tuple[Rule, ...]:
        if not isinstance(items, list):
            raise self.error("constraints must be a list of [[constraints]] tables (rule = \"...\")",
                             "write each constraint as [[constraints]] with rule = \"...\"", self.where.key("constraints"))
        values = {s.name: s.values for s in slots}
        out = []
        for i, item in enumerate(items):
            line = self.where.header("constraints", i) or self.where.key("constraints")
            if isinstance(item, str):
                item = {"rule": item}
            if not isinstance(item, dict) or "rule" not in item or set(item) - {"rule", "message"}:
                raise self.error(f"constraint {i + 1} must hold rule = \"...\" and, optionally, message = \"...\"",
                                 "e.g. [[constraints]]\nrule = \"width_2 >= width_1\"", line)
            try:
                out.append(parse_rule(item["rule"], values, self._text(item.get("message"), "message", line)))
            except RuleError as exc:
                raise self.error(f"constraint {i + 1} ({item['rule']!r}): {exc}",
                                 f"fix the rule; {DOCS} lists what a rule may use", line) from None
        return tuple(out)

    def _check_rules(self, space: SpaceFile) -> None:
        """Every rule evaluates on every combination (or a large sample), and one combination passes all."""
        names = [s.name for s in space.slots]
        if space.size <= ENUMERATE_LIMIT:
            combos: Iterable[tuple[Value, ...]] = itertools.product(*(s.values for s in space.slots))
        else:
            rng = random.Random(0)
            combos = (tuple(rng.choice(s.values) for s in space.slots) for _ in range(RULE_CHECK_SAMPLES))
        found = False
        for combo in combos:
            spec = dict(zip(names, combo))
            ok = True
            for i, rule in enumerate(space.rules):
                try:
                    ok = rule.holds(spec)
                except RuleError as exc:
                    raise self.error(f"constraint {i + 1} ({rule.text!r}) {exc}",
                                     "make the rule work for every combination (compare numbers with numbers)",
                                     self.where.header("constraints", i)) from None
                if not ok:
                    break
            if ok:
                found = True
                if space.size > ENUMERATE_LIMIT:
                    break
        if not found:
            tried = "no combination" if space.size <= ENUMERATE_LIMIT else f"none of {RULE_CHECK_SAMPLES} random combinations"
            raise self.error(f"{tried} of the {space.size:,} satisfies every constraint",
                             "loosen the constraints", self.where.header("constraints"))

    def _objectives(self, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        line = self.where.key("objectives")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error("objectives must be a list of names", 'e.g. objectives = ["accuracy", "params"]', line)
        for v in value:
            if v not in OBJECTIVE_NAMES:
                raise self.error(f"unknown objective {v!r}{did_you_mean(v, OBJECTIVE_NAMES)}",
                                 "objectives are " + ", ".join(OBJECTIVE_NAMES), line)
        if "accuracy" not in value:
            raise self.error(f"objectives {value} do not include accuracy (the search signal)",
                             'add "accuracy" to objectives', line)
        return tuple(value)

    def _path(self, value: Any, label: str, line: int | None) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{label} must be a path string", f"give {label} as a path relative to this file", line)
        p = Path(value).expanduser()
        return (p if p.is_absolute() else self.path.parent / p).resolve()

    def _lookup(self, table: Any, slots: tuple[Slot, ...]) -> LookupDecl:
        line = self.where.header("lookup")
        if not isinstance(table, dict):
            raise self.error("[lookup] must be a table", "write [lookup] with signal = \"COLUMN\" below it", line)
        for key in table:
            if key not in LOOKUP_KEYS:
                raise self.error(f"[lookup] has unknown key {key!r}{did_you_mean(key, LOOKUP_KEYS)}",
                                 "[lookup] holds " + ", ".join(LOOKUP_KEYS), self.where.key(key, line) or line)
        at = lambda key: self.where.key(key, line) or line  # noqa: E731
        tables = []
        raw = table.get("tables", [])
        if isinstance(raw, (str, dict)):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.error("tables must be a list of paths", 'tables = ["results.csv"]', at("tables"))
        for item in raw:
            if isinstance(item, dict):
                if "path" not in item or set(item) - {"path", "key_column"}:
                    raise self.error("a table written as a table needs path = ... and, optionally, key_column = ...",
                                     '{ path = "final.csv", key_column = "arch" }', at("tables"))
                column = item.get("key_column")
                if column is not None and (not isinstance(column, str) or not column.strip()):
                    raise self.error("key_column must be a column name", 'key_column = "arch"', at("tables"))
                tables.append(TableRef(self._path(item["path"], "a table's path", at("tables")), column))
            else:
                tables.append(TableRef(self._path(item, "a table's path", at("tables"))))
        signal = table.get("signal")
        if not isinstance(signal, str) or not signal.strip():
            raise self.error("[lookup] needs signal = \"COLUMN\": the column the search maximises (validation accuracy)",
                             'add e.g. signal = "val_accuracy" under [lookup]', line)
        key = table.get("key")
        names = [s.name for s in slots]
        if key is not None:
            if not isinstance(key, str) or not key:
                raise self.error("key must be a template string", 'e.g. key = "{op_1}-{width}"', at("key"))
            used = re.findall(r"\{([^{}]*)\}", key)
            for name in used:
                if name not in names:
                    raise self.error(f"key template {key!r} uses {{{name}}}, which is not a slot"
                                     f"{did_you_mean(name, names)}", "use {SLOT} for the slots: " + ", ".join(names),
                                     at("key"))
            missing = [n for n in names if n not in used]
            if missing:
                raise self.error(f"key template {key!r} leaves out slot(s) {', '.join(missing)}: candidates that differ "
                                 "only there would read the same row", "put every slot in the key: "
                                 + " ".join("{" + n + "}" for n in missing), at("key"))
            if re.search(r"\}\{", key):
                raise self.error(f"key template {key!r} puts two slots side by side: a key could not be read back",
                                 "separate the slots with a character, e.g. {a}-{b}", at("key"))
        goal = table.get("goal", "maximize")
        if goal not in ("maximize", "minimize"):
            raise self.error(f"goal {goal!r} must be maximize or minimize",
                             "maximize: signal and report are accuracies; minimize: they are error rates", at("goal"))
        scale = table.get("scale", "auto")
        if scale not in ("auto", "percent", "fraction"):
            raise self.error(f"scale {scale!r} must be auto, percent or fraction",
                             "auto: percent when a value is above 1", at("scale"))
        metrics = table.get("metrics", {})
        if not isinstance(metrics, dict) or not all(isinstance(v, str) and v for v in metrics.values()):
            raise self.error("metrics must map params, flops or latency_ms to a column",
                             'metrics = { params = "n_params", latency_ms = "latency" }', at("metrics"))
        for k in metrics:
            if k not in METRIC_NAMES:
                raise self.error(f"metrics: unknown metric {k!r}{did_you_mean(k, METRIC_NAMES)}",
                                 "metrics are " + ", ".join(METRIC_NAMES), at("metrics"))
        fidelity, report_fidelity = (self._positive(table.get(k), k, at(k)) for k in ("fidelity", "report_fidelity"))
        report = table.get("report")
        if report is not None and (not isinstance(report, str) or not report.strip()):
            raise self.error("report must be a column name", 'report = "test_accuracy"', at("report"))
        key_column = table.get("key_column", "key")
        if not isinstance(key_column, str) or not key_column.strip():
            raise self.error("key_column must be a column name", 'key_column = "arch"', at("key_column"))
        return LookupDecl(tables=tuple(tables), signal=signal.strip(), key=key, key_column=key_column.strip(),
                          report=report.strip() if report else None, goal=goal, scale=scale, fidelity=fidelity,
                          report_fidelity=report_fidelity, metrics=dict(metrics), line=line)

    def _positive(self, value: Any, label: str, line: int | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.error(f"{label} must be a positive number (epochs behind the column)", f"e.g. {label} = 12", line)
        return float(value)

    def _train(self, table: Any) -> TrainDecl:
        line = self.where.header("train")
        if not isinstance(table, dict) or "builder" not in table:
            raise self.error("[train] needs builder = \"FILE.py\": the file whose build_model(choices, input_shape, "
                             "num_classes) returns the network", 'add builder = "builder.py" under [train]', line)
        for key in table:
            if key not in TRAIN_KEYS:
                raise self.error(f"[train] has unknown key {key!r}{did_you_mean(key, TRAIN_KEYS)}",
                                 "[train] holds " + ", ".join(TRAIN_KEYS), self.where.key(key, line) or line)
        builder = self._path(table["builder"], "builder", self.where.key("builder", line))
        if not builder.is_file():
            raise self.error(f"builder file not found: {builder}", "set builder to the Python file (relative to this "
                             "file) that defines build_model(choices, input_shape, num_classes)",
                             self.where.key("builder", line))
        task = table.get("task")
        if task is not None and (not isinstance(task, str) or not task.strip()):
            raise self.error("task must be a task name", 'e.g. task = "digits"', self.where.key("task", line))
        return TrainDecl(builder=builder, task=task.strip() if task else None, line=line)
