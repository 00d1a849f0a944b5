"""The lead's push client over real loopback sockets: one kept-alive connection per member,
no import attempted per request, a connection the member closed while idle replaced, and
chunked or connection-framed answers read whole."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import uvicorn

from consortia.federation.apps import create_node_app
from consortia.federation.http11 import OriginPool, ResponseError
from consortia.federation.transport import NodeHandle, PushTransport

KM = {
    "kind": "kaplan_meier",
    "table": "trial",
    "time": "pfs_days",
    "event": "pfs_event",
    "group": "arm",
}


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


class ImportAttempts(importlib.abc.MetaPathFinder):
    """Records every module the import system is asked to find."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        self.names.append(fullname)


@contextlib.asynccontextmanager
async def served(apps: dict[str, Any]) -> AsyncIterator[dict[str, str]]:
    """Each app served by uvicorn on its own loopback socket, in this event loop."""
    servers, tasks, urls = [], [], {}
    for name, app in apps.items():
        sock = loopback_socket()
        urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    try:
        while not all(server.started for server in servers):
            await asyncio.sleep(0.01)
        yield urls
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


def test_rounds_reuse_one_connection_per_member_and_import_nothing(
    make_federation: Any,
) -> None:
    federation = make_federation()
    apps = {name: create_node_app(runner) for name, runner in federation.runners.items()}

    async def main() -> tuple[list[Any], list[str], dict[str, int]]:
        async with served(apps) as urls, PushTransport() as push:
            handles = [NodeHandle(name, url) for name, url in urls.items()]
            first = await federation.coordinator.run_analysis(KM, handles, push)
            attempts = ImportAttempts()
            sys.meta_path.insert(0, attempts)
            try:
                second = await federation.coordinator.run_analysis(KM, handles, push)
            finally:
                sys.meta_path.remove(attempts)
            opened = {url: pool.opened for url, pool in push._pools.items()}
            return [first, second], attempts.names, opened

    results, imported, opened = asyncio.run(main())
    assert all(result.complete for result in results)
    assert results[0].estimates.to_dict() == results[1].estimates.to_dict()
    assert imported == []  # httpcore tried `import sniffio` on every request
    assert sorted(opened.values()) == [1, 1, 1]  # one kept-alive connection per member


@contextlib.asynccontextmanager
async def raw_server(answers: list[bytes], *, close_after_each: bool) -> AsyncIterator[str]:
    """A loopback server reading one request per answer; optionally closing the connection
    after answering (without saying so, as a server whose keep-alive expired does)."""
    pending = list(answers)
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while pending:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(pending.pop(0))
                await writer.drain()
                if close_after_each:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def test_a_connection_closed_while_idle_is_replaced_once() -> None:
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    async def main() -> tuple[list[int], int]:
        async with raw_server([ok, ok, ok], close_after_each=True) as url:
            pool = OriginPool(url)
            statuses = []
            for _ in range(3):
                statuses.append((await pool.post("/x", b"{}", "application/json")).status_code)
            await pool.aclose()
            return statuses, pool.opened

    statuses, opened = asyncio.run(main())
    assert statuses == [200, 200, 200]
    assert opened == 3


def test_chunked_and_close_framed_answers_are_read_whole() -> None:
    chunked = (
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'
    )
    closing = b'HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n{"b":2}'

    async def main() -> list[tuple[int, bytes]]:
        async with raw_server([chunked, closing], close_after_each=False) as url:
            pool = OriginPool(url)
            found = []
            for _ in range(2):
                response = await pool.post("/x", b"{}", "application/json")
                found.append((response.status_code, response.content))
            await pool.aclose()
            return found

    assert asyncio.run(main()) == [(200, b'{"a":1}'), (502, b'{"b":2}')]


def test_a_garbled_answer_is_an_error_not_a_reply() -> None:
    async def main() -> None:
        async with raw_server([b"SMTP ready\r\n\r\n"], close_after_each=True) as url:
            pool = OriginPool(url)
            with pytest.raises(ResponseError, match=r"not an HTTP/1\.1 status line"):
                await pool.post("/x", b"{}", "application/json")

    asyncio.run(main())
