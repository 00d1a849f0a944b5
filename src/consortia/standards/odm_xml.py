"""Reading ODM XML safely and with positions, and the vocabulary both directions share.

:func:`parse_xml` refuses what a hostile file could use against us before anything is built:
files over :data:`MAX_BYTES`, any DOCTYPE (so no entity expansion — "billion laughs" — and no
external entities — XXE), entity declarations and external references. It returns a small
tree of :class:`Node`, each with the 1-based line and column of its start tag, so every
warning and error can point at the place in the file.

>>> root = parse_xml(b'<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">\\n  <Study OID="S"/></ODM>')
>>> [(child.local, child.get("OID"), child.line) for child in root.children]
[('Study', 'S', 2)]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from consortia.exceptions import InterchangeError, Problem

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_NS = "http://www.w3.org/XML/1998/namespace"
LANG = f"{{{XML_NS}}}lang"
OPENCLINICA_NS = "http://www.openclinica.org/ns/odm_ext_v130/v3.1"
REDCAP_NS = "https://projectredcap.org"
CONSORTIA_NS = "urn:consortia:odm"
"""Our vendor extension namespace: ``FormData/@consortia:Complete`` (``Yes`` or ``No``), the
form status, which ODM 1.3.2 has no attribute for."""

MAX_BYTES = 50 * 1024 * 1024
"""Files larger than this are refused before parsing."""

SOURCE_SYSTEM = "Consortia"
"""``ODM/@SourceSystem`` of files we write; on import it means names are ours, kept as written."""

CONTEXT = "consortia"
"""``FormalExpression/@Context`` of our expressions; ``Alias/@Context`` values start with it."""

# Alias contexts: what the study language has and ODM 1.3.2 has no element for.
ALIAS_PHASE = "consortia:phase"
ALIAS_SPONSOR = "consortia:sponsor"
ALIAS_VERSION = "consortia:version"
ALIAS_PARTNERS = "consortia:partners"  # a JSON list of strings
ALIAS_DESCRIPTION_ZH = "consortia:description.zh"
ALIAS_DAY = "consortia:day"
ALIAS_WINDOW = "consortia:window"  # "before after", in days
ALIAS_TYPE = "consortia:type"  # multichoice | file: what ODM's DataType cannot say
ALIAS_IDENTIFIER = "consortia:identifier"  # "Yes": protected health information
ALIAS_CHECKS = "consortia:checks"  # FormDef: check order; ItemDef: the checks it hosts

DERIVED_GROUP_OID = "IG.derived"
"""The ItemGroupDef holding derived variables; no FormDef refers to it (nothing is collected)."""


@dataclass(eq=False, slots=True)
class Node:
    """One XML element: ``tag`` is ``{namespace}local``; ``line``/``column`` are 1-based."""

    tag: str
    attrib: dict[str, str]
    line: int
    column: int
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.tag[1:].split("}", 1)[0] if self.tag.startswith("{") else ""

    @property
    def local(self) -> str:
        return self.tag.rsplit("}", 1)[-1]

    @property
    def text(self) -> str:
        """The element's own text, stripped (ODM text elements hold no markup)."""
        return "".join(self.parts).strip()

    def get(self, name: str) -> str | None:
        return self.attrib.get(name)

    def odm(self, local: str) -> Iterator[Node]:
        """The ODM-namespace children called ``local``, in document order."""
        tag = f"{{{ODM_NS}}}{local}"
        return (child for child in self.children if child.tag == tag)

    def first(self, local: str) -> Node | None:
        return next(self.odm(local), None)

    def vendor(self, namespace: str, local: str) -> Iterator[Node]:
        """Descendants (at any depth) in a vendor namespace called ``local``."""
        tag = f"{{{namespace}}}{local}"
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            if node.tag == tag:
                yield node
            stack.extend(reversed(node.children))


class _TreeTarget:
    """An ElementTree parser target that builds :class:`Node` and stamps positions."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.stack: list[Node] = []
        self.root: Node | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        expat = self.parser.parser
        node = Node(tag, dict(attrib), expat.CurrentLineNumber, expat.CurrentColumnNumber + 1)
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self.stack.pop()

    def data(self, text: str) -> None:
        if self.stack:
            self.stack[-1].parts.append(text)

    def close(self) -> Node | None:
        return self.root


def parse_xml(data: bytes, file: str = "") -> Node:
    """Parse ``data`` into a :class:`Node` tree, or raise :class:`InterchangeError`.

    DTDs, entity declarations and external references are refused (with their line), so
    neither entity expansion nor external file reads can happen.
    """
    if len(data) > MAX_BYTES:
        raise InterchangeError(
            [
                Problem(
                    "",
                    f"the file is {len(data):,} bytes; ODM files over {MAX_BYTES:,} bytes "
                    "are refused",
                    file,
                )
            ]
        )
    target = _TreeTarget()
    parser = DefusedXMLParser(
        target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    target.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except ParseError as error:
        line, offset = error.position
        message = str(error).split(":", 1)[0]
        raise InterchangeError(
            [Problem("", f"not well-formed XML: {message}", file, line, offset + 1)]
        ) from None
    except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as error:
        expat = parser.parser
        what = {
            DTDForbidden: "a DOCTYPE (document type declaration)",
            EntitiesForbidden: "an entity declaration",
            ExternalReferenceForbidden: "an external entity reference",
        }[type(error)]
        raise InterchangeError(
            [
                Problem(
                    "",
                    f"{what} is not allowed in an ODM file: it could expand entities or "
                    "read other files",
                    file,
                    expat.CurrentLineNumber,
                    expat.CurrentColumnNumber + 1,
                )
            ]
        ) from None
    if not isinstance(root, Node):  # pragma: no cover - expat always yields a root or fails
        raise InterchangeError([Problem("", "the file has no XML element", file)])
    return root
