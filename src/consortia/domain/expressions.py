"""A small, safe expression language with Python syntax.

Study definitions use it for ``show_if``, edit checks and derived variables::

    age >= 18 and sex == 'F'
    days_between(infusion_date, progression_date)
    contains(symptoms, 'fever') or symptoms['2']
    coalesce(pfs_date, last_contact)

:func:`parse` reads the source with :mod:`ast` (``mode="eval"``: one expression, no
statements) and builds its own evaluator from a whitelist of constructs, refusing anything
else with an :class:`~consortia.exceptions.ExpressionError` whose ``column`` is 1-based and
counted in characters from the start of the source. Nothing is ``eval``-ed or compiled, no
attribute is read, and nothing outside
:data:`~consortia.domain.expression_functions.FUNCTIONS` is called.

Semantics, chosen for clinical data where values are often missing:

* A missing value is ``None``. A name absent from ``values``, an empty string and an empty
  selection are missing too, and so is the literal ``''``.
* Every comparison with a missing operand is False (``==``, ``!=``, ``<``, ``in`` and
  ``not in`` alike), so ``x != 1`` is False when ``x`` is missing: ask ``is_missing(x)``.
  Comparing with a literal ``None`` or ``''`` is refused when parsing, as it is never true.
* ``and``, ``or`` and ``not`` treat a missing value as False and always give True or False
  (``not x`` is True when ``x`` is missing); ``a if c else b`` reads ``c`` the same way.
* Arithmetic with a missing operand gives None, and so does ``/``, ``//`` or ``%`` by zero.
  ``**`` takes only a constant exponent between -10 and 10 (``weight / height ** 2``).
* Numbers are ``int``, ``float``, ``Decimal`` and ``bool`` (0/1, as in Python); a Decimal
  meeting a float is computed in float. NaN is a number, not a missing value.
* Text ``+`` text concatenates. Other arithmetic on text, dates or selections, and ordering
  unrelated types (``'a' < 1``), raise ExpressionError naming the types.
* Dates are ``datetime.date`` or ``datetime.datetime``; an ISO string (``'2024-01-31'``) is
  accepted wherever it meets a date or is passed to a date function. A date meeting a
  datetime counts as its midnight. There is no date arithmetic: use ``days_between``.
* A multichoice item's value is a list, tuple, set or frozenset of codes (text or whole
  numbers, compared as text). ``symptoms['2']``, ``contains(symptoms, 2)`` and
  ``'2' in symptoms`` are True when code ``'2'`` is selected.
* Evaluation raises nothing but ExpressionError. A value of an unsupported type is refused
  when its name is read, without being touched beyond ``type()``.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, NoReturn, cast

from consortia.domain.expression_functions import FUNCTIONS
from consortia.domain.expression_values import (
    MAX_EXPONENT,
    EvaluationProblem,
    arithmetic,
    compare_values,
    is_number,
    normalise,
    raise_to_power,
    selected,
    truthy,
    unary,
)
from consortia.exceptions import ExpressionError

__all__ = ["Expression", "check_names", "parse"]

MAX_SOURCE_LENGTH: Final = 10_000
MAX_DEPTH: Final = 50


# ------------------------------------------------------------------ evaluation


class _Context:
    """One evaluation: the values, the day, and each name's value once normalised."""

    __slots__ = ("cache", "source", "today", "values")

    def __init__(self, values: Mapping[str, object], today: date | None, source: str) -> None:
        self.values, self.today, self.source = values, today, source
        self.cache: dict[str, object] = {}

    def lookup(self, name: str) -> object:
        cache = self.cache
        if name in cache:
            return cache[name]
        try:
            raw = self.values[name]
        except KeyError:
            raw = None
        if type(raw) in _PLAIN:  # the common case, without a call
            cache[name] = raw
            return raw
        try:
            value = cache[name] = normalise(raw)
        except EvaluationProblem as problem:
            raise EvaluationProblem(f"{name!r}: {problem}") from None
        return value


#: Types whose values normalise returns unchanged
_PLAIN: Final = frozenset({type(None), bool, int, float, date, datetime})


_Evaluator = Callable[[_Context], object]


def _name(name: str, column: int) -> _Evaluator:
    """The evaluator of a name: its value (a problem with the value is reported at the name)."""

    def evaluate(context: _Context) -> object:
        try:
            return context.lookup(name)
        except EvaluationProblem as problem:
            raise ExpressionError(str(problem), context.source, column) from None

    return evaluate


