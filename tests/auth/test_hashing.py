"""The password threads: at most `workers` computations at once, a bounded queue."""

from __future__ import annotations

import asyncio
import threading

import pytest

from consortia.auth.hashing import THREAD_PREFIX, PasswordWork
from consortia.exceptions import TooManyRequestsError


def test_work_runs_on_the_password_threads_and_beyond_the_queue_is_refused() -> None:
    work = PasswordWork(workers=1, queue_limit=2)
    started, release = threading.Event(), threading.Event()
    threads: list[str] = []

    def blocking() -> str:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(timeout=30)
        return "done"

    async def scenario() -> list[str]:
        first = asyncio.create_task(work.run(blocking))
        second = asyncio.create_task(work.run(blocking))  # waits in the queue
        await asyncio.to_thread(started.wait, 30)
        await asyncio.sleep(0)  # let the second task enter run()
        with pytest.raises(TooManyRequestsError) as refused:
            await work.run(blocking)
        assert refused.value.retry_after == 1
        release.set()
        return list(await asyncio.gather(first, second))

    try:
        assert asyncio.run(scenario()) == ["done", "done"]
    finally:
        release.set()
        work.shutdown()
    assert work.completed == 2
    assert threads == [f"{THREAD_PREFIX}_0", f"{THREAD_PREFIX}_0"]
