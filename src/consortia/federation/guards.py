"""What a node logs of a request it refused before trusting it (no valid signature, a
replay, a clock too far off): a bounded summary, at most one per source per window.

Such a request is anyone's: logging it whole let three unsigned 5 MB posts write 15 MB
to the node's permanent audit trail. The summary keeps what the data steward needs to
see an attack (where from, how large, which rule refused it, and how many more were
refused since the previous summary) and nothing the sender chose beyond short,
truncated names.

>>> windows = MemoryRefusalWindows(window_seconds=60)
>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> [windows.admit("10.0.0.9", now + timedelta(seconds=s)) for s in (0, 1, 2, 60)]
[0, None, None, 2]
>>> source_key("2001:db8:1:2:3:4:5:6")
'2001:db8:1:2::/64'
>>> bounded("x" * 500, 8)
'xxxxxxxx...'
"""

from __future__ import annotations

import ipaddress
import threading
from datetime import datetime, timedelta
from typing import Final, Protocol

__all__ = [
    "SUMMARY_WINDOW_SECONDS",
    "MemoryRefusalWindows",
    "RefusalWindows",
    "bounded",
    "source_key",
]

#: At most one summary of refused unverified requests per source in this many seconds.
SUMMARY_WINDOW_SECONDS: Final = 60.0


class RefusalWindows(Protocol):
    """Decides which refused requests are logged (see :func:`admit`)."""

    def admit(self, source: str, now: datetime) -> int | None:
        """The number of refusals from ``source`` not logged since its previous summary
        when this one is to be logged; ``None`` when it is only counted."""
        ...


class MemoryRefusalWindows:
    """Windows in this process's memory (a node without a database: one process)."""

    def __init__(self, window_seconds: float = SUMMARY_WINDOW_SECONDS) -> None:
        self.window = timedelta(seconds=window_seconds)
        self._windows: dict[str, tuple[datetime, int]] = {}
        self._lock = threading.Lock()

    def admit(self, source: str, now: datetime) -> int | None:
        with self._lock:
            if len(self._windows) > 100_000:  # forget sources not heard from in a day
                cutoff = now - timedelta(days=1)
                self._windows = {k: v for k, v in self._windows.items() if v[0] >= cutoff}
            opened = self._windows.get(source)
            if opened is not None and opened[0] > now - self.window:
                self._windows[source] = (opened[0], opened[1] + 1)
                return None
            self._windows[source] = (now, 0)
            return opened[1] if opened is not None else 0


def source_key(source: str | None) -> str:
    """Where a request came from, as counted: an IPv6 address by its /64 network (one
    host is often given a whole /64), anything else as it is, truncated."""
    if not source:
        return "unknown"
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return bounded(source, 100)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def bounded(text: object, limit: int) -> str:
    """``text`` as a string of at most ``limit`` characters (and an ellipsis)."""
    value = str(text)
    return value if len(value) <= limit else value[:limit] + "..."
