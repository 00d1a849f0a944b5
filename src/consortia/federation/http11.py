"""The lead's HTTP/1.1 client for pushing tasks: one keep-alive pool per member.

A round sends one small POST to every member at once, so the lead's per-request cost is
multiplied by the number of members, every round. A general client (httpx over httpcore)
spends most of a loopback round's CPU on itself: httpcore 1.0 tries to ``import sniffio``
for every request (a failed import, ~0.2 ms, where sniffio is not installed), and its
connection pool walks every open connection, twice, for each request it assigns (quadratic
in the number of members when they share one pool). :class:`OriginPool` does only what the
push transport needs: ``POST`` a body to one origin (``http`` or ``https``) and read the
status and body back, over connections kept alive between rounds (a stale one, closed by the
member while idle, is replaced once before any byte of the answer came). Responses are read
by their ``Content-Length`` or chunked framing, up to :data:`MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["MAX_RESPONSE_BYTES", "HttpResponse", "OriginPool", "ResponseError"]

#: The largest answer the lead reads from a member (an unstratified Cox round of a large
#: node is a few MB); a larger one is refused, not buffered.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
_MAX_IDLE = 8


class ResponseError(OSError):
    """The member's answer is not a well-formed HTTP/1.1 response (or is too large)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A member's answer: status code and body."""

    status_code: int
    content: bytes


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: bool = field(default=False)

    def close(self) -> None:
        self.writer.close()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body and whether the connection can be kept (by framing)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readline()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ResponseError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts), True
            total += size
            if total > MAX_RESPONSE_BYTES:
                raise ResponseError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is None:  # framed by closing the connection
        body = await reader.read(MAX_RESPONSE_BYTES + 1)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ResponseError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
        return body, False
    try:
        size = int(length)
    except ValueError:
        raise ResponseError(f"bad Content-Length {length[:40]!r}") from None
    if not 0 <= size <= MAX_RESPONSE_BYTES:
        raise ResponseError(f"the answer's Content-Length {size} is out of bounds")
    return await reader.readexactly(size), True


class OriginPool:
    """Keep-alive HTTP/1.1 connections to one origin (``scheme://host:port``)."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        default = 443 if self.https else 80
        self.host_header = self.host if self.port == default else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):  # IPv6 literal
            self.host_header = (
                f"[{self.host}]" if self.port == default else f"[{self.host}]:{self.port}"
            )
        self.ssl_context = ssl_context if self.https else None
        self._idle: list[_Connection] = []
        self.opened = 0  # connections opened so far (tests check reuse)

    async def _connect(self) -> _Connection:
        if self.https:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context, server_hostname=self.host
            )
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return _Connection(reader, writer)

    async def post(self, path: str, body: bytes, content_type: str) -> HttpResponse:
        """POST ``body`` to ``path``; the answer (raises OSError when the origin fails)."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Accept: application/json\r\n\r\n"
        ).encode("ascii")
        while True:
            connection = self._idle.pop() if self._idle else await self._connect()
            reused = connection.used
            try:
                response, keep = await self._exchange(connection, head + body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                connection.close()
                stale = isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
                if reused and (stale or isinstance(exc, ConnectionError)):
                    continue  # closed by the origin while idle: once more, on a new one
                if isinstance(exc, asyncio.IncompleteReadError):
                    raise ResponseError("the connection closed before the answer") from None
                raise
            except BaseException:  # cancelled mid-exchange: the connection is unusable
                connection.close()
                raise
            if keep and len(self._idle) < _MAX_IDLE:
                connection.used = True
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def _exchange(self, connection: _Connection, request: bytes) -> tuple[HttpResponse, bool]:
        connection.writer.write(request)
        reader = connection.reader
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ResponseError("the answer's header is too long") from None
        status_line, _, header_block = head.partition(b"\r\n")
        status = _status(status_line)
        headers = _headers(header_block)
        content, framed = await _read_body(reader, headers)
        keep = framed and headers.get("connection", "").lower() != "close"
        return HttpResponse(status, content), keep

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()


def _status(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ResponseError(f"not an HTTP/1.1 status line: {line[:60]!r}")
    return int(parts[1])


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ResponseError(f"not a header line: {line[:60]!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers
