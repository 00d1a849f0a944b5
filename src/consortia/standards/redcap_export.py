"""Exporting a study as a REDCap data dictionary (how fields map: see
:mod:`consortia.standards.redcap_dictionary`).

What the study has and REDCap cannot hold (events, repeating groups, edit checks, Chinese
text, expressions with no REDCap equivalent) is reported as warnings, each with its path in
the study and, given the source, its file and line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from consortia.domain.study import DerivedType, Item, ItemType, Study
from consortia.domain.yamlsource import YamlDocument
from consortia.exceptions import ExpressionError, Problem
from consortia.standards.redcap_dictionary import COLUMNS, FORCE_TAG
from consortia.standards.redcap_logic_writer import expression_to_logic
from consortia.standards.redcap_naming import redcap_names

__all__ = ["RedcapExport", "export_redcap", "export_redcap_file"]


@dataclass(frozen=True)
class RedcapExport:
    """A data dictionary as CSV text and what the study had that REDCap cannot hold."""

    text: str
    warnings: tuple[Problem, ...]


_TEXT_VALIDATION: Final = {
    ItemType.DATE: "date_ymd",
    ItemType.DATETIME: "datetime_ymd",
    ItemType.TIME: "time",
    ItemType.INTEGER: "integer",
    ItemType.DECIMAL: "number",
}
_FIELD_TYPE: Final = {
    ItemType.BOOLEAN: "yesno",
    ItemType.CHOICE: "radio",
    ItemType.MULTICHOICE: "checkbox",
    ItemType.FILE: "file",
}


def _unit_tag(unit: str) -> str:
    quote = "'" if '"' in unit else '"'
    return f"@CONSORTIA-UNIT={quote}{unit}{quote}"


def _row(name: str, form: str, kind: str, label: str, **cells: str) -> list[str]:
    values = {"field_name": name, "form_name": form, "field_type": kind, "field_label": label}
    return [{**values, **cells}.get(key, "") for key, _, _ in COLUMNS]


class _Exporter:
    def __init__(self, study: Study, source: YamlDocument | None = None) -> None:
        self.study = study
        self.source = source
        self.warnings: list[Problem] = []
        self.redcap = redcap_names(study)
        item_paths = {
            name: f"forms.{form}.groups.{group}.items.{name}"
            for form, group, name, _ in study.iter_items()
        }
        item_paths |= {name: f"derived.{name}" for name in study.derived}
        self.names = self.renamed(self.redcap.fields, item_paths)
        self.types = {name: item.type for _, _, name, item in study.iter_items()}
        self.types |= {name: ItemType(d.type.value) for name, d in study.derived.items()}

    def warn(self, path: str, message: str, *, at: str = "") -> None:
        """A warning about ``path``, placed at its line in the source (or at ``at``'s)."""
        if self.source is None:
            self.warnings.append(Problem(path, message))
            return
        line, column = self.source.locate(at or path)
        self.warnings.append(Problem(path, message, self.source.file, line, column))

    def renamed(self, names: Mapping[str, str], paths: Mapping[str, str]) -> Mapping[str, str]:
        for name, redcap in names.items():
            if redcap != name:
                self.warn(paths[name], f"written as {redcap!r}: REDCap names are lowercase")
        return names

    def rows(self) -> list[list[str]]:
        study = self.study
        forms = self.renamed(self.redcap.forms, {name: f"forms.{name}" for name in study.forms})
        record_id = self.redcap.record_id
        rows = [_row(record_id, next(iter(forms.values()), "form"), "text", "Record ID")]
        for form_name, form in study.forms.items():
            for group_name, group in form.groups.items():
                path = f"forms.{form_name}.groups.{group_name}"
                if group.repeating:
                    self.warn(
                        path,
                        "REDCap has no repeating groups (make the instrument "
                        "repeating in REDCap); its items are written once",
                    )
                for index, (name, item) in enumerate(group.items.items()):
                    header = group.label.en if group.label and index == 0 else ""
                    item_path = f"{path}.items.{name}"
                    rows.append(self.item_row(item_path, name, item, forms[form_name], header))
            if form.checks:
                names = ", ".join(check.name for check in form.checks)
                self.warn(
                    f"forms.{form_name}.checks",
                    "edit checks are not part of a data "
                    f"dictionary (use REDCap data quality rules); not written: {names}",
                )
        derived_form = self.redcap.derived_form
        for name, derived in study.derived.items():
            path = f"derived.{name}"
            try:
                calculation = expression_to_logic(
                    derived.expression, self.types, self.names, condition=False
                )
            except ExpressionError as error:
                self.warn(path, f"not written: {error.message}")
                continue
            tags = [f"@CONSORTIA-TYPE={derived.type}"] if derived.type != "decimal" else []
            if derived.type in (DerivedType.TEXT, DerivedType.DATE):
                self.warn(
                    path,
                    f"REDCap calc fields are numeric; this {derived.type} variable "
                    "is written as one, marked @CONSORTIA-TYPE",
                )
            tags += [_unit_tag(derived.unit)] if derived.unit else []
            cells = {"choices": calculation, "annotation": " ".join(tags)}
            rows.append(_row(self.names[name], derived_form, "calc", derived.label.en, **cells))
        self.dropped()
        return rows

    def item_row(self, path: str, name: str, item: Item, form: str, header: str) -> list[str]:
        cells = {"section_header": header, "validation": _TEXT_VALIDATION.get(item.type, "")}
        tags: list[str] = []
        if item.type is ItemType.DECIMAL and item.precision is not None:
            if 1 <= item.precision <= 4:
                cells["validation"] = f"number_{item.precision}dp"
            else:
                self.warn(f"{path}.precision", "REDCap offers 1 to 4 decimals; written as number")
        bounds = item.range or item.soft_range
        if item.range is not None:
            tags.append(FORCE_TAG)
            if item.soft_range is not None:
                self.warn(
                    f"{path}.soft_range",
                    "REDCap has one min/max per field: the range is "
                    "written with @FORCE-MINMAX, the soft range is dropped",
                )
        for key in ("min", "max"):
            value = getattr(bounds, key) if bounds else None
            if value is not None:
                cells[key] = str(int(value)) if value == int(value) else repr(value)
        tags += [f"@MAXCHARS={item.max_length}"] if item.max_length else []
        tags += [_unit_tag(item.unit)] if item.unit else []
        if item.code_list is not None:
            cells["choices"] = self.choices(item.code_list)
        if item.show_if is not None:
            try:
                cells["branching_logic"] = expression_to_logic(item.show_if, self.types, self.names)
            except ExpressionError as error:
                self.warn(f"{path}.show_if", f"not written: {error.message}")
        cells |= {"required": "y" if item.required else "", "annotation": " ".join(tags)}
        cells |= {"identifier": "y" if item.identifier else ""}
        cells |= {"field_note": item.help.en if item.help else ""}
        kind = _FIELD_TYPE.get(item.type, "text")
        return _row(self.names[name], form, kind, item.label.en, **cells)

    def choices(self, code_list: str) -> str:
        entries = self.study.code_lists[code_list]
        for entry in entries:
            if any(char in entry.code for char in ",|") or "|" in entry.label.en:
                self.warn(
                    f"code_lists.{code_list}",
                    f"code {entry.code!r}: REDCap choices "
                    "cannot hold ',' in a code or '|' anywhere",
                )
        return " | ".join(f"{entry.code}, {entry.label.en}" for entry in entries)

    def dropped(self) -> None:
        study = self.study
        events = list(study.events.values())
        if not (len(events) == 1 and list(events[0].forms) == list(study.forms)):
            self.warn(
                "events",
                f"{len(events)} events not written: a data dictionary has no "
                "events (define them in REDCap's project setup)",
            )
        for key in ("sites", "arms", "randomisation", "analysis_plan"):
            if getattr(study, key):
                self.warn(key, "not part of a data dictionary; not written")
        # (where, text): the warning is placed at the first text that has Chinese
        texts = [("study.title", study.study.title)]
        texts += [(f"forms.{name}.label", form.label) for name, form in study.forms.items()]
        for form, group, name, item in study.iter_items():
            path = f"forms.{form}.groups.{group}.items.{name}"
            texts += [(f"{path}.label", item.label)]
            texts += [(f"{path}.help", item.help)] if item.help else []
        texts += [
            (f"code_lists.{name}[{index}].label", entry.label)
            for name, entries in study.code_lists.items()
            for index, entry in enumerate(entries)
        ]
        texts += [(f"derived.{name}.label", d.label) for name, d in study.derived.items()]
        chinese = next((where for where, text in texts if text.zh != text.en), None)
        if chinese is not None:
            self.warn(
                "labels",
                "Chinese (zh) text not written: a data dictionary has one language",
                at=chinese,
            )


def export_redcap(study: Study, source: YamlDocument | None = None) -> RedcapExport:
    """Write a study as a REDCap data dictionary (CSV text, CRLF line ends, no BOM).

    ``warnings`` lists what REDCap cannot hold: events, repeating groups, edit checks,
    Chinese text, a soft range next to a hard one, expressions with no REDCap equivalent.
    Given the ``source`` the study was read from, each names its file and line.

    >>> from consortia.domain.study_yaml import load_study
    >>> result = export_redcap(load_study("examples/cart-tour.yaml"))  # doctest: +SKIP
    >>> result.text.splitlines()[1]  # doctest: +SKIP
    'record_id,consent,,text,Record ID,,,,,,,,,,,,,'
    """
    exporter = _Exporter(study, source)
    rows = exporter.rows()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([long for _, long, _ in COLUMNS])
    writer.writerows(rows)
    return RedcapExport(buffer.getvalue(), tuple(exporter.warnings))


def export_redcap_file(study: Study, path: str | Path) -> tuple[Problem, ...]:
    """Write the dictionary to ``path`` with a UTF-8 BOM, as REDCap's own downloads have;
    return the warnings of :func:`export_redcap`."""
    result = export_redcap(study)
    with open(path, "w", encoding="utf-8-sig", newline="") as stream:
        stream.write(result.text)
    return result.warnings
