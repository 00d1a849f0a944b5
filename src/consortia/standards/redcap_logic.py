"""Translate REDCap branching logic and calculations to and from the expression language.

REDCap writes ``[age] >= 18 and [sex] = '1'``; a study writes ``age >= 18 and sex == '1'``.
:func:`logic_to_expression` reads REDCap logic into a small tree and lowers it to Python
syntax, using each field's type: a choice code is text (``[sex] = 1`` becomes
``sex == '1'``), a number is a number, a yes/no field is a boolean, ``[chk(2)] = '1'`` is
``chk['2']`` and ``[x] = ''`` is ``is_missing(x)``. :func:`expression_to_logic` goes back.
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

__all__ = ["expression_to_logic", "logic_to_expression"]

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
_SAME_FUNCTIONS: Final = frozenset({"round", "abs", "min", "max", "sum"})


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
        if node.name in _SAME_FUNCTIONS:
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


# ------------------------------------------------------------------ expression -> REDCap

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
        if name in _SAME_FUNCTIONS:
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
