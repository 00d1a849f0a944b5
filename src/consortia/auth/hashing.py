"""A small pool of threads of its own for password hashing (argon2id), one per process.

A password hash costs ~0.1-0.6 s of CPU by design. Run on the threads that serve requests
(``server_threads``, 2 by default), a few sign-ins at once would hold every one of them, and
``/health`` or a form save would wait behind them. Sign-ins instead hand their hashing to
:class:`PasswordWork` and wait for it *on the event loop*: at most ``workers`` hashes run
at once, the sign-ins beyond wait in its queue (holding no request thread), and when more
than ``queue_limit`` are waiting the next is refused at once
(:class:`~consortia.exceptions.TooManyRequestsError`, retry after a second).

Its threads are named ``consortia-password-N`` (:data:`THREAD_PREFIX`), and it counts the
work it has run (:attr:`PasswordWork.completed`).

>>> import asyncio, threading
>>> work = PasswordWork(workers=1, queue_limit=4)
>>> asyncio.run(work.run(lambda: threading.current_thread().name)).startswith(THREAD_PREFIX)
True
>>> work.completed
1
>>> work.shutdown()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from consortia.exceptions import TooManyRequestsError

__all__ = ["THREAD_PREFIX", "PasswordWork"]

T = TypeVar("T")
THREAD_PREFIX = "consortia-password"


class PasswordWork:
    """At most ``workers`` password computations at once, on threads of their own."""

    def __init__(self, workers: int, queue_limit: int) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.completed = 0
        self._count_lock = threading.Lock()
        self._waiting = 0  # changed on the event loop only
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_PREFIX)

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on one of the pool's threads, awaited without holding another thread.

        Refused (429) when ``queue_limit`` calls are already waiting or running.
        """
        if self._waiting >= self.queue_limit:
            raise TooManyRequestsError(
                "the node is busy with other sign-ins; try again in a second", retry_after=1
            )
        self._waiting += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(self._counted, work))
        finally:
            self._waiting -= 1

    def _counted(self, work: Callable[[], T]) -> T:
        try:
            return work()
        finally:
            with self._count_lock:
                self.completed += 1

    def shutdown(self) -> None:
        """Stop the threads; work not yet started is dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
