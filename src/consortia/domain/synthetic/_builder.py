"""The machinery shared by the template generators: form entries as text, seeded draws."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Final

import numpy as np

from consortia.domain.expressions import parse
from consortia.domain.study import ItemType, Study
from consortia.domain.validation import compute_derived, parse_value

MISSING_RATE: Final = 0.03
Row = dict[str, object]


@dataclass(frozen=True)
class FormEntry:
    """One form instance of one subject, as the text a site would enter.

    ``values`` maps item names to text; for a form with a repeating group, the group's name
    maps to a list of instances (dicts of text). Pass ``values`` to ``validate_form``.
    """

    subject_id: str
    site: str
    event: str
    event_instance: int | None
    form: str
    values: Mapping[str, object]


def repeating_group(study: Study, form: str) -> str | None:
    """The name of the form's repeating group, if it has one."""
    return next((name for name, g in study.forms[form].groups.items() if g.repeating), None)


def _text(kind: ItemType, precision: int | None, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if kind is ItemType.DECIMAL:
        assert isinstance(value, int | float | Decimal)
        return f"{float(value):.{precision or 0}f}"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return "|".join(str(code) for code in value)
    return str(value)


class Builder:
    """One site's form entries, with every random number drawn from one Generator."""

    def __init__(self, study: Study, site: str, seed: int) -> None:
        self.study, self.site = study, site
        self.rng = np.random.default_rng([seed, zlib.crc32(site.encode("utf-8"))])
        self.entries: list[FormEntry] = []
        self.mine: list[FormEntry] = []  # the current subject's entries
        self.current = ""
        #: each subject's simulated allocation (subject id -> arm): a node records it by
        #: randomising, never as form data
        self.allocations: dict[str, str] = {}
        self.items = {name: item for _, _, name, item in study.iter_items()}
        sources = [d.expression for d in study.derived.values()]
        sources += [c.expression for form in study.forms.values() for c in form.checks]
        sources += [item.show_if for item in self.items.values() if item.show_if]
        read = set().union(*(parse(source).names for source in sources))
        # optional items that change no derived value, check or visibility when left empty
        self.optional = frozenset(
            name for name, item in self.items.items() if not item.required and name not in read
        )

    def subject(self, number: int) -> str:
        """Start the next subject; later entries are theirs."""
        self.current, self.mine = f"{self.site}-{number:04d}", []
        return self.current

    def _texts(self, values: Mapping[str, object]) -> dict[str, str]:
        texts = {}
        for name, value in values.items():
            item = self.items[name]
            if value is None or (name in self.optional and self.rng.random() < MISSING_RATE):
                continue
            texts[name] = _text(item.type, item.precision, value)
        return texts

    def add(
        self,
        event: str,
        form: str,
        values: Mapping[str, object] | Sequence[Mapping[str, object]],
        instance: int | None = None,
    ) -> FormEntry:
        """Add one form instance; a form with a repeating group takes a list of instances."""
        group = repeating_group(self.study, form)
        if group is not None:
            assert isinstance(values, Sequence)
            entered: Mapping[str, object] = {group: [self._texts(one) for one in values]}
        else:
            assert isinstance(values, Mapping)
            entered = self._texts(values)
        entry = FormEntry(self.current, self.site, event, instance, form, entered)
        self.entries.append(entry)
        self.mine.append(entry)
        return entry

    def typed(self, *events: str) -> Row:
        """The current subject's typed values of non-repeating forms (of ``events``, if any)."""
        values: Row = {}
        for entry in self.mine:
            if not events or entry.event in events:
                values.update(self.parsed(entry.values))
        return values

    def parsed(self, texts: Mapping[str, object]) -> Row:
        return {
            name: parse_value(self.study, name, text)
            for name, text in texts.items()
            if name in self.items and isinstance(text, str)
        }

    def derived(self, values: Mapping[str, object]) -> Row:
        return compute_derived(self.study, values)

    # random draws ---------------------------------------------------------------------

    def pick(self, options: Sequence[str], p: Sequence[float] | None = None) -> str:
        return options[int(self.rng.choice(len(options), p=p))]

    def chance(self, probability: float) -> bool:
        return bool(self.rng.random() < probability)

    def normal(self, mean: float, sd: float, low: float, high: float, digits: int = 0) -> float:
        return round(float(np.clip(self.rng.normal(mean, sd), low, high)), digits)

    def whole(self, low: int, high: int) -> int:
        """A whole number from low to high, both included."""
        return int(self.rng.integers(low, high + 1))

    def after(self, start: date, low: int, high: int | None = None) -> date:
        """``start`` plus ``low`` days, or plus a whole number of days from low to high."""
        return start + timedelta(days=low if high is None else self.whole(low, high))

    def person(self, consent: date, age: int) -> Row:
        """Made-up identifiers: initials, a birth date giving ``age`` at consent, a number."""
        letters = "ABCDEFGHJKLMNPRSTWXYZ"
        anchor = consent.replace(year=consent.year - age, day=min(consent.day, 28))
        return {
            "initials": "".join(letters[self.whole(0, len(letters) - 1)] for _ in range(2)),
            "birth_date": anchor - timedelta(days=self.whole(0, 360)),
            "hospital_number": f"{self.site}H{self.whole(1_000_000, 9_999_999)}",
        }

    def enrolment(self, subjects: int, start: date, days: int) -> list[date]:
        """Sorted enrolment dates spread uniformly over ``days`` from ``start``."""
        offsets = np.sort(self.rng.uniform(0, days, subjects))
        return [start + timedelta(days=int(offset)) for offset in offsets]


def analysis_row(values: Mapping[str, object]) -> Row:
    """An analysis row: floats, not Decimals, and 0/1, not booleans."""
    return {
        name: int(value)
        if isinstance(value, bool)
        else float(value)
        if isinstance(value, Decimal)
        else value
        for name, value in values.items()
    }
