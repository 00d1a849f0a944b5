"""Study names for what an ODM file names by OID: valid, unique, and readable.

:func:`oid_stem` takes the meaningful end of an OID (our ``SE.screening``, OpenClinica's
``F_DEMOG_V10``), a :class:`Namer` makes it a valid study name unique within its kind, and
:func:`shorten` trims text quoted in a message. Used by :mod:`consortia.standards.odm_import`
and :mod:`consortia.standards.odm_items`.
"""

from __future__ import annotations

import re

__all__ = ["NAME", "Namer", "oid_stem", "shorten"]

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_OC_PREFIX = re.compile(r"^(SE|F|IG|I|CL|MU)_(?=.)", re.IGNORECASE)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` for a message: at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class Namer:
    """Hands out valid, unique study names."""

    def __init__(self, keep_case: bool) -> None:
        self.keep_case = keep_case
        self.used: set[str] = set()

    def claim(self, raw: str, fallback: str) -> str:
        if self.keep_case and NAME.match(raw):
            base = raw
        else:
            base = re.sub(r"[^0-9a-z]+", "_", raw.lower()).strip("_") or fallback
            if not base[0].isalpha():
                base = f"{fallback}_{base}"
            base = base[:64].rstrip("_")
        name, counter = base, 1
        while name in self.used:
            counter += 1
            suffix = f"_{counter}"
            name = base[: 64 - len(suffix)] + suffix
        self.used.add(name)
        return name


def oid_stem(oid: str, ours: bool) -> str:
    """``SE.screening`` → screening, ``IG.demo.main`` → main, ``F_DEMOG_V10`` → DEMOG_V10."""
    stem = oid.rsplit(".", 1)[-1] or oid
    return stem if ours else _OC_PREFIX.sub("", stem)
