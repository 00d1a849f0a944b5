"""Request bodies read under limits, as pure ASGI: nothing large is ever buffered.

:class:`BodyLimit` wraps an app's ``receive``: a ``Content-Length`` over the limit is
refused before a byte is read (413), a chunked body is counted as it streams and refused
as soon as it passes the limit, and a JSON body is scanned as it streams so that one
nested deeper than ``max_json_depth`` is refused (400) before any parser sees it (Python's
parser spends memory and time in proportion to the nesting, and fails past ~1,000 levels).
The refusal is an RFC 9457 problem response, whatever the app was doing with the body.

>>> scanner = JsonDepth(2)
>>> scanner.feed(b'{"a": [1, "[[[["]}')
>>> scanner.feed(b'[[[') # doctest: +ELLIPSIS
Traceback (most recent call last):
...
consortia.asgi.BodyRefused: 400: the JSON body nests deeper than 2 levels
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final

from starlette.exceptions import HTTPException

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "BodyLimit",
    "BodyRefused",
    "JsonDepth",
    "problem_body",
    "send_problem",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


class BodyRefused(HTTPException):
    """A request body over a limit (413) or nested too deep (400).

    An ``HTTPException`` so that a framework reading the body passes it on unchanged.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail)


def problem_body(status: int, detail: str) -> bytes:
    """The JSON of an RFC 9457 problem response."""
    return json.dumps(
        {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
         "detail": detail},
        separators=(",", ":"),
    ).encode("utf-8")  # fmt: skip


async def send_problem(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a whole problem response (the connection is closed after a refused body)."""
    body = problem_body(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode("ascii")),
                (b"content-length", str(len(body)).encode("ascii")),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonDepth:
    """Follows the nesting of a JSON text fed in pieces; refuses it past ``limit`` levels.

    It only tracks brackets outside strings (and escapes inside them): it validates
    nothing else, which the parser does afterwards on a text known to be shallow.
    """

    __slots__ = ("depth", "escaped", "in_string", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, chunk: bytes) -> None:
        if not self.in_string and b'"' not in chunk and b"\\" not in chunk:
            # the common fast path: no strings in this piece
            for byte in chunk:
                if byte == 0x5B or byte == 0x7B:  # [ {
                    self._deeper()
                elif byte == 0x5D or byte == 0x7D:  # ] }
                    self.depth -= 1
            return
        for byte in chunk:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:  # "
                    self.in_string = False
            elif byte == 0x22:
                self.in_string = True
            elif byte == 0x5B or byte == 0x7B:
                self._deeper()
            elif byte == 0x5D or byte == 0x7D:
                self.depth -= 1

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > self.limit:
            raise BodyRefused(400, f"the JSON body nests deeper than {self.limit} levels")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _is_json(scope: Scope) -> bool:
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return content_type == b"application/json" or content_type.endswith(b"+json")


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None: absent); -1 when it is not a number."""
    value = _header(scope, b"content-length")
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else -1


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes, the most this node accepts"


class BodyLimit:
    """Pure ASGI middleware: every request body of ``app`` under ``max_bytes`` (413) and,
    when it is JSON, under ``max_json_depth`` levels of nesting (400).

    ``paths`` (prefixes) limits it to some requests; the others pass untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        max_json_depth: int = 32,
        paths: tuple[str, ...] = ("/",),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.paths):
            await self.app(scope, receive, send)
            return
        await limited(self.app, scope, receive, send, self.max_bytes, self.max_json_depth)


async def limited(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    max_bytes: int,
    max_json_depth: int,
) -> None:
    """Run ``app`` with its request body under the limits (see :class:`BodyLimit`)."""
    length = declared_length(scope)
    if length is not None and (length < 0 or length > max_bytes):
        if length < 0:
            await send_problem(send, 400, "the Content-Length header is not a number")
        else:
            await send_problem(send, 413, too_large(max_bytes))
        return
    depth = JsonDepth(max_json_depth) if _is_json(scope) else None
    received = 0
    refusal: BodyRefused | None = None
    started = False

    async def counted_receive() -> Message:
        nonlocal received, refusal
        if refusal is not None:
            raise refusal
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            received += len(chunk)
            try:
                if received > max_bytes:
                    raise BodyRefused(413, too_large(max_bytes))
                if depth is not None and chunk:
                    depth.feed(chunk)
            except BodyRefused as error:
                refusal = error
                raise
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if refusal is not None:
            return  # the app answers a body it could not read: the refusal is sent instead
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, counted_receive, guarded_send)
    except BodyRefused as error:
        if refusal is None:
            raise
        refusal = error
    if refusal is not None and not started:
        close = [(b"connection", b"close")]
        await send_problem(send, refusal.status_code, str(refusal.detail), close)
