"""Writing an expression as REDCap branching logic or a calculation: the way back of
:mod:`consortia.standards.redcap_logic` (which documents the mapping and its known differences).

:func:`expression_to_logic` walks the expression's syntax tree and writes REDCap text with
the fewest parentheses its precedence needs, quoting codes and renaming items for REDCap;
what REDCap cannot say raises :class:`~consortia.exceptions.ExpressionError`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Final, NoReturn

from consortia.domain.study import ItemType
from consortia.exceptions import ExpressionError
from consortia.standards.redcap_logic import SAME_FUNCTIONS

__all__ = ["expression_to_logic"]

_P_OR, _P_AND, _P_CMP, _P_ADD, _P_MUL, _P_UNARY, _P_POW, _P_ATOM = range(1, 9)
_REDCAP_COMPARE: Final[Mapping[type[ast.cmpop], str]] = {
    ast.Eq: "=",
    ast.NotEq: "<>",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_NEGATED: Final[Mapping[type[ast.cmpop], type[ast.cmpop]]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.LtE: ast.Gt,
    ast.Gt: ast.LtE,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_DATEDIFF_UNITS: Final = {"days_between": "d", "months_between": "M", "years_between": "y"}
_Text = tuple[str, int]  # REDCap text and its precedence


def _quote(value: str, source: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ExpressionError(
        f"text {value!r} holds both kinds of quote; REDCap cannot write it", source
    )


class _Emitter:
    def __init__(self, source: str, types: Mapping[str, ItemType], names: Mapping[str, str]):
        self.source, self.types, self.names = source, types, names

    def fail(self, message: str) -> NoReturn:
        raise ExpressionError(message, self.source)

    def field(self, node: ast.expr) -> tuple[str, ItemType]:
        if not isinstance(node, ast.Name):
            self.fail(f"{ast.unparse(node)!r} must be an item name to be written for REDCap")
        return self.names.get(node.id, node.id), self.types.get(node.id, ItemType.TEXT)

    def option(self, node: ast.Subscript) -> str:
        name, _ = self.field(node.value)
        code = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if not isinstance(code, str | int) or isinstance(code, bool):
            self.fail("a multichoice option needs a constant code")
        return f"[{name}({code})]"

    def checked(self, call: ast.Call) -> ast.Subscript:
        """``contains(mc, 'c')`` as ``mc['c']``."""
        selection, code = call.args
        if not isinstance(code, ast.Constant):
            self.fail("contains() needs a constant code to be written for REDCap")
        return ast.Subscript(value=selection, slice=ast.Constant(str(code.value)), ctx=ast.Load())

    def condition(self, node: ast.expr) -> _Text:
        return self.truth(node, negate=False)

    def negation(self, node: ast.expr) -> _Text:
        return self.truth(node, negate=True)

    def truth(self, node: ast.expr, *, negate: bool) -> _Text:
        """``node`` as a REDCap condition, or its negation (REDCap logic has no 'not')."""
        checked, missing = ("'0'", "<>") if negate else ("'1'", "=")
        if isinstance(node, ast.Name):
            name, item_type = self.field(node)
            if item_type is not ItemType.BOOLEAN:
                if negate:
                    self.fail(f"'not {node.id}' has no REDCap equivalent; compare it")
                self.fail(f"{node.id!r} alone is not a condition in REDCap; compare it")
            return f"[{name}] = {checked}", _P_CMP
        if isinstance(node, ast.Subscript):
            return f"{self.option(node)} = {checked}", _P_CMP
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.truth(node.operand, negate=not negate)
        if isinstance(node, ast.BoolOp):
            return self.boolean(node.op, node.values, negate=negate)
        if isinstance(node, ast.Compare):
            return self.compare(node, negate=negate)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "is_missing":
                return f"[{self.field(node.args[0])[0]}] {missing} ''", _P_CMP
            if node.func.id == "contains":
                return self.truth(self.checked(node), negate=negate)
        if negate:
            self.fail(f"REDCap logic has no 'not' for {ast.unparse(node)!r}")
        return self.value(node)

    def boolean(self, op: ast.boolop, values: list[ast.expr], *, negate: bool) -> _Text:
        is_and = isinstance(op, ast.And) != negate  # De Morgan when negated
        precedence = _P_AND if is_and else _P_OR
        parts = [  # 'a or (b and c)': REDCap reads it either way, people read it better
            self.wrap(self.negation(v) if negate else self.condition(v), _P_AND + 1) for v in values
        ]
        return (" and " if is_and else " or ").join(parts), precedence

    def compare(self, node: ast.Compare, *, negate: bool) -> _Text:
        operands = [node.left, *node.comparators]
        pairs = [
            self.pair(operands[i], op, operands[i + 1], negate) for i, op in enumerate(node.ops)
        ]
        if len(pairs) == 1:
            return pairs[0]
        precedence = _P_OR if negate else _P_AND
        return (" or " if negate else " and ").join(
            self.wrap(pair, _P_AND + 1) for pair in pairs
        ), precedence

    def pair(self, left: ast.expr, op: ast.cmpop, right: ast.expr, negate: bool) -> _Text:
        kind = _NEGATED[type(op)] if negate else type(op)
        if kind in (ast.In, ast.NotIn):
            return self.membership(left, right, kind is ast.In)
        if kind not in _REDCAP_COMPARE:
            self.fail(f"{type(op).__name__} has no REDCap equivalent")
        sides = [self.side(left, right), self.side(right, left)]
        return f"{sides[0]} {_REDCAP_COMPARE[kind]} {sides[1]}", _P_CMP

    def side(self, node: ast.expr, other: ast.expr) -> str:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, bool)
            and isinstance(other, ast.Name)
            and self.types.get(other.id) is ItemType.BOOLEAN
        ):
            return "'1'" if node.value else "'0'"
        return self.wrap(self.value(node), _P_CMP + 1)

    def membership(self, left: ast.expr, right: ast.expr, inside: bool) -> _Text:
        if isinstance(right, ast.Name) and isinstance(left, ast.Constant):
            option = ast.Subscript(value=right, slice=ast.Constant(str(left.value)), ctx=ast.Load())
            return self.condition(option) if inside else self.negation(option)
        if isinstance(right, ast.List | ast.Tuple | ast.Set) and right.elts:
            subject = self.wrap(self.value(left), _P_CMP + 1)
            parts = [
                f"{subject} {'=' if inside else '<>'} {self.wrap(self.value(e), _P_CMP + 1)}"
                for e in right.elts
            ]
            precedence = _P_OR if inside else _P_AND
            return (" or " if inside else " and ").join(parts), precedence
        self.fail(f"{ast.unparse(right)!r} after 'in' has no REDCap equivalent")

    @staticmethod
    def wrap(text: _Text, minimum: int) -> str:
        return text[0] if text[1] >= minimum else f"({text[0]})"

    def value(self, node: ast.expr) -> _Text:
        if isinstance(node, ast.Name):
            return f"[{self.field(node)[0]}]", _P_ATOM
        if isinstance(node, ast.Subscript):
            return self.option(node), _P_ATOM
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return ("1" if node.value else "0"), _P_ATOM
            if isinstance(node.value, str):
                return _quote(node.value, self.source), _P_ATOM
            if isinstance(node.value, int | float):
                return repr(node.value), _P_ATOM
            self.fail(f"constant {node.value!r} has no REDCap equivalent")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return "-" + self.wrap(self.value(node.operand), _P_UNARY), _P_UNARY
            if isinstance(node.op, ast.UAdd):
                return self.value(node.operand)
            return self.condition(node)
        if isinstance(node, ast.BoolOp | ast.Compare):
            return self.condition(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.IfExp):
            parts = (self.condition(node.test), self.value(node.body), self.value(node.orelse))
            return f"if({', '.join(part[0] for part in parts)})", _P_ATOM
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node.func.id, node)
        self.fail(f"{ast.unparse(node)!r} has no REDCap equivalent")

    def binary(self, node: ast.BinOp) -> _Text:
        left, right = self.value(node.left), self.value(node.right)
        if isinstance(node.op, ast.Mod):
            return f"mod({left[0]}, {right[0]})", _P_ATOM
        if isinstance(node.op, ast.Pow):
            if isinstance(node.right, ast.Constant) and node.right.value == 0.5:
                return f"sqrt({left[0]})", _P_ATOM
            return f"{self.wrap(left, _P_POW + 1)}^{self.wrap(right, _P_POW)}", _P_POW
        symbols = {ast.Add: ("+", _P_ADD), ast.Sub: ("-", _P_ADD)}
        symbols |= {ast.Mult: ("*", _P_MUL), ast.Div: ("/", _P_MUL)}
        if type(node.op) not in symbols:
            self.fail(f"operator in {ast.unparse(node)!r} has no REDCap equivalent")
        symbol, precedence = symbols[type(node.op)]
        text = f"{self.wrap(left, precedence)} {symbol} {self.wrap(right, precedence + 1)}"
        return text, precedence

    def call(self, name: str, node: ast.Call) -> _Text:
        args = node.args
        if name in _DATEDIFF_UNITS or (
            name == "abs"
            and len(args) == 1
            and isinstance(args[0], ast.Call)
            and isinstance(args[0].func, ast.Name)
            and args[0].func.id in _DATEDIFF_UNITS
        ):
            inner = node if name in _DATEDIFF_UNITS else args[0]
            assert isinstance(inner, ast.Call)
            assert isinstance(inner.func, ast.Name)
            dates = ", ".join(self.date(arg) for arg in inner.args)
            signed = ", true" if name in _DATEDIFF_UNITS else ""
            return f"datediff({dates}, '{_DATEDIFF_UNITS[inner.func.id]}'{signed})", _P_ATOM
        if name in SAME_FUNCTIONS:
            return f"{name}({', '.join(self.value(arg)[0] for arg in args)})", _P_ATOM
        if name == "coalesce":
            text = self.value(args[-1])[0]
            for arg in reversed(args[:-1]):
                field = self.field(arg)[0]
                text = f"if([{field}] <> '', [{field}], {text})"
            return text, _P_ATOM
        if name in ("is_missing", "contains"):
            return self.condition(node)
        self.fail(f"{name}() has no REDCap equivalent")

    def date(self, node: ast.expr) -> str:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "today"
        ):
            return "'today'"
        return self.value(node)[0]


def expression_to_logic(
    source: str,
    types: Mapping[str, ItemType],
    names: Mapping[str, str] | None = None,
    *,
    condition: bool = True,
) -> str:
    """Write an expression as REDCap logic (``condition=False`` for a calculation).

    ``types`` gives each item's type; ``names`` renames items for REDCap (default: as is).

    >>> expression_to_logic("sex == 'F' and not symptoms['2']",
    ...                     {"sex": ItemType.CHOICE, "symptoms": ItemType.MULTICHOICE})
    "[sex] = 'F' and [symptoms(2)] = '0'"
    """
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as error:
        raise ExpressionError(f"syntax error: {error.msg}", source) from None
    emitter = _Emitter(source, types, names or {})
    return (emitter.condition(tree) if condition else emitter.value(tree))[0]
