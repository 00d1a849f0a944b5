"""Reading a clinical data file for an import: its format sniffed, every form record
parsed (:mod:`consortia.standards.clinical_data`), and progress reported as it is read.

:mod:`consortia.services.imports` checks and writes the records, and re-exports these
names.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from consortia.services.studies import Definition
from consortia.standards.clinical_data import (
    FileFormRecord,
    read_long_csv,
    read_odm_clinical,
    read_wide_csv,
    sniff_format,
)

__all__ = ["Progress", "read_records"]

#: progress(phase, done, total): phases "read" (bytes), "check" and "write" (forms)
Progress = Callable[[str, int, int], None]


class _CountingReader(io.RawIOBase):
    """A binary stream that reports how far it has been read."""

    def __init__(self, stream: BinaryIO, total: int, progress: Progress | None) -> None:
        super().__init__()
        self.stream = stream
        self.total = total
        self.progress = progress
        self.done = 0
        self.last = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.done += len(data)
        if self.progress and self.done - self.last >= 1 << 20:
            self.last = self.done
            self.progress("read", self.done, self.total)
        return len(data)


def read_records(
    definition: Definition, path: Path, *, progress: Progress | None = None
) -> tuple[str, list[FileFormRecord]]:
    """Every form record of the file (structural problems: InterchangeError)."""
    kind = sniff_format(path)
    total = path.stat().st_size
    with path.open("rb") as raw:
        counting = io.BufferedReader(_CountingReader(raw, total, progress), 1 << 16)
        if kind == "odm":
            records = list(read_odm_clinical(definition.study, counting, file=str(path)))
        else:
            text = io.TextIOWrapper(counting, encoding="utf-8-sig", newline="")
            reader = read_long_csv if kind == "csv-long" else read_wide_csv
            records = list(reader(definition.study, text, file=str(path)))
    if progress:
        progress("read", total, total)
    return kind, records
