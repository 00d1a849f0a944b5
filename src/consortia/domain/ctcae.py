"""Adverse events graded by NCI CTCAE v5.0 (2017): the terms checked here and the event record.

:data:`CTCAE_V5_TERMS` is a deliberately small subset relevant to CAR-T; an
:class:`AdverseEvent` checks its grade against its term when the term is known, and refuses
what cannot be true of an event, listing every problem at once. Grades and seriousness
criteria are the labelled enums of :mod:`consortia.domain.grading`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from consortia.domain.grading import (
    CtcaeGrade,
    SeriousnessCriterion,
    check_int,
    coerce_member,
    raise_if_any,
)
from consortia.exceptions import Problem, ValidationError

Lang = Literal["en", "zh"]
Limb = Literal["upper", "lower"]

# CTCAE v5.0 adverse events


@dataclass(frozen=True, slots=True)
class CtcaeTerm:
    """A CTCAE term, its MedDRA System Organ Class and the grades that exist for it."""

    name: str
    meddra_soc: str
    grades: frozenset[CtcaeGrade]

    def check_grade(self, grade: int) -> CtcaeGrade:
        """Return ``grade`` as a :class:`CtcaeGrade`, refusing one the term does not have.

        >>> ctcae_term("Neutrophil count decreased").check_grade(4)
        <CtcaeGrade.LIFE_THREATENING: 4>
        """
        problems: list[Problem] = []
        check_int(grade, "grade", 1, 5, problems)
        if not problems and grade not in self.grades:
            allowed = ", ".join(str(int(g)) for g in sorted(self.grades))
            problems.append(
                Problem("grade", f"{grade} does not exist for {self.name!r}; expected {allowed}")
            )
        raise_if_any(problems)
        return CtcaeGrade(grade)


def _term(name: str, soc: str, low: int, high: int) -> tuple[str, CtcaeTerm]:
    grades = frozenset(CtcaeGrade(g) for g in range(low, high + 1))
    return name.casefold(), CtcaeTerm(name, soc, grades)


_BLOOD = "Blood and lymphatic system disorders"
_GENERAL = "General disorders and administration site conditions"
_NERVOUS = "Nervous system disorders"

#: A deliberately small subset of CTCAE v5.0 relevant to CAR-T, keyed by case-folded term.
#: Terms outside it are accepted unchecked by :class:`AdverseEvent`; :func:`ctcae_term`
#: refuses them.
CTCAE_V5_TERMS: Final[Mapping[str, CtcaeTerm]] = dict(
    [
        _term("Cytokine release syndrome", "Immune system disorders", 1, 5),
        _term("Neutrophil count decreased", "Investigations", 1, 4),
        _term("Platelet count decreased", "Investigations", 1, 4),
        _term("Lymphocyte count decreased", "Investigations", 1, 4),
        _term("Febrile neutropenia", _BLOOD, 3, 5),
        _term("Anemia", _BLOOD, 1, 5),
        _term("Fatigue", _GENERAL, 1, 3),
        _term("Fever", _GENERAL, 1, 5),
        _term("Nausea", "Gastrointestinal disorders", 1, 3),
        _term("Hypotension", "Vascular disorders", 1, 5),
        _term("Hypoxia", "Respiratory, thoracic and mediastinal disorders", 2, 5),
        _term("Encephalopathy", _NERVOUS, 1, 5),
        _term("Seizure", _NERVOUS, 1, 5),
        _term("Tremor", _NERVOUS, 1, 3),
        _term("Headache", _NERVOUS, 1, 3),
    ]
)


def ctcae_term(name: str) -> CtcaeTerm:
    """Look up a CTCAE v5.0 term (case-insensitive) in :data:`CTCAE_V5_TERMS`.

    >>> term = ctcae_term("febrile neutropenia")
    >>> term.meddra_soc, sorted(int(g) for g in term.grades)
    ('Blood and lymphatic system disorders', [3, 4, 5])
    """
    found = CTCAE_V5_TERMS.get(name.strip().casefold())
    if found is None:
        raise ValidationError(
            [Problem("term", f"{name!r} is not in the CTCAE v5.0 term table of this module")]
        )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class AdverseEvent:
    """One adverse event graded with CTCAE, with its seriousness kept separate.

    Severity (``grade``) is not seriousness: a grade 3 nausea can be non-serious and a grade
    2 event that prolongs a hospital stay is serious. Rules enforced:

    - ``serious=True`` needs at least one criterion, and criteria need ``serious=True``;
    - a grade 5 event's outcome is death, so it must be serious with the ``death`` criterion
      (the converse is not enforced: the grade stays the clinician's judgement);
    - for ``ctcae_version="5.0"`` and a term in :data:`CTCAE_V5_TERMS`, the SOC must match
      and the grade must exist for the term. Other terms and versions are not checked here.

    Typed callers pass the enums; untyped input (a form, a CSV row) may give ``grade`` as an
    int and the criteria as any iterable of values, and they are stored as the enums.

    >>> AdverseEvent(term="Cytokine release syndrome", meddra_soc="Immune system disorders",
    ...              grade=CtcaeGrade.SEVERE, serious=True,
    ...              seriousness_criteria=frozenset({SeriousnessCriterion.HOSPITALISATION})).grade
    <CtcaeGrade.SEVERE: 3>
    """

    term: str
    meddra_soc: str
    grade: CtcaeGrade
    ctcae_version: str = "5.0"
    serious: bool = False
    seriousness_criteria: frozenset[SeriousnessCriterion] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        for name in ("term", "meddra_soc", "ctcae_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                problems.append(Problem(name, "must be non-empty text"))
        check_int(self.grade, "grade", 1, 5, problems)
        criteria = self._coerced_criteria(problems)
        if self.serious and not criteria:
            problems.append(
                Problem("seriousness_criteria", "a serious event needs at least one criterion")
            )
        if criteria and not self.serious:
            problems.append(Problem("serious", "must be true when seriousness criteria are given"))
        if self.grade == 5 and SeriousnessCriterion.DEATH not in criteria:
            problems.append(
                Problem(
                    "seriousness_criteria",
                    "a grade 5 event results in death; expected serious with 'death'",
                )
            )
        if not problems and self.ctcae_version == "5.0":
            known = CTCAE_V5_TERMS.get(self.term.strip().casefold())
            if known is not None:
                if self.meddra_soc.strip().casefold() != known.meddra_soc.casefold():
                    problems.append(
                        Problem(
                            "meddra_soc",
                            f"{self.meddra_soc!r} is not the SOC of {known.name!r}; "
                            f"expected {known.meddra_soc!r}",
                        )
                    )
                try:
                    known.check_grade(self.grade)
                except ValidationError as error:
                    problems.extend(error.problems)
        raise_if_any(problems)
        object.__setattr__(self, "grade", CtcaeGrade(self.grade))
        object.__setattr__(self, "seriousness_criteria", frozenset(criteria))

    def _coerced_criteria(self, problems: list[Problem]) -> set[SeriousnessCriterion]:
        raw: Iterable[object] = self.seriousness_criteria
        criteria: set[SeriousnessCriterion] = set()
        if isinstance(raw, str):  # iterating "death" would yield letters
            raw = [raw]
        for value in raw:
            member = coerce_member(SeriousnessCriterion, value, "seriousness_criteria", problems)
            if member is not None:
                criteria.add(member)
        return criteria
