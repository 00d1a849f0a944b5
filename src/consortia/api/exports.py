"""``POST /studies/{study}/exports``: a table of the study's data as a streamed download.

The export is checked and audited before the first byte (a refusal is a problem response,
not a truncated file); then a worker thread writes it through a small bounded queue, so the
response streams in constant memory however large the study is, and stops writing as soon
as the client goes away. The response starts once the first chunk is written, so an error
in it is still a problem response; an error after it drops the connection (the chunked body
never ends), so a client never takes a part of an export for all of it.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.auth.principal import CODE_PATTERN
from consortia.services.exports import ExportFormat, ExportRequest, PlannedExport, plan_export

__all__ = ["ExportAborted", "ExportCreate", "router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/studies/{study}", tags=["exports"])
StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]
_QUEUED_CHUNKS = 8
_PUT_TIMEOUT = 0.5


class ExportCreate(BaseModel):
    """Which table, in which format; identifiers only with a reason (study administrators)."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(
        "values",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="a form, values, queries or audit (ignored by odm)",
    )
    format: ExportFormat = ExportFormat.CSV
    include_identifiers: bool = False
    reason: str | None = Field(None, max_length=2000)


class _Cancelled(Exception):
    """The client went away: stop writing."""


class _QueueWriter(io.RawIOBase):
    """A write-only stream whose chunks go into a bounded queue."""

    def __init__(self, chunks: queue.Queue[bytes | BaseException | None], stop: threading.Event):
        super().__init__()
        self.chunks = chunks
        self.stop = stop

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        chunk = bytes(data)  # type: ignore[call-overload]
        while True:
            if self.stop.is_set():
                raise _Cancelled
            try:
                self.chunks.put(chunk, timeout=_PUT_TIMEOUT)
                return len(chunk)
            except queue.Full:
                continue


class ExportAborted(Exception):
    """An export failed after its first bytes were sent. Raised from the body, it makes the
    server drop the connection, so the chunked body never gets its terminating chunk and the
    client sees an incomplete read, never a short file that looks whole."""


def _stream(planned: PlannedExport) -> Iterator[bytes]:
    """Start writing ``planned`` in a worker thread and wait for its first chunk: an error
    before it (a value that cannot be exported, found in the first 64 KiB) is raised here,
    before the status line, and becomes a problem response; after it, the body fails."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
    stop = threading.Event()

    def offer(item: BaseException | None) -> None:
        # the last word: given up on when the reader has gone (nobody would take it)
        while not stop.is_set():
            try:
                chunks.put(item, timeout=_PUT_TIMEOUT)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            planned.write(_QueueWriter(chunks, stop))  # type: ignore[arg-type]
        except _Cancelled:
            return
        except BaseException as error:  # reported to the reader, logged there
            offer(error)
            return
        offer(None)

    worker = threading.Thread(target=produce, name="export", daemon=True)
    worker.start()
    first = chunks.get()
    if isinstance(first, BaseException):
        stop.set()
        raise first
    body = _body(planned, first, chunks, stop)
    next(body)  # started, so that dropping it unread still runs its `finally`: stop.set()
    return body


def _body(
    planned: PlannedExport,
    first: bytes | None,
    chunks: queue.Queue[bytes | BaseException | None],
    stop: threading.Event,
) -> Iterator[bytes]:
    item: bytes | BaseException | None = first
    try:
        yield b""  # the primer _stream takes
        while item is not None:
            if isinstance(item, BaseException):
                # the status line is gone: drop the connection rather than end the body
                log.error("export of %s failed while streaming: %s", planned.filename, item)
                raise ExportAborted(f"export of {planned.filename} failed: {item}") from item
            yield item
            item = chunks.get()
    finally:
        stop.set()


@router.post("/exports", response_class=StreamingResponse)
def export(
    study: StudyCode, body: ExportCreate, principal: CurrentPrincipal, engine: EngineDep
) -> StreamingResponse:
    """Stream one table of the study (checked and audited before the first byte)."""
    request = ExportRequest(body.format, body.include_identifiers, body.reason)
    planned = plan_export(engine, principal, study, body.table, request)
    return StreamingResponse(
        _stream(planned),
        media_type=planned.media_type,
        headers={"Content-Disposition": f'attachment; filename="{planned.filename}"'},
    )
