"""What an analysis kind is: a small plug-in with a node side and a lead side.

A kind (``describe``, ``kaplan_meier``, ``glm`` …) says

* which request fields it takes (a pydantic model, so a bad request gets a precise error);
* which table columns a request reads (the node's policy checks them before any data);
* how a node prepares its session state once (:meth:`AnalysisKind.prepare`) and answers one
  round with a :class:`~consortia.federation.policy.Release` — the aggregates plus the counts
  the disclosure policy checks (:meth:`AnalysisKind.node_round`);
* how the lead drives rounds through an :class:`Exchange` and combines the aggregates into
  the estimates (:meth:`AnalysisKind.lead`): a typed result (:class:`Estimates`, the class
  the kind names as ``result_type``) that becomes JSON only at the wire (``to_dict``) and is
  read back by its own ``from_dict``.

Transports, signing, policy, audit and timeouts are the federation layer's business; a
kind sees only arrays and JSON.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from consortia.exceptions import FederationError, StatisticsError
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import ColumnType, Table

__all__ = [
    "AnalysisKind",
    "AnalysisRequest",
    "Estimates",
    "Exchange",
    "InvalidRequest",
    "complete_rows",
    "drive_iterative",
    "label_column",
    "label_groups",
    "numeric_column",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
A = TypeVar("A")
R = TypeVar("R")


class InvalidRequest(FederationError):
    """An analysis request is malformed: unknown kind, missing field, wrong type."""


class AnalysisRequest(BaseModel):
    """Fields every analysis request has; each kind adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    table: str = Field(min_length=1)
    study: str | None = None
    allow_partial: bool = False
    timeout: float | None = Field(None, gt=0, description="seconds to wait per round")


RequestT = TypeVar("RequestT", bound=AnalysisRequest)