def _at(column: int, compute: _Evaluator) -> _Evaluator:
    """The evaluator of one construct: problems it meets are reported at its column."""

    def evaluate(context: _Context) -> object:
        try:
            return compute(context)
        except EvaluationProblem as problem:
            raise ExpressionError(str(problem), context.source, column) from None
        except OverflowError:  # a whole number too large for a float, deep in a function
            raise ExpressionError("a number is too large", context.source, column) from None

    return evaluate


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression; evaluate it as often as needed.

    >>> e = parse("age >= 18 and sex == 'F'")
    >>> sorted(e.names), e.evaluate({"age": 30, "sex": "F"}), e.evaluate({"sex": "F"})
    (['age', 'sex'], True, False)
    """

    source: str
    names: frozenset[str]
    functions: frozenset[str]
    _evaluator: _Evaluator = field(repr=False, compare=False)
    _name_columns: tuple[tuple[str, int], ...] = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, object], *, today: date | None = None) -> object:
        """The value of the expression for item ``values`` (a name not in them is None).

        >>> parse("days_between(start, end)").evaluate({"start": "2024-01-01",
        ...                                              "end": date(2024, 3, 1)})
        60
        """
        return self._evaluator(_Context(values, today, self.source))

    def column_of(self, name: str) -> int:
        """The 1-based column of the first use of ``name``; 0 when it is not used.

        >>> parse("a + b * b").column_of("b")
        5
        """
        return next((column for used, column in self._name_columns if used == name), 0)


# ---------------------------------------------------------------------------- parsing

_BINARY: Final = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}
_COMPARISONS: Final = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_REFUSED: Final[dict[type[ast.AST], str]] = {
    ast.BitAnd: "'&' is not allowed; use 'and'",
    ast.BitOr: "'|' is not allowed; use 'or'",
    ast.BitXor: "'^' is not allowed; use ** for powers",
    ast.LShift: "'<<' is not allowed",
    ast.RShift: "'>>' is not allowed",
    ast.MatMult: "'@' is not allowed",
    ast.Invert: "'~' is not allowed; use 'not'",
    ast.Is: "'is' is not allowed; use == or is_missing(x)",
    ast.IsNot: "'is not' is not allowed; use != or is_missing(x)",
    ast.Lambda: "lambda is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    **dict.fromkeys(
        (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp),
        "comprehensions are not allowed",
    ),
}
_SUBSCRIPT_RULE: Final = "subscripts are only allowed on item names with a constant code"
_LIST_RULE: Final = "lists may only hold constants, such as [1, 2, 'a']"
_LEADING_SPACE: Final = re.compile(r"[ \t\f\r\n]*")
_NEWLINE: Final = re.compile(r"\r\n|\r|\n")


class _Builder:
    """Checks an ``ast`` tree construct by construct and builds the evaluator of each."""

    def __init__(self, source: str, prefix: int) -> None:
        self.source, self.prefix = source, prefix
        text = source[prefix:]
        self.starts = [0] + [match.end() for match in _NEWLINE.finditer(text)]
        self.lines = [
            text[a:b] for a, b in zip(self.starts, [*self.starts[1:], len(text)], strict=True)
        ]
        self.name_columns: list[tuple[str, int]] = []
        self.functions: set[str] = set()

    def position(self, lineno: int, offset: int) -> int:
        """The 1-based column in the whole source of a line and a 0-based character offset."""
        if lineno > len(self.lines):
            return len(self.source) + 1
        if offset < 0:  # "at the end of this line"
            offset = len(self.lines[lineno - 1].rstrip("\r\n"))
        column = self.prefix + self.starts[lineno - 1] + offset + 1
        return max(1, min(column, len(self.source) + 1))

    def column(self, node: ast.AST, *, end: bool = False) -> int:
        lineno = cast(int, getattr(node, "end_lineno" if end else "lineno", 1))
        utf8_offset = cast(int, getattr(node, "end_col_offset" if end else "col_offset", 0))
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        prefix = line.encode("utf-8", "surrogatepass")[:utf8_offset]
        return self.position(lineno, len(prefix.decode("utf-8", "ignore")))

    def fail(self, node: ast.AST, message: str) -> NoReturn:
        raise ExpressionError(message, self.source, self.column(node))

    def build(self, node: ast.expr) -> _Evaluator:
        column = self.column(node)
        if isinstance(node, ast.Constant):
            value = self.constant(node)
            return lambda _: value
        if isinstance(node, ast.Name):
            return _name(self.name(node), column)
        if isinstance(node, ast.BoolOp):
            return self.logical(isinstance(node.op, ast.And), [self.build(v) for v in node.values])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Invert):
                self.fail(node, _REFUSED[ast.Invert])
            operand = self.build(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda context: not truthy(operand(context))
            negate = isinstance(node.op, ast.USub)
            return _at(column, lambda context: unary(negate, operand(context)))
        if isinstance(node, ast.BinOp):
            return self.binary(node, column)
        if isinstance(node, ast.Compare):
            return self.comparison(node, column)
        if isinstance(node, ast.IfExp):
            test, body, orelse = (
                self.build(node.test),
                self.build(node.body),
                self.build(node.orelse),
            )
            return lambda context: body(context) if truthy(test(context)) else orelse(context)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = tuple(self.literal(element) for element in node.elts)
            return lambda _: items
        if isinstance(node, ast.Call):
            return self.call(node, column)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, column)
        if isinstance(node, ast.Attribute):
            dot = self.source.find(".", self.column(node.value, end=True) - 1)
            message = "attribute access is not allowed"
            raise ExpressionError(message, self.source, dot + 1 if dot >= 0 else column)
        self.fail(node, _REFUSED.get(type(node), f"{type(node).__name__} is not allowed"))

    def constant(self, node: ast.Constant) -> object:
        if isinstance(node.value, complex):
            self.fail(node, "complex numbers are not allowed")
        if isinstance(node.value, bytes):
            self.fail(node, "bytes literals are not allowed; use 'text'")
        if node.value is Ellipsis:
            self.fail(node, "'...' is not allowed")
        return None if node.value == "" else node.value

    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__"):
            self.fail(node, "names starting with '__' are not allowed")
        self.name_columns.append((node.id, self.column(node)))
        return node.id

    def literal(self, node: ast.expr) -> object:
        """A constant in a list, or a signed number (``-1``)."""
        if isinstance(node, ast.Starred):
            self.fail(node, _REFUSED[ast.Starred])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            number = node.operand
            if not (isinstance(number, ast.Constant) and is_number(number.value)):
                self.fail(node, _LIST_RULE)
            value = cast(Any, self.constant(number))
            return -value if isinstance(node.op, ast.USub) else +value
        if not isinstance(node, ast.Constant):
            self.fail(node, _LIST_RULE)
        return self.constant(node)

    @staticmethod
    def logical(is_and: bool, operands: list[_Evaluator]) -> _Evaluator:
        def evaluate(context: _Context) -> object:
            for operand in operands:
                if truthy(operand(context)) != is_and:
                    return not is_and
            return is_and

        return evaluate

    def binary(self, node: ast.BinOp, column: int) -> _Evaluator:
        if type(node.op) in _REFUSED:
            self.fail(node, _REFUSED[type(node.op)])
        left = self.build(node.left)
        if isinstance(node.op, ast.Pow):
            exponent = None
            if isinstance(node.right, ast.Constant | ast.UnaryOp):
                exponent = self.literal(node.right)
            if (
                not isinstance(exponent, int | float)
                or isinstance(exponent, bool)
                or not (abs(exponent) <= MAX_EXPONENT)
            ):
                self.fail(node.right, "'**' needs a constant exponent from -10 to 10, as in x ** 2")
            power = exponent
            return _at(column, lambda context: raise_to_power(left(context), power))
        op, right = _BINARY[type(node.op)], self.build(node.right)
        return _at(column, lambda context: arithmetic(op, left(context), right(context)))

    def comparison(self, node: ast.Compare, column: int) -> _Evaluator:
        for op in node.ops:
            if type(op) in _REFUSED:
                self.fail(node, _REFUSED[type(op)])
        for operand in [node.left, *node.comparators]:
            if isinstance(operand, ast.Constant) and operand.value in (None, ""):
                shown = repr(operand.value)
                self.fail(operand, f"comparing with {shown} is never true; use is_missing(x)")
        ops = [_COMPARISONS[type(op)] for op in node.ops]
        first, rest = self.build(node.left), [self.build(other) for other in node.comparators]
        if len(ops) == 1:  # the common case, with one frame less
            only, second = ops[0], rest[0]

            def single(context: _Context) -> object:
                try:
                    return compare_values(only, first(context), second(context))
                except EvaluationProblem as problem:
                    raise ExpressionError(str(problem), context.source, column) from None
                except OverflowError:
                    message = "a number is too large"
                    raise ExpressionError(message, context.source, column) from None

            return single

        def evaluate(context: _Context) -> object:
            left = first(context)
            for op, comparator in zip(ops, rest, strict=True):
                right = comparator(context)
                if not compare_values(op, left, right):
                    return False
                left = right
            return True

        return _at(column, evaluate)

    def call(self, node: ast.Call, column: int) -> _Evaluator:
        if not isinstance(node.func, ast.Name):
            self.build(node.func)  # refuses attribute access, lambda... with their own message
            self.fail(node, f"only these functions can be called: {', '.join(FUNCTIONS)}")
        name, spec = node.func.id, FUNCTIONS.get(node.func.id)
        if spec is None:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(node, f"unknown function {name!r}; {hint}known: {', '.join(FUNCTIONS)}")
        if node.keywords:
            self.fail(
                node.keywords[0], f"keyword arguments are not allowed; write {spec.signature}"
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail(arg, "starred arguments are not allowed")
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            plural = "" if count == 1 else "s"
            self.fail(node, f"{name}() got {count} argument{plural}; write {spec.signature}")
        self.functions.add(name)
        args, run = [self.build(arg) for arg in node.args], spec.implementation
        return _at(
            column, lambda context: run(tuple([arg(context) for arg in args]), context.today)
        )

    def subscript(self, node: ast.Subscript, column: int) -> _Evaluator:
        item, index = node.value, node.slice
        if not (
            isinstance(item, ast.Name)
            and isinstance(index, ast.Constant)
            and isinstance(index.value, str | int)
            and not isinstance(index.value, bool)
            and index.value != ""
        ):
            self.fail(node, _SUBSCRIPT_RULE)
        name, code = self.name(item), str(index.value)
        return _at(column, lambda context: selected(context.lookup(name), code))


def _check_depth(tree: ast.Expression, builder: _Builder) -> None:
    """Refuse nesting deeper than MAX_DEPTH before anything walks the tree recursively."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            builder.fail(node, f"the expression is nested too deeply (over {MAX_DEPTH} levels)")
        stack.extend(
            (child, depth + isinstance(child, ast.expr)) for child in ast.iter_child_nodes(node)
        )


