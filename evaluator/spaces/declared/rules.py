"""Constraints between the slots of a declared search space: small expressions over slot names.

A rule is a Python-like expression that must be true for a valid combination, for example
``edge_3_0 != 'none' or edge_3_1 != 'none'``, ``width_2 >= width_1`` or ``count('none') <= 2``.
It is parsed once into a closed set of node types and evaluated by walking that tree: no
``eval``, no attribute access, no calls but the helpers below, so a space file cannot run code
in the trusted process.

Allowed: slot names, ``True``/``False``, string and number literals, tuples or lists of
literals (for ``in``), ``and or not``, comparisons (``== != < <= > >= in`` ``not in``),
arithmetic (``+ - * / // %``), ``x if c else y``, and the helpers ``count(value)`` (slots holding
``value``), ``min(...)``, ``max(...)``, ``abs(x)``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluator.errors import did_you_mean

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
HELPERS = ("count", "min", "max", "abs")
_SHOWN = "slot names, literals, and or not, == != < <= > >= in, + - * / // %, x if c else y, " + ", ".join(
    f"{h}()" for h in HELPERS)


class RuleError(ValueError):
    """A rule that does not parse, uses something not allowed, or names an unknown slot."""


@dataclass(frozen=True)
class Rule:
    text: str
    message: str | None
    tree: ast.expr

    def holds(self, spec: Mapping[str, Any]) -> bool:
        """Whether ``spec`` (slot -> choice) satisfies the rule; RuleError when it cannot be
        evaluated for this spec (comparing a string with a number, dividing by zero)."""
        try:
            return bool(_eval(self.tree, spec))
        except RuleError:
            raise
        except (TypeError, ZeroDivisionError, ValueError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in spec.items())
            raise RuleError(f"cannot be evaluated for {shown}: {exc}") from None

    def explain(self) -> str:
        return f"{self.text} ({self.message})" if self.message else self.text


def parse_rule(text: str, slots: Mapping[str, Sequence[Any]], message: str | None = None) -> Rule:
    """Parse ``text``; RuleError naming the problem (the caller adds where the rule is)."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("the rule is empty")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise RuleError(f"{text!r} is not an expression: {exc.msg}") from None
    _check(tree, slots)
    return Rule(text=text.strip(), message=message, tree=tree)


def _check(node: ast.AST, slots: Mapping[str, Sequence[Any]]) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, float, bool)):
            raise RuleError(f"literal {node.value!r} is not a string, number or boolean")
        return
    if isinstance(node, ast.Name):
        if node.id not in slots and node.id not in ("True", "False"):
            raise RuleError(f"unknown name {node.id!r}{did_you_mean(node.id, slots)}; a rule may use the slots "
                            f"({', '.join(slots)})")
        return
    if isinstance(node, (ast.Tuple, ast.List)):
        for item in node.elts:
            _check(item, slots)
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, slots)
        return
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, slots)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        _check(node.left, slots)
        _check(node.right, slots)
        return
    if isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, slots)
        return
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise RuleError("only == != < <= > >= in and not in compare")
        parts = [node.left, *node.comparators]
        for part in parts:
            _check(part, slots)
        for op, left, right in zip(node.ops, parts, parts[1:]):  # a typo in a literal: always false or true
            if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                continue  # width < 48 is fine although 48 is not a choice
            for name, other in ((left, right), (right, left)):
                if isinstance(name, ast.Name) and name.id in slots:
                    values = [other.value] if isinstance(other, ast.Constant) else \
                        [e.value for e in other.elts if isinstance(e, ast.Constant)] \
                        if isinstance(other, (ast.Tuple, ast.List)) else []
                    for value in values:
                        if value not in slots[name.id]:
                            raise RuleError(f"{value!r} is not a choice of slot {name.id!r}"
                                            f"{did_you_mean(str(value), map(str, slots[name.id]))}; its choices are "
                                            + ", ".join(map(repr, slots[name.id])))
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in HELPERS or node.keywords:
            shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise RuleError(f"call of {shown!r}: a rule may call only " + ", ".join(HELPERS))
        if node.func.id in ("count", "abs") and len(node.args) != 1:
            raise RuleError(f"{node.func.id}() takes one argument")
        if node.func.id in ("min", "max") and not node.args:
            raise RuleError(f"{node.func.id}() takes at least one argument")
        for arg in node.args:
            _check(arg, slots)
        return
    raise RuleError(f"{ast.unparse(node)!r} is not allowed in a rule (allowed: {_SHOWN})")


def _eval(node: ast.AST, spec: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return {"True": True, "False": False}.get(node.id, spec.get(node.id))
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, spec) for e in node.elts)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, spec) for v in node.values)
        return any(_eval(v, spec) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, spec))
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_eval(node.left, spec), _eval(node.right, spec))
    if isinstance(node, ast.IfExp):
        return _eval(node.body, spec) if _eval(node.test, spec) else _eval(node.orelse, spec)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, spec)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, spec)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        args = [_eval(a, spec) for a in node.args]
        name = node.func.id  # type: ignore[attr-defined]  # checked by _check
        if name == "count":
            return sum(1 for v in spec.values() if v == args[0])
        if name == "abs":
            return abs(args[0])
        fn = min if name == "min" else max
        return fn(args[0]) if len(args) == 1 and isinstance(args[0], tuple) else fn(*args)
    raise RuleError(f"{ast.unparse(node)!r} is not allowed in a rule")  # unreachable after _check
