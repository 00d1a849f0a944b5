"""Properties of the expression language on arbitrary sources and values.

The evaluator, on arbitrary source text and values, raises nothing but ExpressionError and
never reads an attribute of a value or calls anything outside its function table.
"""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.domain.expression_functions import FUNCTIONS
from consortia.domain.expressions import Expression, check_names, parse
from consortia.exceptions import ExpressionError

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["a", "b", "c", "d", "état"]

# --------------------------------------------------------------- source strategies

TOKENS = [
    *NAMES,
    "__class__",
    "__import__",
    "__builtins__",
    "open",
    "getattr",
    "eval",
    "exec",
    "type",
    "globals",
    *FUNCTIONS,
    "lambda",
    "for",
    "in",
    "not",
    "and",
    "or",
    "if",
    "else",
    "is",
    "None",
    "True",
    "False",
    "import",
    "os",
    "del",
    "yield",
    "await",
    "async",
    "0",
    "1",
    "-1",
    "2.5",
    "1e308",
    "10",
    "99999999999999999999",
    "1j",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    ":=",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    ";",
    "@",
    "&",
    "|",
    "^",
    "~",
    "...",
    "#",
    "'",
    '"',
    "'a'",
    "'2024-01-01'",
    "''",
    "'日本'",
    "f'",
    "b'",
    "f'{a}'",
    "\\",
    "\n",
    "\t",
    " ",
    "\r\n",
    "\x00",
    "é",
]
token_sources = st.lists(st.sampled_from(TOKENS), max_size=30).flatmap(
    lambda tokens: st.sampled_from([" ".join(tokens), "".join(tokens)])
)

BINARY = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "and",
    "or",
]
ATOMS = [
    "0",
    "1",
    "-1",
    "2.5",
    "10",
    "'x'",
    "'1'",
    "'2024-01-01'",
    "'日本'",
    "True",
    "False",
    "[1, 'a']",
    "('1', 2)",
    "today()",
    "date(2024, 2, 29)",
]
atoms = st.sampled_from(NAMES) | st.sampled_from(ATOMS)


def _call(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def arguments(name: str) -> st.SearchStrategy[str]:
        spec = FUNCTIONS[name]
        high = 3 if spec.max_args is None else spec.max_args
        listed = st.lists(inner, min_size=spec.min_args, max_size=high)
        return listed.map(lambda args: f"{name}({', '.join(args)})")

    return st.sampled_from(sorted(FUNCTIONS)).flatmap(arguments)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), inner).map("".join),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(inner, st.sampled_from(["2", "-1", "0.5", "10"])).map(" ** ".join),
        st.tuples(st.sampled_from(NAMES), st.sampled_from(["'1'", "2", "'a'"])).map(
            lambda t: f"{t[0]}[{t[1]}]"
        ),
        _call(inner),
    )


expressions = st.recursive(atoms, _compound, max_leaves=12)

# a valid expression with one hole, somewhere inside, for a forbidden fragment
holed: st.SearchStrategy[str] = st.deferred(
    lambda: st.one_of(
        st.just("HOLE"),
        st.tuples(holed, st.sampled_from(BINARY), expressions).map(" ".join),
        st.tuples(expressions, st.sampled_from(BINARY), holed).map(" ".join),
        st.tuples(st.sampled_from(["-", "not "]), holed).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(holed, expressions).map(lambda t: f"(1 if {t[0]} else {t[1]})"),
        st.tuples(st.sampled_from(["abs", "len", "is_missing"]), holed).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(expressions, holed).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
    )
)
FORBIDDEN = [
    "a.b",
    "a.__class__",
    "(a).b",
    "a .b",
    "'x'.join",
    "a.b()",
    "().__class__.__bases__[0]",
    "__import__('os')",
    "__import__",
    "__builtins__",
    "__class__",
    "a.__dict__",
    "open('f')",
    "getattr(a, 'b')",
    "eval('1')",
    "exec('1')",
    "type(a)",
    "globals()",
    "vars()",
    "compile('1', '', 'eval')",
    "print(1)",
    "breakpoint()",
    "input()",
    "a(1)",
    "(lambda: 1)()",
    "f'{a.b}'",
    "[c for c in a]",
    "max(a, key=b)",
    "sum(*a)",
    "a[b]",
    "today()[0]",
    "(a := 1)",
    "a.b[0]",
]

# ---------------------------------------------------------------- value strategies


@dataclass(frozen=True)
class Make:
    """A placeholder for a recording object, made fresh inside each test run."""

    kind: str


codes = st.lists(st.text(max_size=3) | st.integers(-5, 99), max_size=4)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.floats(),
    st.decimals(),
    st.text(max_size=12),
    st.sampled_from(["", "1", "a", "2024-01-01", "2024-02-30", "2024-01-01T10:00:00+02:00"]),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    codes,
    codes.map(tuple),
    codes.map(frozenset),
    st.lists(st.floats() | st.none() | st.dates(), min_size=1, max_size=2),
    st.sampled_from([Make("object"), Make("str"), Make("int"), Make("list"), Make("date")]),
)
value_maps = st.dictionaries(st.sampled_from(NAMES), scalars)

