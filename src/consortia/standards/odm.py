"""CDISC ODM 1.3.2 study metadata: export a study, import one written by us or another system.

>>> from consortia.domain.study_yaml import load_study
>>> study = load_study("examples/cart-tour.yaml")  # doctest: +SKIP
>>> xml = export_odm(study)  # doctest: +SKIP
>>> import_odm_bytes(xml).study == study.model_copy(update={"sites": {}, "arms": {},
...                                                         "analysis_plan": {}})  # doctest: +SKIP
True

* :func:`export_odm` / :func:`export_odm_file` write a Snapshot valid against the official
  schema vendored in :data:`SCHEMA` (the mapping is documented in
  :mod:`consortia.standards.odm_export`).
* :func:`import_odm` / :func:`import_odm_bytes` read ODM 1.3.x metadata into a fully validated
  :class:`~consortia.domain.study.Study`, with warnings (and their lines) for what could not be
  carried over; broken or hostile files raise :class:`~consortia.exceptions.InterchangeError`
  listing every problem (see :mod:`consortia.standards.odm_import` and
  :mod:`consortia.standards.odm_xml`).

The parts: :mod:`~consortia.standards.odm_xml` (safe parsing with line numbers, shared
vocabulary), :mod:`~consortia.standards.odm_export`, :mod:`~consortia.standards.odm_import`
(structure) with :mod:`~consortia.standards.odm_items` (items, code lists, expressions) and
:mod:`~consortia.standards.odm_vendors` (OpenClinica and REDCap extensions).
"""

from __future__ import annotations

from pathlib import Path

from consortia.standards.odm_export import export_odm, export_odm_file
from consortia.standards.odm_import import OdmImport, import_odm, import_odm_bytes
from consortia.standards.odm_xml import MAX_BYTES, ODM_NS

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / "odm1-3-2"
"""The official CDISC ODM 1.3.2 XSD files, unmodified (see README.txt there)."""

SCHEMA = SCHEMA_DIR / "ODM1-3-2.xsd"
"""The schema's entry point; all its imports resolve to files next to it."""

EXTENDED_SCHEMA = SCHEMA_DIR.parent / "consortia" / "ODM1-3-2-consortia.xsd"
""":data:`SCHEMA` with our vendor extension (``FormData/@consortia:Complete``) added by
redefinition, as ODM intends extensions: what a receiver validates our ClinicalData
against."""

__all__ = [
    "EXTENDED_SCHEMA",
    "MAX_BYTES",
    "ODM_NS",
    "SCHEMA",
    "SCHEMA_DIR",
    "OdmImport",
    "export_odm",
    "export_odm_file",
    "import_odm",
    "import_odm_bytes",
]