class Exchange(Protocol):
    """The lead's view of the nodes taking part: send one round, get each node's aggregates."""

    @property
    def nodes(self) -> Sequence[str]:
        """Names of the nodes taking part, in a stable order."""
        ...

    async def round(self, payload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Send ``payload`` to every node; return ``{node: aggregates}``."""
        ...


class Estimates(Protocol):
    """What a kind's lead returns: a frozen result object (``DescribeResult``,
    ``KaplanMeierEstimates`` …) that reads as a table, turns into JSON at the wire, and is
    read back from that JSON by its class."""

    @property
    def exact(self) -> bool:
        """Whether these estimates equal the pooled computation."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The estimates as plain JSON values (their wire form)."""
        ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read the estimates back from :meth:`to_dict`."""
        ...

    def summary(self) -> str:
        """The estimates as plain-text tables."""
        ...


class AnalysisKind(Generic[RequestT]):
    """Base of analysis kinds; subclasses set ``name``, ``request_model``, ``result_type``
    and the three steps."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    request_model: type[RequestT]
    result_type: ClassVar[type[Estimates]]

    def parse(self, request: Mapping[str, Any]) -> RequestT:
        """Validate a request dict; raise :class:`InvalidRequest` naming each bad field."""
        try:
            return self.request_model.model_validate(dict(request))
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'request'}: {error['msg']}"
                for error in exc.errors()
            )
            raise InvalidRequest(f"{self.name} request: {problems}") from None

    def columns(self, request: RequestT) -> list[str]:
        """The table columns the request reads (checked against the node's policy)."""
        raise NotImplementedError

    def released_time_bin(self, request: RequestT) -> float | None:
        """The time bin of released event times, or ``None`` when no times are released."""
        return None

    def prepare(self, table: Table, request: RequestT, policy: NodePolicy) -> Any:
        """Build the node's session state once (kept in memory for every round)."""
        return table

    def node_round(
        self, state: Any, request: RequestT, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        """Answer one round on the node: the aggregates and the counts to check."""
        raise NotImplementedError

    # Iterative kinds agree a design in their first round and re-check it every round
    # (see consortia.federation.disclosure); one-round kinds keep these defaults.

    def design(self, state: Any, request: RequestT) -> dict[str, Any] | None:
        """What this node's releases in a session depend on beyond the request (its rows,
        the levels of its categorical covariates with their counts, its strata), as JSON;
        ``None`` for a kind whose every round stands alone."""
        return None

    def agreement_round(self, payload: Mapping[str, Any]) -> bool:
        """Whether ``payload`` is the round that agrees the session's design."""
        return False

    def round_levels(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The levels a later round carries (the node stores the first and holds every
        later round of the session to them)."""
        return None

    async def lead(self, request: RequestT, exchange: Exchange) -> Estimates:
        """Drive the rounds and return the estimates (of type ``result_type``)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- node helpers


def _missing(table: Table, column: str) -> BoolArray:
    values = table.column(column)
    kind = table.types[column]
    if kind is ColumnType.TEXT:
        return np.asarray(np.equal(values, np.array(None, dtype=object)), dtype=np.bool_)
    if kind is ColumnType.DATE:
        return np.asarray(np.isnat(values), dtype=np.bool_)
    return np.asarray(np.isnan(values), dtype=np.bool_)


def complete_rows(table: Table, columns: Sequence[str]) -> tuple[BoolArray, int]:
    """Rows with a value in every one of ``columns``, and how many rows lack one."""
    keep = np.ones(table.n_rows, dtype=np.bool_)
    for column in columns:
        keep &= ~_missing(table, column)
    return keep, int(table.n_rows - keep.sum())


def numeric_column(table: Table, column: str, rows: BoolArray | None = None) -> FloatArray:
    """A column as floats (dates as days); text that is not numeric is a StatisticsError."""
    try:
        values = table.numeric(column)
    except ValueError:
        raise StatisticsError(f"{table.name}.{column}: a numeric column is needed") from None
    return values if rows is None else values[rows]


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(value)
    return str(value)


def label_column(
    table: Table, column: str, rows: BoolArray | None = None
) -> npt.NDArray[np.object_]:
    """A column as an object array of category labels (``1.0`` → ``"1"``; missing → ``None``).

    Each distinct value is labelled once: text columns already hold ``str`` or ``None``, and
    other columns are mapped through their (few) distinct values.
    """
    values = table.column(column)
    if rows is not None:
        values = values[rows]
    if values.dtype != object:
        distinct, inverse = np.unique(values, return_inverse=True)
        labels = np.array([_label(value) for value in distinct], dtype=object)
        return np.asarray(labels[inverse.reshape(-1)], dtype=object)
    if _plain_text(table, column):  # _label(text) is the text itself
        return values if rows is not None else values.copy()
    return np.array([_label(value) for value in values], dtype=object)


def label_groups(
    labels: npt.NDArray[np.object_], name: str, rows: BoolArray | None = None
) -> dict[str, BoolArray]:
    """The rows of each distinct label (missing left out), named ``"{name} 1"``, ``"{name}
    2"`` … in sorted label order: the release ledger's groups, labelled without a value.

    ``labels`` are over ``rows`` (every row when ``None``); the masks are over the table.
    """
    present = [label for label in set(labels.tolist()) if label is not None]
    positions = np.flatnonzero(rows) if rows is not None else np.arange(labels.size)
    size = rows.size if rows is not None else labels.size
    groups: dict[str, BoolArray] = {}
    for index, label in enumerate(sorted(present), start=1):
        mask = np.zeros(size, dtype=np.bool_)
        mask[positions[labels == label]] = True
        groups[f"{name} {index}"] = mask
    return groups


# Tables are immutable once loaded: which object columns hold only str/None is checked once.
_PLAIN_TEXT: weakref.WeakKeyDictionary[Table, dict[str, bool]] = weakref.WeakKeyDictionary()


def _plain_text(table: Table, column: str) -> bool:
    known = _PLAIN_TEXT.setdefault(table, {})
    if column not in known:
        distinct = set(table.column(column).tolist())
        known[column] = all(value is None or type(value) is str for value in distinct)
    return known[column]


# --------------------------------------------------------------------------- lead helpers


async def drive_iterative(
    exchange: Exchange,
    driver: Callable[[list[Callable[[FloatArray], A]]], R],
    payload: Callable[[FloatArray], Mapping[str, Any]],
    parse: Callable[[Mapping[str, Any]], A],
    *,
    round_timeout: float | None = None,
) -> R:
    """Run a synchronous "one callable per node" driver (``fit_glm_federated`` …) over rounds.

    The driver calls each node's callable with the same ``beta`` in turn; the first call
    for a new ``beta`` sends one round to every node at once and the others read the cached
    answers, so an iteration costs one round, not one per node. The driver runs in a worker
    thread; the rounds run on the event loop.
    """
    loop = asyncio.get_running_loop()
    cache: dict[bytes, dict[str, dict[str, Any]]] = {}
    stopped = threading.Event()
    current: list[concurrent.futures.Future[dict[str, dict[str, Any]]]] = []

    def fetch(beta: FloatArray) -> dict[str, dict[str, Any]]:
        key = np.asarray(beta, dtype=np.float64).tobytes()
        if key not in cache:
            if stopped.is_set():
                raise FederationError("the analysis was cancelled")
            cache.clear()
            pending = asyncio.run_coroutine_threadsafe(
                _as_coroutine(exchange.round(payload(beta))), loop
            )
            current[:] = [pending]
            cache[key] = pending.result(timeout=round_timeout)
        return cache[key]

    def node_callable(name: str) -> Callable[[FloatArray], A]:
        return lambda beta: parse(fetch(beta)[name])

    callables = [node_callable(name) for name in exchange.nodes]
    try:
        return await asyncio.to_thread(driver, callables)
    except asyncio.CancelledError:
        # The driver thread cannot be interrupted: stop it at its next round instead.
        stopped.set()
        for pending in current:
            pending.cancel()
        raise


async def _as_coroutine(awaitable: Awaitable[R]) -> R:
    return await awaitable
