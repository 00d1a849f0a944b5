"""Translate REDCap branching logic and calculations into the expression language (and the
mapping both ways: :mod:`consortia.standards.redcap_logic_writer` writes it back).

REDCap writes ``[age] >= 18 and [sex] = '1'``; a study writes ``age >= 18 and sex == '1'``.
:func:`logic_to_expression` reads REDCap logic into a small tree and lowers it to Python
syntax, using each field's type: a choice code is text (``[sex] = 1`` becomes
``sex == '1'``), a number is a number, a yes/no field is a boolean, ``[chk(2)] = '1'`` is
``chk['2']`` and ``[x] = ''`` is ``is_missing(x)``.
:func:`~consortia.standards.redcap_logic_writer.expression_to_logic` goes back.
Both raise :class:`~consortia.exceptions.ExpressionError` for what has no equivalent
(``[event][field]``, smart variables such as ``[user-name]``, piping options such as
``[sex:label]``, other functions than those below); the caller turns that into a warning.

Operators: ``=`` / ``==``, ``<>`` / ``!=``, ``< <= > >=``, ``and``, ``or`` (any case),
``+ - * /`` and ``^`` (with a constant exponent). Functions: ``if``, ``datediff``,
``round``, ``abs``, ``min``, ``max``, ``sum``, ``sqrt`` (``x ** 0.5``), ``mod`` (``%``).

REDCap's ``datediff(d1, d2, unit, [format], [signed])`` counts from d1 to d2 and returns the
absolute value unless ``signed`` is true. Units are case sensitive: ``y`` years, ``M``
months, ``d`` days, ``h`` hours, ``m`` minutes, ``s`` seconds. So::

    datediff([a], [b], 'd', true)   <->  days_between(a, b)
    datediff([a], [b], 'y')         <->  abs(years_between(a, b))
    datediff([a], 'today', 'M')     <->  abs(months_between(a, today()))
    if([a] <> '', [a], [b])         <->  coalesce(a, b)

Known differences: REDCap treats a blank field as ``''``, so ``[x] <> '1'`` is true when
``x`` is blank, while in the expression language every comparison with a missing value is
false; REDCap divides days by 365.2425 and 30.44 for years and months, the expression
language by 365.25 and 30.4375.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NoReturn

from consortia.domain import expressions
from consortia.domain.study import NUMERIC_TYPES, ItemType
from consortia.exceptions import ExpressionError

__all__ = ["logic_to_expression"]

# ------------------------------------------------------------------ REDCap -> tree

_TOKEN: Final = re.compile(
    r"""(?P<space>\s+)
    |(?P<field>\[[^\[\]]*\])
    |(?P<number>\d+(?:\.\d*)?|\.\d+)
    |(?P<string>'[^']*'|"[^"]*")
    |(?P<op><>|!=|>=|<=|==|=|<|>|\+|-|\*|/|\^|\(|\)|,)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)""",
    re.VERBOSE,
)
_FIELD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\(([^()]+)\))?$")
_COMPARE_OPS: Final = ("=", "==", "<>", "!=", "<", "<=", ">", ">=")
_EQUALITY: Final = ("=", "==", "<>", "!=")
_DATE_FORMATS: Final = frozenset({"ymd", "mdy", "dmy"})
_UNITS: Final = {
    "y": ("years_between", 1),
    "M": ("months_between", 1),
    "d": ("days_between", 1),
    "h": ("days_between", 24),
    "m": ("days_between", 1440),
    "s": ("days_between", 86400),
}


@dataclass(frozen=True)
class _Field:
    name: str
    code: str | None
    column: int


@dataclass(frozen=True)
class _Literal:
    kind: str  # "number", "string" or "boolean"
    text: str
    column: int


@dataclass(frozen=True)
class _Operation:
    op: str  # a comparison, arithmetic or "and"/"or" operator, or "neg"
    operands: tuple[_Node, ...]
    column: int


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    column: int


_Node = _Field | _Literal | _Operation | _Call


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int  # 1-based
    end: int  # 0-based offset after the token


def _tokens(logic: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(logic):
        match = _TOKEN.match(logic, position)
        if match is None:
            char = logic[position]
            message = {
                "'": "unterminated string",
                '"': "unterminated string",
                "[": "unclosed '['",
            }.get(char, f"unexpected character {char!r}")
            raise ExpressionError(message, logic, position + 1)
        kind = match.lastgroup or ""
        if kind != "space":
            token = _Token(kind, match.group(), position + 1, match.end())
            if kind == "word" and token.text.lower() in ("and", "or", "true", "false"):
                token = _Token("keyword", token.text.lower(), token.column, token.end)
            tokens.append(token)
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over REDCap logic: or < and < comparison < + - < * / < ^ < unary."""

    def __init__(self, logic: str) -> None:
        self.logic = logic
        self.tokens = _tokens(logic)
        self.index = 0

    def fail(self, message: str, column: int | None = None) -> NoReturn:
        if column is None:
            token = self.peek()
            column = token.column if token else len(self.logic) + 1
        raise ExpressionError(message, self.logic, column)

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def accept(self, *texts: str) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind in ("op", "keyword") and token.text in texts:
            self.index += 1
            return token
        return None

    def expect(self, text: str) -> None:
        if self.accept(text) is None:
            token = self.peek()
            self.fail(f"expected {text!r}, found {token.text if token else 'the end'!r}")

    def parse(self) -> _Node:
        if not self.tokens:
            self.fail("the logic is empty", 1)
        node = self.logical("or")
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return node

    def logical(self, op: str) -> _Node:
        operands = [self.logical("and") if op == "or" else self.comparison()]
        while self.accept(op):
            operands.append(self.logical("and") if op == "or" else self.comparison())
        if len(operands) == 1:
            return operands[0]
        return _Operation(op, tuple(operands), operands[0].column)

    def comparison(self) -> _Node:
        left = self.arithmetic(("+", "-"))
        token = self.accept(*_COMPARE_OPS)
        if token is None:
            return left
        return _Operation(token.text, (left, self.arithmetic(("+", "-"))), token.column)

    def arithmetic(self, ops: tuple[str, ...]) -> _Node:
        left = self.arithmetic(("*", "/")) if ops == ("+", "-") else self.power()
        while (token := self.accept(*ops)) is not None:
            right = self.arithmetic(("*", "/")) if ops == ("+", "-") else self.power()
            left = _Operation(token.text, (left, right), token.column)
        return left

    def power(self) -> _Node:
        base = self.unary()
        token = self.accept("^")
        if token is None:
            return base
        return _Operation("^", (base, self.power()), token.column)

    def unary(self) -> _Node:
        token = self.accept("-", "+")
        if token is None:
            return self.primary()
        operand = self.unary()
        return operand if token.text == "+" else _Operation("neg", (operand,), token.column)

    def primary(self) -> _Node:
        token = self.peek()
        if token is None:
            self.fail("the logic ends too early")
        self.index += 1
        if token.kind == "number":
            return _Literal("number", token.text, token.column)
        if token.kind == "string":
            return _Literal("string", token.text[1:-1], token.column)
        if token.kind == "keyword" and token.text in ("true", "false"):
            return _Literal("boolean", token.text, token.column)
        if token.kind == "field":
            return self.field(token)
        if token.kind == "word" and self.accept("("):
            args: list[_Node] = []
            if self.accept(")") is None:
                args.append(self.logical("or"))
                while self.accept(","):
                    args.append(self.logical("or"))
                self.expect(")")
            return _Call(token.text.lower(), tuple(args), token.column)
        if token.text == "(":
            node = self.logical("or")
            self.expect(")")
            return node
        self.fail(f"unexpected {token.text!r}", token.column)

    def field(self, token: _Token) -> _Field:
        following = self.peek()
        if (
            following is not None
            and following.kind == "field"
            and following.column == token.end + 1
        ):
            self.fail(
                f"{token.text}{following.text}: references to another event or repeat instance "
                "have no equivalent (a study has no event prefix in expressions)",
                token.column,
            )
        inner = token.text[1:-1].strip()
        match = _FIELD.match(inner)
        if match is None:
            if ":" in inner:
                reason = "is a piping option"
            elif "-" in inner:
                reason = "is a smart variable"
            else:
                reason = "is not a field reference"
            self.fail(f"{token.text} {reason} with no equivalent", token.column)
        code = match.group(2).strip() if match.group(2) else None
        return _Field(match.group(1).lower(), code, token.column)