TOUCHED: list[str] = []
_SPECIAL = [
    "__getattribute__",
    "__getattr__",
    "__setattr__",
    "__call__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__hash__",
    "__bool__",
    "__len__",
    "__iter__",
    "__contains__",
    "__getitem__",
    "__index__",
    "__int__",
    "__float__",
    "__str__",
    "__format__",
    "__round__",
    "__abs__",
    "__neg__",
    "__pos__",
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__floordiv__",
    "__mod__",
    "__pow__",
    "__rpow__",
    "__instancecheck__",
]


def _recording(base: type) -> type:
    """A subclass of ``base`` whose every special method records its use and fails."""

    def tripwire(name: str) -> Callable[..., Any]:
        def method(self: object, *args: object, **kwargs: object) -> Any:
            TOUCHED.append(name)
            raise AssertionError(f"the evaluator used {name} of a value")

        return method

    return type(f"Recording{base.__name__}", (base,), {n: tripwire(n) for n in _SPECIAL})


RECORDING = {
    "object": lambda: _recording(object)(),
    "str": lambda: _recording(str)("1"),
    "int": lambda: _recording(int)(2),
    "list": lambda: _recording(list)(["1", "2"]),
    "date": lambda: _recording(dt.date)(2024, 1, 1),
}


def _materialise(values: dict[str, object]) -> dict[str, object]:
    return {
        name: RECORDING[value.kind]() if isinstance(value, Make) else value
        for name, value in values.items()
    }


RESULT_TYPES = (type(None), bool, int, float, Decimal, str, dt.date, frozenset, tuple)


def _attempt(action: Callable[[], object]) -> tuple[object, ExpressionError | None]:
    """The result of ``action``, or the ExpressionError it raised (any other error escapes)."""
    try:
        return action(), None
    except ExpressionError as error:
        return None, error


def _parsed(source: str) -> Expression | None:
    expression, error = _attempt(lambda: parse(source))
    assert error is None or 0 <= error.column <= len(source) + 1
    return expression if isinstance(expression, Expression) else None


# ---------------------------------------------------------------------- properties


@BOUNDED
@given(st.text())
def test_parsing_arbitrary_text_raises_nothing_but_expression_error(source: str) -> None:
    _parsed(source)


@BOUNDED
@given(token_sources)
def test_parsing_token_soup_raises_nothing_but_expression_error(source: str) -> None:
    _parsed(source)


@BOUNDED
@given(token_sources | expressions)
def test_what_parses_has_no_attribute_access_and_calls_only_the_table(source: str) -> None:
    expression = _parsed(source)
    if expression is None:
        return
    tree = ast.parse(source.lstrip(" \t\f\r\n"), mode="eval")  # the independent oracle
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Attribute | ast.Lambda | ast.NamedExpr | ast.Starred)
        assert not isinstance(node, ast.Name) or not node.id.startswith("__")
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            assert node.func.id in FUNCTIONS
            assert not node.keywords
    assert expression.functions <= set(FUNCTIONS)


@BOUNDED
@given(holed, st.sampled_from(FORBIDDEN))
def test_forbidden_fragments_are_refused_wherever_they_appear(template: str, bad: str) -> None:
    source = template.replace("HOLE", bad, 1).replace("HOLE", "a")
    _, error = _attempt(lambda: parse(source))
    assert error is not None, f"{source!r} was accepted"
    assert 1 <= error.column <= len(source)


@BOUNDED
@given(expressions, value_maps)
def test_evaluating_raises_nothing_but_expression_error_and_touches_no_value(
    source: str, values: dict[str, object]
) -> None:
    expression = _parsed(source)
    if expression is None:
        return
    TOUCHED.clear()
    values = _materialise(values)
    result, error = _attempt(lambda: expression.evaluate(values, today=dt.date(2024, 5, 1)))
    if error is None:
        assert isinstance(result, RESULT_TYPES)
    else:
        assert (error.source, 1 <= error.column <= len(source)) == (source, True)
    assert TOUCHED == []


@BOUNDED
@given(expressions, st.sampled_from(["", "  ", "\n", "'日本' == 'x' or "]))
def test_check_names_columns_point_at_the_names(source: str, prefix: str) -> None:
    expression = _parsed(prefix + source)
    if expression is None:
        return
    assert check_names(expression, expression.names) == []
    errors = check_names(expression, ())
    assert {error.message.split("'")[1] for error in errors} == expression.names
    for error in errors:
        name = error.message.split("'")[1]
        assert expression.source[error.column - 1 :].startswith(name)
