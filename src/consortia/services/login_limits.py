"""Limits on failed sign-ins, per client address and per account name, kept in the database.

* Every refused sign-in (unknown email, wrong password, inactive or locked account) counts
  one failure for the client's address (an IPv6 address by its /64) and one for the
  account name as typed (normalised; known or not, so a limit says nothing about which
  accounts exist), in windows of ``login_window_minutes`` that start at the first failure.
* While either count has reached its limit (``login_failures_per_address``,
  ``login_failures_per_account``), sign-ins from that address or for that name are refused
  before any password is checked (no hashing): 429 with ``Retry-After``, the seconds until
  the window ends.
* A successful sign-in resets the account's count, not the address's: many people may
  share one address (a hospital's network), and someone holding one valid password
  must not be able to clear the count of their address between guesses at other accounts.
* The counters are rows of ``login_throttle``
  (:class:`~consortia.storage.login_throttle.LoginThrottleRepository`): every server
  process of the node sees the same counts. Rows of ended windows are pruned at each
  sign-in, and the table is capped, so it stays bounded.
* Audit, bounded: each failure is a ``login.failed`` event (at most the limits per window);
  a count reaching its limit is one ``login.limited`` event; the sign-ins refused while it
  held are not audited one by one but counted, and summarised in one
  ``login.limit_summary`` event when the window's row is pruned or reset.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from sqlalchemy import Engine

from consortia.config import Settings
from consortia.exceptions import TooManyRequestsError
from consortia.services.unit_of_work import SYSTEM, UnitOfWork, reading, writing
from consortia.storage.login_throttle import LoginThrottleRepository, ThrottleRecord

__all__ = [
    "ACCOUNT",
    "ADDRESS",
    "LIMITED",
    "client_key",
    "record_failure",
    "record_success",
    "refuse_if_limited",
]

ADDRESS = "address"
ACCOUNT = "account"
LIMITED = "too many failed sign-ins from this address or for this account; try again in {} s"
_SUBJECT_LENGTH = 320


def client_key(host: str | None) -> str:
    """The address a client's failures are counted under: IPv4 as is, IPv6 by its /64.

    >>> client_key("192.0.2.7"), client_key("2001:db8::1"), client_key("::ffff:192.0.2.7")
    ('192.0.2.7', '2001:db8::/64', '192.0.2.7')
    >>> client_key(None)
    'unknown'
    """
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _window(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.login_window_minutes)


def _limit(settings: Settings, kind: str) -> int:
    if kind == ADDRESS:
        return settings.login_failures_per_address
    return settings.login_failures_per_account


def _keys(account: str, client: str) -> list[tuple[str, str]]:
    return [(ADDRESS, client[:_SUBJECT_LENGTH]), (ACCOUNT, account[:_SUBJECT_LENGTH])]


def refuse_if_limited(
    engine: Engine, settings: Settings, account: str, client: str, now: datetime
) -> None:
    """Refuse (:class:`~consortia.exceptions.TooManyRequestsError`) a sign-in from
    ``client`` or for ``account`` while either has used up its failures; count the refusal.

    Reads without taking the writer lock; writes only to count a refusal.
    """
    window = _window(settings)
    with reading(engine, SYSTEM) as work:
        records = LoginThrottleRepository(work.connection).get(_keys(account, client))
    limited = [
        record
        for record in records
        if record.failures >= _limit(settings, record.kind) and now < record.window_start + window
    ]
    if not limited:
        return
    with writing(engine, SYSTEM) as work:  # counted, and summarised when the window ends
        throttle = LoginThrottleRepository(work.connection)
        for record in limited:
            throttle.count_refusal(record.kind, record.subject)
    wait = max((record.window_start + window - now).total_seconds() for record in limited)
    retry_after = max(1, math.ceil(wait))
    raise TooManyRequestsError(LIMITED.format(retry_after), retry_after)


def record_failure(
    work: UnitOfWork, settings: Settings, account: str, client: str, now: datetime
) -> None:
    """Count a failed sign-in for ``client`` and ``account``, in the failure's unit of work."""
    window = _window(settings)
    throttle = LoginThrottleRepository(work.connection)
    _prune(work, throttle, window, now)
    for kind, subject in _keys(account, client):
        record = throttle.count_failure(kind, subject, now=now, window=window)
        if record.failures == _limit(settings, kind):
            work.audit(
                "login.limited",
                "login_limit",
                f"{kind}:{subject}"[:256],
                actor="system",
                reason=f"{record.failures} failed sign-ins in {settings.login_window_minutes} min",
                after={
                    "kind": kind,
                    "subject": subject,
                    "failures": record.failures,
                    "until": (record.window_start + window).isoformat(),
                },
            )


def record_success(work: UnitOfWork, settings: Settings, account: str, now: datetime) -> None:
    """A successful sign-in: the account's count starts again (the address's does not)."""
    window = _window(settings)
    throttle = LoginThrottleRepository(work.connection)
    _prune(work, throttle, window, now)
    removed = throttle.remove(ACCOUNT, account[:_SUBJECT_LENGTH])
    if removed is not None and removed.refused:
        _summarise(work, removed, window)


def _prune(
    work: UnitOfWork, throttle: LoginThrottleRepository, window: timedelta, now: datetime
) -> None:
    for record in throttle.prune(before=now - window):
        _summarise(work, record, window)


def _summarise(work: UnitOfWork, record: ThrottleRecord, window: timedelta) -> None:
    work.audit(
        "login.limit_summary",
        "login_limit",
        f"{record.kind}:{record.subject}"[:256],
        actor="system",
        reason=f"{record.refused} sign-ins refused while the limit held",
        after={
            "kind": record.kind,
            "subject": record.subject,
            "window_start": record.window_start.isoformat(),
            "window_end": (record.window_start + window).isoformat(),
            "failures": record.failures,
            "refused": record.refused,
        },
    )