# ------------------------------------------------------------------ tree -> expression

_PY_COMPARE: Final[Mapping[str, type[ast.cmpop]]] = {
    "=": ast.Eq,
    "==": ast.Eq,
    "<>": ast.NotEq,
    "!=": ast.NotEq,
    "<": ast.Lt,
    "<=": ast.LtE,
    ">": ast.Gt,
    ">=": ast.GtE,
}
_PY_ARITHMETIC: Final[Mapping[str, type[ast.operator]]] = {
    "+": ast.Add,
    "-": ast.Sub,
    "*": ast.Mult,
    "/": ast.Div,
}
#: Functions REDCap and the expression language share, with the same name and meaning
SAME_FUNCTIONS: Final = frozenset({"round", "abs", "min", "max", "sum"})


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", text.strip()) is not None


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Lowering:
    """Turns the REDCap tree into a Python ``ast`` tree, typed by the study's fields."""

    def __init__(self, logic: str, fields: Mapping[str, tuple[str, ItemType]]) -> None:
        self.logic = logic
        self.fields = fields

    def fail(self, message: str, node: _Node) -> NoReturn:
        raise ExpressionError(message, self.logic, node.column)

    def lookup(self, field: _Field) -> tuple[str, ItemType]:
        if field.name not in self.fields:
            self.fail(
                f"[{field.name}] is not a field of this dictionary, or was not imported", field
            )
        return self.fields[field.name]

    def lower(self, node: _Node) -> ast.expr:
        if isinstance(node, _Field):
            name, item_type = self.lookup(node)
            is_checkbox = item_type is ItemType.MULTICHOICE
            if node.code is None and is_checkbox:
                self.fail(f"checkbox [{node.name}] needs a code: [{node.name}(code)]", node)
            if node.code is not None and not is_checkbox:
                self.fail(f"[{node.name}({node.code})]: only checkbox fields take a code", node)
            target = ast.Name(id=name, ctx=ast.Load())
            if node.code is None:
                return target
            return ast.Subscript(value=target, slice=ast.Constant(node.code), ctx=ast.Load())
        if isinstance(node, _Literal):
            if node.kind == "boolean":
                return ast.Constant(node.text == "true")
            if node.kind == "string" and node.text == "":
                self.fail("an empty string only works in [x] = '' or [x] <> ''", node)
            return ast.Constant(_number(node.text) if node.kind == "number" else node.text)
        if isinstance(node, _Call):
            return self.call(node)
        if node.op in ("and", "or"):
            op: ast.boolop = ast.And() if node.op == "and" else ast.Or()
            return ast.BoolOp(op=op, values=[self.lower(operand) for operand in node.operands])
        if node.op == "neg":
            return ast.UnaryOp(op=ast.USub(), operand=self.lower(node.operands[0]))
        left, right = node.operands
        if node.op in _PY_COMPARE:
            return self.compare(node.op, left, right, node)
        if node.op == "^":
            number = (
                right.operands[0] if isinstance(right, _Operation) and right.op == "neg" else right
            )
            if not (isinstance(number, _Literal) and number.kind == "number"):
                self.fail("'^' needs a constant exponent, as in [height]^2", right)
            return ast.BinOp(left=self.lower(left), op=ast.Pow(), right=self.lower(right))
        return ast.BinOp(
            left=self.lower(left), op=_PY_ARITHMETIC[node.op](), right=self.lower(right)
        )

    def compare(self, op: str, left: _Node, right: _Node, node: _Node) -> ast.expr:
        equality = op in _EQUALITY
        field, literal = (left, right) if isinstance(left, _Field) else (right, left)
        if isinstance(literal, _Literal) and literal.kind == "string" and literal.text == "":
            if not equality or not isinstance(field, _Field) or field.code is not None:
                self.fail("an empty string only works in [x] = '' or [x] <> ''", node)
            missing = _call("is_missing", ast.Name(id=self.lookup(field)[0], ctx=ast.Load()))
            return missing if op in ("=", "==") else ast.UnaryOp(op=ast.Not(), operand=missing)
        if isinstance(field, _Field) and isinstance(literal, _Literal):
            name, item_type = self.lookup(field)
            if item_type is ItemType.MULTICHOICE and field.code is None:
                self.fail(f"checkbox [{field.name}] needs a code: [{field.name}(code)]", field)
            value = literal.text
            if field.code is not None:  # a checkbox option is '1' when ticked, '0' when not
                if not equality or value not in ("0", "1"):
                    self.fail(f"[{field.name}({field.code})] compares only with '1' or '0'", node)
                option = self.lower(field)
                ticked = (value == "1") == (op in ("=", "=="))
                return option if ticked else ast.UnaryOp(op=ast.Not(), operand=option)
            constant: str | int | float | bool = value
            if item_type is ItemType.BOOLEAN:
                if value.lower() not in ("0", "1", "true", "false"):
                    self.fail(f"yes/no field [{field.name}] compares with '1' or '0'", node)
                constant = value.lower() in ("1", "true")
            elif item_type in NUMERIC_TYPES:
                if not _is_number(value):
                    self.fail(f"[{field.name}] is a number; {value!r} is not", node)
                constant = _number(value.strip())
            elif literal.kind == "boolean":
                constant = literal.text == "true"
            comparison = ast.Compare(
                left=ast.Name(id=name, ctx=ast.Load()),
                ops=[_PY_COMPARE[op]()],
                comparators=[ast.Constant(constant)],
            )
            if field is right:  # keep the order in which REDCap wrote it
                comparison.left, comparison.comparators = ast.Constant(constant), [comparison.left]
            return comparison
        return ast.Compare(
            left=self.lower(left), ops=[_PY_COMPARE[op]()], comparators=[self.lower(right)]
        )

    def call(self, node: _Call) -> ast.expr:
        args = node.args
        if node.name == "if":
            if len(args) != 3:
                self.fail("if() takes three arguments: if(condition, then, else)", node)
            coalesced = self.coalesce(args)
            if coalesced is not None:
                return coalesced
            test, body, orelse = (self.lower(arg) for arg in args)
            return ast.IfExp(test=test, body=body, orelse=orelse)
        if node.name == "datediff":
            return self.datediff(node)
        if node.name in SAME_FUNCTIONS:
            return _call(node.name, *(self.lower(arg) for arg in args))
        if node.name == "sqrt" and len(args) == 1:
            return ast.BinOp(left=self.lower(args[0]), op=ast.Pow(), right=ast.Constant(0.5))
        if node.name == "mod" and len(args) == 2:
            return ast.BinOp(left=self.lower(args[0]), op=ast.Mod(), right=self.lower(args[1]))
        self.fail(f"REDCap function {node.name}() has no equivalent", node)

    def coalesce(self, args: tuple[_Node, ...]) -> ast.expr | None:
        """``if([a] <> '', [a], rest)`` is ``coalesce(a, rest)``."""
        test, body, rest = args
        if not (
            isinstance(test, _Operation)
            and test.op in ("<>", "!=")
            and isinstance(test.operands[0], _Field)
            and test.operands[0].code is None
            and test.operands[1] == _Literal("string", "", test.operands[1].column)
            and isinstance(body, _Field)
            and (body.name, body.code) == (test.operands[0].name, None)
        ):
            return None
        first, lowered_rest = self.lower(body), self.lower(rest)
        if (
            isinstance(lowered_rest, ast.Call)
            and isinstance(lowered_rest.func, ast.Name)
            and lowered_rest.func.id == "coalesce"
        ):
            return _call("coalesce", first, *lowered_rest.args)
        return _call("coalesce", first, lowered_rest)

    def datediff(self, node: _Call) -> ast.expr:
        args = node.args
        if not 3 <= len(args) <= 5:
            self.fail("datediff() takes datediff(date1, date2, unit, [format], [signed])", node)
        unit = args[2]
        if not (isinstance(unit, _Literal) and unit.kind == "string" and unit.text in _UNITS):
            self.fail("datediff() unit must be one of 'y', 'M', 'd', 'h', 'm', 's'", unit)
        signed = False
        for extra in args[3:]:
            text = extra.text.lower() if isinstance(extra, _Literal) else ""
            if text in ("true", "false"):
                signed = text == "true"
            elif text not in _DATE_FORMATS:
                self.fail("datediff() takes a format ('ymd', 'mdy', 'dmy') and true/false", extra)
        function, factor = _UNITS[unit.text]
        result: ast.expr = _call(function, self.date(args[0]), self.date(args[1]))
        if not signed:
            result = _call("abs", result)
        if factor != 1:
            result = ast.BinOp(left=result, op=ast.Mult(), right=ast.Constant(factor))
        return result

    def date(self, node: _Node) -> ast.expr:
        if isinstance(node, _Literal) and node.kind == "string":
            if node.text.lower() == "today":
                return _call("today")
            if node.text.lower() == "now":
                self.fail("datediff() with 'now' has no equivalent; use 'today'", node)
        return self.lower(node)


