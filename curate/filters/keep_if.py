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

_MISSING = object()
MAX_EXPR_CHARS = 1_000_000  # a longer expression (e.g. a huge id list) belongs in a file, not a config
MAX_DEPTH = 100  # nesting of the expression tree


class _Literal:
    """A list, tuple or set of constants, built once when the expression is compiled:
    ``values`` for comparisons, ``members`` (a frozenset) for fast ``in``."""

    __slots__ = ("values", "members")

    def __init__(self, values: list):
        self.values = values
        try:
            self.members = frozenset(values)
        except TypeError:  # an unhashable element: fall back to scanning the list
            self.members = None

    def contains(self, item) -> bool:
        if self.members is not None:
            try:
                return item in self.members
            except TypeError:  # an unhashable item (a list from meta) cannot equal a hashable member
                return False
        return item in self.values


def _in(a, b) -> bool:
    return b.contains(a) if isinstance(b, _Literal) else a in b


_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: _in, ast.NotIn: lambda a, b: not _in(a, b),
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def check(node: ast.AST, depth: int = 0) -> None:
    """Raise ValueError unless every node of the tree is allowed and it nests at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    if isinstance(node, ast.Expression):
        return check(node.body, depth)
    if isinstance(node, ast.BoolOp):
        return [check(v, depth + 1) for v in node.values] and None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        return check(node.operand, depth + 1)
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ValueError("unsupported comparison")
        return [check(v, depth + 1) for v in (node.left, *node.comparators)] and None
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name is None or "__" in name:
            raise ValueError("only plain names and dotted names may be read")
        return None
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [check(e, depth + 1) for e in node.elts] and None
    raise ValueError(f"{type(node).__name__} is not allowed")


def _constant(node: ast.AST):
    """The value of a constant, negated constant or list of them; ``_MISSING`` otherwise."""
    if isinstance(node, ast.Constant):
        return node.value.values if isinstance(node.value, _Literal) else node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else _MISSING
    return _MISSING


class _FreezeLiterals(ast.NodeTransformer):
    """Replace every list/tuple/set of constants (innermost first) by one prebuilt
    :class:`_Literal`, so that a long list is not rebuilt for every document."""

    def _literal(self, node):
        self.generic_visit(node)
        values = [_constant(e) for e in node.elts]
        return ast.Constant(_Literal(values)) if all(v is not _MISSING for v in values) else node

    visit_List = visit_Tuple = visit_Set = _literal


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
            if isinstance(left, _Literal):
                left = left.values
            if isinstance(right, _Literal) and type(op) not in (ast.In, ast.NotIn):
                right = right.values
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


def short(expr: str, chars: int = 80) -> str:
    """``expr`` cut to ``chars`` characters for messages and reasons."""
    return expr if len(expr) <= chars else f"{expr[:chars]}... ({len(expr)} chars)"


def compile_expr(expr: str) -> ast.Expression:
    """Parse and check ``expr`` (at most MAX_EXPR_CHARS characters, MAX_DEPTH deep) and
    freeze its literals; ValueError with a one-line message when it is not allowed."""
    if len(expr) > MAX_EXPR_CHARS:
        raise ValueError(f"keep_if: expression of {len(expr):,} characters; the limit is {MAX_EXPR_CHARS:,}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"keep_if: cannot parse {short(expr)!r}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"keep_if: {short(expr)!r} is nested too deeply") from None
    try:
        check(tree)
    except RecursionError:
        raise ValueError(f"keep_if: {short(expr)!r} is nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"keep_if: {e} in {short(expr)!r}") from None
    return _FreezeLiterals().visit(tree)


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
        self.false_reason = f"keep_if false: {short(expr)}"  # one string shared by every removed document

    def reason(self, doc):
        def lookup(name: str):
            if name in self._CONSTANTS:
                return self._CONSTANTS[name]
            return doc.get(name, _MISSING)

        return None if evaluate(self.tree, lookup) else self.false_reason
