"""The supervisor's dealing of connections to worker processes, on real Unix sockets.

(The whole server with real worker processes is tested in test_node_commands.py.)
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterator

import pytest

from consortia.commands.workers import _hand, _Worker, handing_available

pytestmark = pytest.mark.skipif(not handing_available(), reason="needs Unix sockets")


@pytest.fixture
def workers() -> Iterator[tuple[list[_Worker], list[socket.socket]]]:
    """Three workers (serving) with their channels; the second list: the workers' ends."""
    context = multiprocessing.get_context("spawn")
    made, theirs = [], []
    for _ in range(3):
        ours, their_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        serving = context.Event()
        serving.set()
        made.append(_Worker(context.Process(), serving, ours, context.Value("q", 0, lock=False)))
        theirs.append(their_end)
    yield made, theirs
    for s in [w.channel for w in made] + theirs:
        s.close()


@pytest.fixture
def connection() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        yield sock


def _received(their_end: socket.socket) -> socket.socket:
    _, fds, _, _ = socket.recv_fds(their_end, 16, 4)
    assert len(fds) == 1
    return socket.socket(fileno=fds[0])


def test_a_connection_goes_to_the_worker_with_the_fewest_open(
    workers: tuple[list[_Worker], list[socket.socket]], connection: socket.socket
) -> None:
    made, theirs = workers
    made[0].handed, made[0].closed.value = 5, 4  # 1 open
    made[1].handed, made[1].closed.value = 9, 9  # 0 open
    made[2].handed = 3  # 3 open
    assert _hand(made, connection)
    assert [w.open_connections for w in made] == [1, 1, 3]
    with _received(theirs[1]) as handed:  # the very same connection, in another descriptor
        assert os.fstat(handed.fileno()).st_ino == os.fstat(connection.fileno()).st_ino
    for other in (theirs[0], theirs[2]):
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.recv(16)


def test_connections_are_dealt_evenly(
    workers: tuple[list[_Worker], list[socket.socket]], connection: socket.socket
) -> None:
    made, theirs = workers
    for _ in range(30):
        assert _hand(made, connection)
    assert [w.handed for w in made] == [10, 10, 10]
    for their_end in theirs:
        for _ in range(10):
            _received(their_end).close()


def test_a_worker_not_yet_serving_is_passed_over(
    workers: tuple[list[_Worker], list[socket.socket]], connection: socket.socket
) -> None:
    made, _ = workers
    made[0].serving.clear()
    for _ in range(4):
        assert _hand(made, connection)
    assert [w.handed for w in made] == [0, 2, 2]


def test_a_full_queue_is_passed_over_and_a_dead_worker_marked(
    workers: tuple[list[_Worker], list[socket.socket]], connection: socket.socket
) -> None:
    made, theirs = workers
    while True:  # the first worker takes nothing from its channel: fill it
        try:
            made[0].channel.send(b"x")
        except BlockingIOError:
            break
    theirs[1].close()  # the second worker has died
    assert _hand(made, connection)
    assert [w.handed for w in made] == [0, 0, 1]
    assert [w.broken for w in made] == [False, True, False]
    _received(theirs[2]).close()
    theirs[2].close()  # the third dies too: nobody can take the connection
    assert not _hand(made, connection)
    assert [w.broken for w in made] == [False, True, True]
