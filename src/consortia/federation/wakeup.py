"""Waking a hub's long polls and the lead's waiting sends when the task queue changes.

The pull queue lives in the hub's database (:class:`~consortia.federation.hub.DatabaseBroker`
queues a task, ``GET /federation/tasks/next`` hands it out, ``POST /federation/results``
keeps the reply), so any number of hub server processes, and ``consortia analyze`` in its
own process, share it. :class:`TaskWakeups` lets a request wait for "a task for member M"
or "the reply to task T" without querying the table on a timer: while anyone waits, one
watcher per process reads the database's change feed
(:func:`consortia.storage.changes.change_feed`: PostgreSQL ``LISTEN``/``NOTIFY``, SQLite's
``data_version`` counter); on a change it asks the database once which of the waited-for
members have a task (or were removed: their polls end at once, refused) and which of the
waited-for tasks have a reply, and wakes exactly those waiters. The waiters then take their
task or read their reply from the database as before: the process keeps no queue of its
own, only who is waiting here.

A waiter registers *before* it looks at the table, so a change committed between its look
and its wait still wakes it. Callers also re-check every ``recheck`` seconds, a safety net
(and the moment a long poll notices its client went away), not the way tasks are found.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine

from consortia.storage.changes import ChangeFeed, change_feed
from consortia.storage.db import read_only
from consortia.storage.hub import HubRepository

__all__ = ["LINGER_SECONDS", "TICK_SECONDS", "TaskWakeups"]

#: How often a SQLite feed reads its change counter while someone waits, right after a
#: change; each look that finds none waits 1.5 times longer, up to MAX_BACKOFF ticks
#: (PostgreSQL's feed is read when its socket says a notification came).
TICK_SECONDS = 0.001
MAX_BACKOFF = 20.0
#: How long the watcher keeps its feed open after the last waiter left (the lead's next
#: round, a member's next poll): opening a PostgreSQL listener costs a connection.
LINGER_SECONDS = 2.0


class TaskWakeups:
    """Who waits in this process for a member's task or a task's reply, and the watcher
    that wakes them from the database's change feed."""

    def __init__(
        self, engine: Engine, *, tick: float = TICK_SECONDS, linger: float = LINGER_SECONDS
    ) -> None:
        self.engine = engine
        self.tick = tick
        self.linger = linger
        self._tasks: dict[str, set[asyncio.Event]] = {}
        self._replies: dict[str, set[asyncio.Event]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None  # set when the last waiter left
        self._busy: asyncio.Event | None = None  # set when a waiter came
        self.dispatches = 0  # how many times the watcher asked the database (for tests)

    @contextlib.contextmanager
    def waiting_task(self, member: str) -> Iterator[asyncio.Event]:
        """An event set when ``member`` may have a task waiting (clear it after looking)."""
        with self._waiting(self._tasks, member) as event:
            yield event

    @contextlib.contextmanager
    def waiting_reply(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when the reply to ``task_id`` may have come."""
        with self._waiting(self._replies, task_id) as event:
            yield event

    @contextlib.contextmanager
    def _waiting(self, table: dict[str, set[asyncio.Event]], key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        table.setdefault(key, set()).add(event)
        try:
            self._start()
            yield event
        finally:
            waiters = table.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del table[key]
            if not self._waited() and self._idle is not None:
                self._idle.set()

    def _waited(self) -> bool:
        return bool(self._tasks or self._replies)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        watcher = self._watcher
        if watcher is not None and not watcher.done() and watcher.get_loop() is loop:
            assert self._idle is not None
            assert self._busy is not None
            self._idle.clear()
            self._busy.set()
            return
        feed = change_feed(self.engine)
        feed.open()  # before the caller looks at the table: later commits are seen
        self._idle, self._busy = asyncio.Event(), asyncio.Event()
        self._watcher = loop.create_task(self._watch(feed, self._idle, self._busy))

    async def _watch(self, feed: ChangeFeed, idle: asyncio.Event, busy: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        fileno = feed.fileno()
        readable = asyncio.Event()
        backoff = 1.0
        if fileno is not None:
            loop.add_reader(fileno, readable.set)
        try:
            while True:
                if not self._waited():  # keep the feed open a while for the next waiter
                    busy.clear()
                    try:
                        await asyncio.wait_for(busy.wait(), self.linger)
                    except TimeoutError:
                        return
                    continue
                if fileno is None:  # soon after a change, then less often (to 20 ticks)
                    await asyncio.sleep(self.tick * backoff)
                else:
                    waits = [asyncio.ensure_future(e.wait()) for e in (readable, idle)]
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
                    readable.clear()
                if feed.changed():
                    backoff = 1.0
                    if self._waited():
                        self._dispatch()
                else:
                    backoff = min(backoff * 1.5, MAX_BACKOFF)
        finally:
            if fileno is not None:
                loop.remove_reader(fileno)
            feed.close()

    def _dispatch(self) -> None:
        self.dispatches += 1
        members, tasks = list(self._tasks), list(self._replies)
        with read_only(self.engine.connect()) as connection:  # no writer lock to wait for
            repository = HubRepository(connection)
            queued = repository.members_to_wake(members, datetime.now(UTC)) if members else set()
            answered = repository.answered_tasks(tasks) if tasks else set()
        for key, table in ((queued, self._tasks), (answered, self._replies)):
            for name in key:
                for event in table.get(name, ()):
                    event.set()
