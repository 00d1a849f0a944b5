"""Seeded synthetic data for the shipped study templates: plausible patients, not real ones.

:func:`synthesize` builds one site's data for a template with a numpy ``Generator``; the
same template, site, subject count and seed give the same data. They serve ``consortia
demo``, the tests and the benchmarks, so every form instance passes
:func:`~consortia.domain.validation.validate_form` (warnings, which open queries, may occur).

``cart-lbcl``
    1:1 randomisation in blocks of 4 within disease-status strata; PFS exponential from
    randomisation with medians of 12 (CAR-T) and 4 (standard of care) months, 12 % of PFS
    events deaths without progression, censoring at the data cut-off and by loss to
    follow-up; CRS in ~80 % of infused patients (mostly grade 1-2), ICANS in ~30 %, entered
    as daily raw inputs from which the ASTCT grades are derived; CTCAE adverse events;
    Lugano responses with more complete responses after CAR-T.
``ortho-3dp``
    MSTS improving from ~45 % at 3 months to ~77 % at 24 months; complications with
    Henderson types 4 (infection) and 2 (aseptic loosening) the most common; revisions.
``glucose-iso15197``
    references of 40-450 mg/dL spread as ISO 15197 requires; meter error ~N(0, 7 %) with 1 %
    outliers, so ~96-98 % of results are within the ISO limits.
``ai-diagnostic``
    prevalence ~30 %; AI scores Beta(4, 2) in malignant and Beta(2, 4) in benign nodules
    (AUC ~0.90); a reader with sensitivity ~0.80 and specificity ~0.85.

About 3 % of the optional items that no expression reads are left empty.

``records`` are the rows of a wide REDCap-style record export (identifiers included: it is
the site's own data): ``subject_id, site, redcap_event_name, redcap_repeat_instrument,
redcap_repeat_instance`` and one text column per item. A repeating event's rows carry the
instance and no instrument; a form with a repeating group is a repeating instrument with
one row per group instance. Multichoice codes are joined with ``|``, booleans are 1/0.

:meth:`SyntheticData.analysis_rows` is the table the template's ``analysis_plan`` reads:
one row per subject (per paired reading for glucose), without identifiers. Derived
variables come from :func:`~consortia.domain.validation.compute_derived` applied to the
records; a value taken at one visit is named ``<variable>_<event>`` (``cr_day28``,
``msts_percent_month12``).

Modules: :mod:`._builder` (entries as text, seeded draws) and one generator per template
(:mod:`.cart`, :mod:`.ortho`, :mod:`.glucose`, :mod:`.ai`), each documenting its model.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from consortia.domain.study import Study
from consortia.domain.synthetic import ai, cart, glucose, ortho
from consortia.domain.synthetic._builder import Builder, FormEntry, Row, repeating_group
from consortia.domain.templates import load_template
from consortia.exceptions import Problem, ValidationError

__all__ = ["ANALYSIS_TABLES", "ID_COLUMNS", "FormEntry", "SyntheticData", "synthesize"]

ID_COLUMNS: Final = (
    "subject_id",
    "site",
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
)
ANALYSIS_TABLES: Final = {
    "cart-lbcl": "cart_efficacy",
    "ortho-3dp": "ortho_outcomes",
    "glucose-iso15197": "glucose_pairs",
    "ai-diagnostic": "ai_cases",
}


@dataclass(frozen=True)
class SyntheticData:
    """One site's synthetic records of a template and the analysis table built from them."""

    template: str
    study: Study
    site: str
    seed: int
    entries: tuple[FormEntry, ...]
    analysis_table: str
    rows: tuple[Row, ...] = field(repr=False)
    #: each randomised subject's simulated arm (subject id -> arm), for a test or demo to
    #: record as its allocation: an item filled from the allocation is never in ``entries``
    allocations: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """The record export's columns: the identifying columns, then every item."""
        return (*ID_COLUMNS, *(name for _, _, name, _ in self.study.iter_items()))

    @property
    def records(self) -> list[dict[str, str]]:
        """The wide REDCap-style record export, one dict of text per row."""
        rows: list[dict[str, str]] = []
        merged: dict[tuple[str, str, int | None], dict[str, str]] = {}
        for entry in self.entries:
            head = {
                "subject_id": entry.subject_id,
                "site": entry.site,
                "redcap_event_name": entry.event,
                "redcap_repeat_instrument": "",
                "redcap_repeat_instance": ""
                if entry.event_instance is None
                else str(entry.event_instance),
            }
            group = repeating_group(self.study, entry.form)
            if group is None:
                key = (entry.subject_id, entry.event, entry.event_instance)
                if key not in merged:
                    merged[key] = dict.fromkeys(self.columns, "") | head
                    rows.append(merged[key])
                merged[key].update({k: str(v) for k, v in entry.values.items()})
                continue
            instances = entry.values.get(group, [])
            assert isinstance(instances, list)
            for number, instance in enumerate(instances, 1):
                row = dict.fromkeys(self.columns, "") | head
                row["redcap_repeat_instrument"] = entry.form
                row["redcap_repeat_instance"] = str(number)
                row.update(instance)
                rows.append(row)
        return rows

    def write_csv(self, path: str | Path) -> Path:
        """Write :attr:`records` as UTF-8 CSV; return the path.

        >>> import tempfile, pathlib
        >>> data = synthesize("ai-diagnostic", subjects=3, site="SG01", seed=1)
        >>> out = data.write_csv(pathlib.Path(tempfile.mkdtemp()) / "records.csv")
        >>> out.read_text(encoding="utf-8").splitlines()[0][:36]
        'subject_id,site,redcap_event_name,re'
        """
        return _write(path, self.columns, self.records)

    def analysis_rows(self) -> list[Row]:
        """The analysis table: plain values (numbers, text, None), no identifiers.

        >>> rows = synthesize("ai-diagnostic", subjects=20, site="SG01", seed=1).analysis_rows()
        >>> sorted(rows[0])[:4], len(rows)
        (['age', 'ai_call', 'ai_score', 'nodule_mm'], 20)
        """
        return [dict(row) for row in self.rows]

    def write_analysis_csv(self, path: str | Path) -> Path:
        """Write :meth:`analysis_rows` as CSV (missing values empty); return the path.

        Name the file after :attr:`analysis_table` (``cart_efficacy.csv``) so a node serves
        it under the table name the analysis plan uses.
        """
        rows = self.analysis_rows()
        columns = tuple(rows[0]) if rows else ()
        text_rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]
        return _write(path, columns, text_rows)