def parse(source: str) -> Expression:
    """Parse and check ``source``; ExpressionError (with its column) says what is refused.

    >>> parse("contains(symptoms, 'fever') and age >= 18").functions
    frozenset({'contains'})
    >>> parse("visit.date > 1")
    Traceback (most recent call last):
    consortia.exceptions.ExpressionError: attribute access is not allowed
    """
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be text, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        message = (
            f"the expression is too long ({len(source)} characters, at most {MAX_SOURCE_LENGTH})"
        )
        raise ExpressionError(message, source, MAX_SOURCE_LENGTH + 1)
    prefix = cast(re.Match[str], _LEADING_SPACE.match(source)).end()
    builder = _Builder(source, prefix)
    if prefix == len(source):
        raise ExpressionError("the expression is empty", source, 1)
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": not worth a warning
            warnings.simplefilter("ignore")
            tree = ast.parse(source[prefix:], mode="eval")
    except SyntaxError as error:
        column = source.find("\0") + 1
        if error.lineno is not None:
            column = builder.position(error.lineno, (error.offset or 0) - 1)
        raise ExpressionError(f"syntax error: {error.msg}", source, column) from None
    except (RecursionError, MemoryError):
        message = f"the expression is nested too deeply (over {MAX_DEPTH} levels)"
        raise ExpressionError(message, source, 0) from None
    except (ValueError, OverflowError) as error:
        raise ExpressionError(f"syntax error: {error}", source, source.find("\0") + 1) from None
    _check_depth(tree, builder)
    evaluator = builder.build(tree.body)
    columns = tuple(builder.name_columns)
    names = frozenset(name for name, _ in columns)
    return Expression(source, names, frozenset(builder.functions), evaluator, columns)


def check_names(expression: Expression, known: Collection[str]) -> list[ExpressionError]:
    """One error per name the expression uses that is not ``known``, at its first use.

    >>> [(e.message, e.column) for e in check_names(parse("agee > 18"), {"age"})]
    [("unknown name 'agee'; did you mean 'age'?", 1)]
    """
    errors: list[ExpressionError] = []
    seen: set[str] = set()
    for name, column in expression._name_columns:
        if name in known or name in seen:
            continue
        seen.add(name)
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        errors.append(ExpressionError(f"unknown name {name!r}{hint}", expression.source, column))
    return sorted(errors, key=lambda error: error.column)