MAX_LOGIC_LENGTH = 10_000
MAX_LOGIC_DEPTH = 40


def logic_to_expression(logic: str, fields: Mapping[str, tuple[str, ItemType]]) -> str:
    """Translate REDCap logic; ``fields`` maps each REDCap field name to (name, type).

    >>> fields = {"age": ("age", ItemType.INTEGER), "sex": ("sex", ItemType.CHOICE)}
    >>> logic_to_expression("[age] >= '18' AND [sex] = 1", fields)
    "age >= 18 and sex == '1'"
    """
    if len(logic) > MAX_LOGIC_LENGTH:
        raise ExpressionError(f"logic longer than {MAX_LOGIC_LENGTH} characters", logic, 0)
    depth = 0
    for column, char in enumerate(logic, start=1):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth > MAX_LOGIC_DEPTH:
            raise ExpressionError(
                f"parentheses nested deeper than {MAX_LOGIC_DEPTH} levels", logic, column
            )
    try:
        tree = _Parser(logic).parse()
        source = ast.unparse(
            ast.fix_missing_locations(ast.Expression(_Lowering(logic, fields).lower(tree)))
        )
    except RecursionError:
        raise ExpressionError("logic is nested too deeply", logic, 0) from None
    try:
        expressions.parse(source)
    except ExpressionError as error:
        raise ExpressionError(error.message, logic, 0) from None
    return source