def _write(path: str | Path, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> Path:
    target = Path(path)
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target


_GENERATORS: Final[Mapping[str, Callable[[Builder, int], list[Row]]]] = {
    "cart-lbcl": cart.generate,
    "ortho-3dp": ortho.generate,
    "glucose-iso15197": glucose.generate,
    "ai-diagnostic": ai.generate,
}


def synthesize(template: str, *, subjects: int, site: str, seed: int) -> SyntheticData:
    """Synthetic records of ``subjects`` subjects at ``site`` for a shipped template.

    The random stream is seeded by ``seed`` and the site code, so two sites given the same
    seed get different patients, and a call repeated with the same arguments gives the same
    data. An unknown template raises :class:`~consortia.exceptions.StudyDefinitionError`; a
    site the template does not list, a subject count below 1 or a negative seed raise
    :class:`~consortia.exceptions.ValidationError`.

    >>> data = synthesize("cart-lbcl", subjects=8, site="SG01", seed=7)
    >>> data.analysis_table, len(data.analysis_rows()), data.records[0]["subject_id"]
    ('cart_efficacy', 8, 'SG01-0001')
    """
    study = load_template(template)
    problems = []
    if site not in study.sites:
        problems.append(
            Problem("site", f"{site!r} is not a site of {template}: {', '.join(study.sites)}")
        )
    if subjects < 1:
        problems.append(Problem("subjects", f"{subjects} is below the minimum 1"))
    if seed < 0:
        problems.append(Problem("seed", f"{seed} is negative; use a seed of 0 or more"))
    if problems:
        raise ValidationError(problems)
    build = Builder(study, site, seed)
    rows = _GENERATORS[template](build, subjects)
    return SyntheticData(
        template=template,
        study=study,
        site=site,
        seed=seed,
        entries=tuple(build.entries),
        analysis_table=ANALYSIS_TABLES[template],
        rows=tuple(rows),
        allocations=dict(build.allocations),
    )
