"""The nonces and refusal windows of a node with a database, kept in it (every process of
the node, and the node after a restart, sees the same; :mod:`consortia.storage.federation_guards`).

A replay of an accepted message is refused by whichever process it reaches, however long
ago the node restarted, for as long as its timestamp is within the clock-skew window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from consortia.federation.guards import SUMMARY_WINDOW_SECONDS
from consortia.storage.federation_guards import admit_refusal, remember_nonce

__all__ = ["DatabaseNonces", "DatabaseRefusalWindows"]


class DatabaseNonces:
    """A :class:`~consortia.federation.signing.NonceStore` in the node database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def remember(self, sender: str, nonce: str, until: datetime, now: datetime) -> bool:
        with self.engine.begin() as connection:
            return remember_nonce(connection, sender, nonce, until, now)


class DatabaseRefusalWindows:
    """A :class:`~consortia.federation.guards.RefusalWindows` in the node database."""

    def __init__(self, engine: Engine, window_seconds: float = SUMMARY_WINDOW_SECONDS) -> None:
        self.engine = engine
        self.window = timedelta(seconds=window_seconds)

    def admit(self, source: str, now: datetime) -> int | None:
        with self.engine.begin() as connection:
            return admit_refusal(connection, source, now, self.window)
