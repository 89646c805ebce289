"""``keep_if``: keep documents for which an expression over their meta fields holds.

The expression is parsed with :mod:`ast` and evaluated by walking a small whitelist of
node types -- comparisons (``< <= > >= == != in``, chained), ``and`` / ``or`` / ``not``,
names, dotted names, constants, lists and tuples of constants, and unary minus. Nothing
is ever passed to ``eval``; anything else (calls, attributes of objects, subscripts,
arithmetic) is rejected when the config is loaded.

    - step: keep_if
      expr: 'quality > 0.5 and lang == "en"'
"""
from __future__ import annotations

import ast
import operator
from typing import Any

from curate.pipeline.step import Filter, register

_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_MISSING = object()


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def check(node: ast.AST) -> None:
    """Raise ValueError unless every node of the tree is allowed."""
    if isinstance(node, ast.Expression):
        return check(node.body)
    if isinstance(node, ast.BoolOp):
        return [check(v) for v in node.values] and None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        return check(node.operand)
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ValueError("unsupported comparison")
        return [check(v) for v in (node.left, *node.comparators)] and None
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name is None or "__" in name:
            raise ValueError("only plain names and dotted names may be read")
        return None
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [check(e) for e in node.elts] and None
    raise ValueError(f"{type(node).__name__} is not allowed")


def evaluate(node: ast.AST, lookup) -> Any:
    """Value of a checked expression; ``lookup(name)`` returns a field or ``_MISSING``.
    A comparison that touches a missing field is False."""
    if isinstance(node, ast.Expression):
        return evaluate(node.body, lookup)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(evaluate(v, lookup) for v in node.values)
        return any(evaluate(v, lookup) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, lookup)
        if isinstance(node.op, ast.Not):
            return not value
        return _MISSING if value is _MISSING else -value
    if isinstance(node, ast.Compare):
        left = evaluate(node.left, lookup)
        for op, right_node in zip(node.ops, node.comparators):
            right = evaluate(right_node, lookup)
            if left is _MISSING or right is _MISSING:
                return False
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:  # e.g. None < 0.5: a value of the wrong type fails the test
                return False
            left = right
        return True
    if isinstance(node, (ast.Name, ast.Attribute)):
        return lookup(_dotted(node))
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [evaluate(e, lookup) for e in node.elts]
    raise ValueError(f"{type(node).__name__} is not allowed")


def compile_expr(expr: str) -> ast.Expression:
    """Parse and check ``expr``; ValueError with a one-line message when it is not allowed."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"keep_if: cannot parse {expr!r}: {e.msg}") from None
    try:
        check(tree)
    except ValueError as e:
        raise ValueError(f"keep_if: {e} in {expr!r}") from None
    return tree


@register("keep_if")
class KeepIf(Filter):
    """Keep documents for which ``expr`` is true. Names are meta fields (dots walk nested
    fields; ``text``, ``id``, ``source`` are the document's own); ``true``/``false``/``null``
    and Python's ``True``/``False``/``None`` are constants. A comparison with a missing field
    is false, so ``keep_if: quality > 0.5`` removes unscored documents."""

    _CONSTANTS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}

    def __init__(self, expr: str):
        super().__init__()
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError("keep_if needs a non-empty 'expr'")
        self.expr = expr
        self.tree = compile_expr(expr)

    def reason(self, doc):
        def lookup(name: str):
            if name in self._CONSTANTS:
                return self._CONSTANTS[name]
            return doc.get(name, _MISSING)

        return None if evaluate(self.tree, lookup) else f"keep_if false: {self.expr}"
