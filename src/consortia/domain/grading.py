"""Clinical grading scales: ASTCT CRS and ICANS, the ICE score, CTCAE v5, MSTS and Henderson.

Every function here is pure and takes keyword arguments named after what a clinician records.
Inputs that cannot be true of a patient are refused with a
:class:`~consortia.exceptions.ValidationError` listing *every* problem at once, each with the
argument it concerns (``Problem(path, message)``), never silently clipped.

Sources (see ``/work/shared/REFERENCE.md``): Lee et al., Biol Blood Marrow Transplant
2019;25:625 (ASTCT CRS, ICE, ICANS); NCI CTCAE v5.0 (2017); Enneking et al. 1993 (MSTS);
Henderson et al., JBJS Am 2011;93:418.

Enums a user sees carry English and Simplified Chinese labels: ``member.label("zh")``; the
whole table is :data:`LABELS`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Final, Literal, TypeVar

from consortia.exceptions import Problem, ValidationError

Lang = Literal["en", "zh"]
Limb = Literal["upper", "lower"]


# Labelled enums


def _label(member: Enum, lang: str) -> str:
    # Keyed by class, then member name: IntEnum members of different enums compare equal
    # (CtcaeGrade.MILD == HendersonType.SOFT_TISSUE == 1), so they cannot share one dict.
    if lang not in ("en", "zh"):
        raise ValidationError([Problem("lang", f"{lang!r} is not a label language; use en or zh")])
    english, chinese = LABELS[type(member)][member.name]
    return english if lang == "en" else chinese


class _LabelledStrEnum(StrEnum):
    def label(self, lang: Lang = "en") -> str:
        """This member's label in ``lang`` (``"en"`` or ``"zh"``)."""
        return _label(self, lang)


class _LabelledIntEnum(IntEnum):
    def label(self, lang: Lang = "en") -> str:
        """This member's label in ``lang`` (``"en"`` or ``"zh"``)."""
        return _label(self, lang)


class OxygenSupport(_LabelledStrEnum):
    """The most intensive oxygen delivery in the grading window (ASTCT CRS hypoxia column)."""

    NONE = "none"
    COMFORT = "comfort"
    LOW_FLOW_NASAL_CANNULA = "low_flow_nasal_cannula"
    BLOW_BY = "blow_by"
    HIGH_FLOW_NASAL_CANNULA = "high_flow_nasal_cannula"
    FACEMASK = "facemask"
    NON_REBREATHER = "non_rebreather"
    VENTURI = "venturi"
    CPAP = "cpap"
    BIPAP = "bipap"
    MECHANICAL_VENTILATION = "mechanical_ventilation"


class Consciousness(_LabelledStrEnum):
    """ICANS depressed level of consciousness."""

    AWAKE = "awake"
    AWAKENS_SPONTANEOUSLY = "awakens_spontaneously"
    AWAKENS_TO_VOICE = "awakens_to_voice"
    AWAKENS_TO_TACTILE = "awakens_to_tactile"
    UNAROUSABLE = "unarousable"


class Seizure(_LabelledStrEnum):
    """ICANS seizure domain."""

    NONE = "none"
    RAPID_RESOLVING_OR_EEG_NONCONVULSIVE = "rapid_resolving_or_eeg_nonconvulsive"
    PROLONGED_OR_REPETITIVE = "prolonged_or_repetitive"


class Oedema(_LabelledStrEnum):
    """ICANS raised intracranial pressure / cerebral oedema domain."""

    NONE = "none"
    FOCAL_LOCAL = "focal_local"
    DIFFUSE_OR_SIGNS = "diffuse_or_signs"


class CtcaeGrade(_LabelledIntEnum):
    """CTCAE severity grade with its generic meaning (CTCAE v5.0 introduction).

    >>> CtcaeGrade(4).label("en"), CtcaeGrade(4).label("zh")
    ('Life-threatening', '危及生命')
    """

    MILD = 1
    MODERATE = 2
    SEVERE = 3
    LIFE_THREATENING = 4
    DEATH = 5

    @property
    def meaning(self) -> str:
        """The generic CTCAE v5.0 description of this grade, in English."""
        return _GRADE_MEANINGS[self.value]


_GRADE_MEANINGS: Final[Mapping[int, str]] = {
    1: "Mild; asymptomatic or mild symptoms; clinical or diagnostic observations only; "
    "intervention not indicated",
    2: "Moderate; minimal, local or noninvasive intervention indicated; limiting "
    "age-appropriate instrumental ADL",
    3: "Severe or medically significant but not immediately life-threatening; hospitalization "
    "or prolongation of hospitalization indicated; disabling; limiting self care ADL",
    4: "Life-threatening consequences; urgent intervention indicated",
    5: "Death related to AE",
}


class SeriousnessCriterion(_LabelledStrEnum):
    """Regulatory seriousness criteria (ICH E2A); independent of CTCAE severity."""

    DEATH = "death"
    LIFE_THREATENING = "life_threatening"
    HOSPITALISATION = "hospitalisation"
    DISABILITY = "disability"
    CONGENITAL_ANOMALY = "congenital_anomaly"
    OTHER_IMPORTANT = "other_important"


class HendersonType(_LabelledIntEnum):
    """Henderson failure mode of a limb-salvage endoprosthesis (JBJS Am 2011;93:418).

    >>> HendersonType.INFECTION.label("zh")
    '4型：感染'
    """

    SOFT_TISSUE = 1
    ASEPTIC_LOOSENING = 2
    STRUCTURAL = 3
    INFECTION = 4
    TUMOUR_PROGRESSION = 5


LABELS: Final[Mapping[type[Enum], Mapping[str, tuple[str, str]]]] = {
    # class -> member name -> (English, Simplified Chinese)
    OxygenSupport: {
        "NONE": ("No oxygen", "未吸氧"),
        "COMFORT": ("Oxygen for comfort only", "仅为舒适而吸氧"),
        "LOW_FLOW_NASAL_CANNULA": (
            "Low-flow nasal cannula (≤ 6 L/min)",
            "低流量鼻导管（≤6 L/min）",
        ),
        "BLOW_BY": ("Blow-by oxygen", "吹入式给氧"),
        "HIGH_FLOW_NASAL_CANNULA": (
            "High-flow nasal cannula (> 6 L/min)",
            "高流量鼻导管（>6 L/min）",
        ),
        "FACEMASK": ("Facemask", "面罩"),
        "NON_REBREATHER": ("Non-rebreather mask", "非重复呼吸面罩"),
        "VENTURI": ("Venturi mask", "文丘里面罩"),
        "CPAP": ("CPAP", "持续气道正压通气（CPAP）"),
        "BIPAP": ("BiPAP", "双水平气道正压通气（BiPAP）"),
        "MECHANICAL_VENTILATION": ("Intubation and mechanical ventilation", "气管插管机械通气"),
    },
    Consciousness: {
        "AWAKE": ("Awake, normal consciousness", "清醒，意识正常"),
        "AWAKENS_SPONTANEOUSLY": ("Awakens spontaneously", "可自行醒来"),
        "AWAKENS_TO_VOICE": ("Awakens to voice", "声音刺激可唤醒"),
        "AWAKENS_TO_TACTILE": ("Awakens only to tactile stimulus", "仅触觉刺激可唤醒"),
        "UNAROUSABLE": ("Unarousable, stupor or coma", "不可唤醒（木僵或昏迷）"),
    },
    Seizure: {
        "NONE": ("No seizure", "无癫痫发作"),
        "RAPID_RESOLVING_OR_EEG_NONCONVULSIVE": (
            "Seizure resolving rapidly, or EEG non-convulsive seizure resolving with intervention",
            "迅速缓解的癫痫发作，或经干预缓解的脑电图非惊厥性发作",
        ),
        "PROLONGED_OR_REPETITIVE": (
            "Prolonged (> 5 min) or repetitive seizures without return to baseline",
            "持续超过5分钟或反复发作且未恢复至基线的癫痫",
        ),
    },
    Oedema: {
        "NONE": ("No oedema", "无脑水肿"),
        "FOCAL_LOCAL": ("Focal/local oedema on imaging", "影像学示局灶性/局部水肿"),
        "DIFFUSE_OR_SIGNS": (
            "Diffuse oedema, posturing, CN VI palsy, papilloedema or Cushing's triad",
            "弥漫性脑水肿、去大脑/去皮质强直、第六对脑神经麻痹、视乳头水肿或库欣三联征",
        ),
    },
    CtcaeGrade: {
        "MILD": ("Mild", "轻度"),
        "MODERATE": ("Moderate", "中度"),
        "SEVERE": ("Severe", "重度"),
        "LIFE_THREATENING": ("Life-threatening", "危及生命"),
        "DEATH": ("Death related to AE", "与不良事件相关的死亡"),
    },
    SeriousnessCriterion: {
        "DEATH": ("Results in death", "导致死亡"),
        "LIFE_THREATENING": ("Life-threatening", "危及生命"),
        "HOSPITALISATION": ("Requires or prolongs hospitalisation", "导致住院或住院时间延长"),
        "DISABILITY": ("Persistent or significant disability", "导致持续或显著的残疾"),
        "CONGENITAL_ANOMALY": ("Congenital anomaly/birth defect", "先天性异常/出生缺陷"),
        "OTHER_IMPORTANT": ("Other important medical event", "其他重要医学事件"),
    },
    HendersonType: {
        "SOFT_TISSUE": ("Type 1: soft-tissue failure", "1型：软组织失败"),
        "ASEPTIC_LOOSENING": ("Type 2: aseptic loosening", "2型：无菌性松动"),
        "STRUCTURAL": (
            "Type 3: structural failure (implant or bone fracture)",
            "3型：结构性失败（假体断裂或骨折）",
        ),
        "INFECTION": ("Type 4: infection", "4型：感染"),
        "TUMOUR_PROGRESSION": ("Type 5: tumour progression", "5型：肿瘤进展"),
    },
}


# Shared validation helpers: they append to ``problems`` so a caller sees everything at once.

_E = TypeVar("_E", bound=Enum)


def _check_int(value: object, path: str, low: int, high: int, problems: list[Problem]) -> None:
    # bool is an int subclass; True is not a score.
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem(path, f"{value!r} is not a whole number; expected {low}–{high}"))
    elif not low <= value <= high:
        problems.append(Problem(path, f"{value} is outside {low}–{high}"))


def _coerce(enum: type[_E], value: object, path: str, problems: list[Problem]) -> _E | None:
    # Accept the member or its stored value ("cpap"), as forms and CSV files deliver strings.
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        problems.append(Problem(path, f"{value!r} is not one of: {allowed}"))
        return None


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise ValidationError(problems)


# ASTCT cytokine release syndrome

FEVER_C: Final = 38.0
LOW_FLOW_MAX_L_MIN: Final = 6.0
_PLAUSIBLE_TEMPERATURE_C: Final = (25.0, 45.0)
_NASAL_CANNULAE: Final = frozenset(
    {OxygenSupport.LOW_FLOW_NASAL_CANNULA, OxygenSupport.HIGH_FLOW_NASAL_CANNULA}
)
_HYPOXIA_GRADE: Final[Mapping[OxygenSupport, int]] = {
    OxygenSupport.NONE: 0,
    OxygenSupport.COMFORT: 0,  # ASTCT: oxygen given only for comfort is not hypoxia
    OxygenSupport.LOW_FLOW_NASAL_CANNULA: 2,
    OxygenSupport.BLOW_BY: 2,
    OxygenSupport.HIGH_FLOW_NASAL_CANNULA: 3,
    OxygenSupport.FACEMASK: 3,
    OxygenSupport.NON_REBREATHER: 3,
    OxygenSupport.VENTURI: 3,
    OxygenSupport.CPAP: 4,
    OxygenSupport.BIPAP: 4,
    OxygenSupport.MECHANICAL_VENTILATION: 4,
}


def crs_grade(
    *,
    max_temperature_c: float | None,
    hypotension: bool,
    vasopressors: int,
    vasopressin: bool = False,
    oxygen: OxygenSupport,
    oxygen_flow_l_min: float | None = None,
    fever_masked: bool = False,
) -> int:
    """ASTCT consensus CRS grade, 0 (no CRS) to 4.

    Arguments describe the worst state in the grading window:

    - ``max_temperature_c``: highest temperature; ``None`` is allowed only when
      ``fever_masked`` (then fever is not required and the temperature may be unknown).
    - ``hypotension``: hypotension attributable to CRS was present.
    - ``vasopressors``: number of vasopressors **other than vasopressin** given at the same
      time; ``vasopressin`` says whether vasopressin was also given. Counting vasopressin
      apart makes the ASTCT rule direct: one vasopressor with or without vasopressin is grade
      3, two or more (vasopressin not counted) is grade 4, and vasopressin alone is grade 3.
      Any vasopressor requires ``hypotension=True``; the opposite is refused as inconsistent.
      More than 10 concurrent vasopressors is refused as a data-entry error.
    - ``oxygen`` and ``oxygen_flow_l_min``: the device and, if known, its flow. ASTCT defines
      low- and high-flow nasal cannula by flow (≤ 6 vs > 6 L/min), so when a flow is given it
      decides for either cannula; without a flow the device name decides. Comfort oxygen is
      not hypoxia. A flow with ``oxygen=none`` is refused.
    - ``fever_masked``: antipyretics or anti-cytokine therapy (tocilizumab, steroids) were
      given, so fever is no longer required.

    Without fever (and not masked) there is no CRS, whatever the organ support: the result is
    0. With fever and neither hypotension nor hypoxia the grade is 1. Otherwise the grade is
    the more severe of the hypotension and hypoxia grades. A masked patient with neither is 0.

    >>> crs_grade(max_temperature_c=38.6, hypotension=True, vasopressors=1, vasopressin=True,
    ...           oxygen=OxygenSupport.LOW_FLOW_NASAL_CANNULA, oxygen_flow_l_min=4)
    3
    """
    problems: list[Problem] = []
    low_t, high_t = _PLAUSIBLE_TEMPERATURE_C
    if max_temperature_c is None:
        if not fever_masked:
            problems.append(
                Problem(
                    "max_temperature_c",
                    "is required unless fever_masked (antipyretic or anti-cytokine therapy given)",
                )
            )
    elif not low_t <= max_temperature_c <= high_t:  # also catches NaN
        problems.append(
            Problem("max_temperature_c", f"{max_temperature_c} °C is outside {low_t}–{high_t} °C")
        )
    _check_int(vasopressors, "vasopressors", 0, 10, problems)
    pressor_given = vasopressin or (isinstance(vasopressors, int) and vasopressors > 0)
    if pressor_given and not hypotension:
        problems.append(
            Problem("hypotension", "must be true when a vasopressor or vasopressin is given")
        )
    device = _coerce(OxygenSupport, oxygen, "oxygen", problems)
    if oxygen_flow_l_min is not None:
        if not (math.isfinite(oxygen_flow_l_min) and oxygen_flow_l_min >= 0):
            problems.append(
                Problem(
                    "oxygen_flow_l_min", f"{oxygen_flow_l_min} is not a flow of 0 L/min or more"
                )
            )
        elif device is OxygenSupport.NONE:
            problems.append(Problem("oxygen_flow_l_min", "is given but oxygen is 'none'"))
    _raise_if(problems)
    assert device is not None  # _raise_if returned, so coercion succeeded

    fever = max_temperature_c is not None and max_temperature_c >= FEVER_C
    if not (fever or fever_masked):
        return 0
    if vasopressors >= 2:
        hypotension_grade = 4
    elif vasopressors == 1 or vasopressin:
        hypotension_grade = 3
    else:
        hypotension_grade = 2 if hypotension else 0
    if device in _NASAL_CANNULAE and oxygen_flow_l_min is not None:
        hypoxia_grade = 3 if oxygen_flow_l_min > LOW_FLOW_MAX_L_MIN else 2
    else:
        hypoxia_grade = _HYPOXIA_GRADE[device]
    organ_grade = max(hypotension_grade, hypoxia_grade)
    return max(organ_grade, 1) if fever else organ_grade


# ICE score and ICANS


def ice_score(*, orientation: int, naming: int, commands: int, writing: int, attention: int) -> int:
    """Immune effector cell-associated encephalopathy (ICE) score, 0–10.

    Items: orientation to year, month, city, hospital (0–4); naming 3 objects (0–3);
    following simple commands (0–1); writing a standard sentence (0–1); counting back from
    100 by 10 (0–1). Out-of-range items are refused, all at once.

    >>> ice_score(orientation=4, naming=3, commands=1, writing=0, attention=1)
    9
    """
    items = {
        "orientation": (orientation, 4),
        "naming": (naming, 3),
        "commands": (commands, 1),
        "writing": (writing, 1),
        "attention": (attention, 1),
    }
    problems: list[Problem] = []
    for name, (value, maximum) in items.items():
        _check_int(value, name, 0, maximum, problems)
    _raise_if(problems)
    return sum(value for value, _ in items.values())


_CONSCIOUSNESS_GRADE: Final[Mapping[Consciousness, int]] = {
    Consciousness.AWAKE: 0,
    Consciousness.AWAKENS_SPONTANEOUSLY: 1,
    Consciousness.AWAKENS_TO_VOICE: 2,
    Consciousness.AWAKENS_TO_TACTILE: 3,
    Consciousness.UNAROUSABLE: 4,
}
_SEIZURE_GRADE: Final[Mapping[Seizure, int]] = {
    Seizure.NONE: 0,
    Seizure.RAPID_RESOLVING_OR_EEG_NONCONVULSIVE: 3,
    Seizure.PROLONGED_OR_REPETITIVE: 4,
}
_OEDEMA_GRADE: Final[Mapping[Oedema, int]] = {
    Oedema.NONE: 0,
    Oedema.FOCAL_LOCAL: 3,
    Oedema.DIFFUSE_OR_SIGNS: 4,
}


def _ice_grade(ice: int) -> int:
    if ice == 10:
        return 0
    if ice >= 7:
        return 1
    if ice >= 3:
        return 2
    return 3  # ICE 0–2 in a patient able to attempt it (e.g. awake with global aphasia)


def icans_grade(
    *,
    ice: int | None,
    consciousness: Consciousness,
    seizure: Seizure,
    motor_weakness: bool,
    icp_oedema: Oedema,
) -> int:
    """ASTCT ICANS grade for adults, 0–4: the most severe domain wins.

    ``ice`` is the ICE score (0–10), or ``None`` when it could not be assessed, which is only
    accepted for an unarousable patient. An unarousable patient cannot score ICE points, so
    ``ice`` above 0 with ``unarousable`` is refused. ``motor_weakness`` is deep focal motor
    weakness (hemiparesis, paraparesis). Every domain must be stated: an omitted domain is not
    "normal". Tremor and myoclonus are CTCAE events, not ICANS.

    >>> icans_grade(ice=5, consciousness=Consciousness.AWAKENS_SPONTANEOUSLY,
    ...             seizure=Seizure.NONE, motor_weakness=False, icp_oedema=Oedema.NONE)
    2
    """
    problems: list[Problem] = []
    level = _coerce(Consciousness, consciousness, "consciousness", problems)
    fit = _coerce(Seizure, seizure, "seizure", problems)
    oedema = _coerce(Oedema, icp_oedema, "icp_oedema", problems)
    if ice is None:
        if level is not Consciousness.UNAROUSABLE:
            problems.append(
                Problem("ice", "may be missing only when the patient is unarousable; expected 0–10")
            )
    else:
        _check_int(ice, "ice", 0, 10, problems)
        if level is Consciousness.UNAROUSABLE and isinstance(ice, int) and ice > 0:
            problems.append(
                Problem(
                    "ice", f"{ice} is impossible for an unarousable patient; expected 0 or none"
                )
            )
    _raise_if(problems)
    assert level is not None
    assert fit is not None
    assert oedema is not None

    return max(
        0 if ice is None else _ice_grade(ice),
        _CONSCIOUSNESS_GRADE[level],
        _SEIZURE_GRADE[fit],
        4 if motor_weakness else 0,
        _OEDEMA_GRADE[oedema],
    )


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
        _check_int(grade, "grade", 1, 5, problems)
        if not problems and grade not in self.grades:
            allowed = ", ".join(str(int(g)) for g in sorted(self.grades))
            problems.append(
                Problem("grade", f"{grade} does not exist for {self.name!r}; expected {allowed}")
            )
        _raise_if(problems)
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
        _check_int(self.grade, "grade", 1, 5, problems)
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
        _raise_if(problems)
        object.__setattr__(self, "grade", CtcaeGrade(self.grade))
        object.__setattr__(self, "seriousness_criteria", frozenset(criteria))

    def _coerced_criteria(self, problems: list[Problem]) -> set[SeriousnessCriterion]:
        raw: Iterable[object] = self.seriousness_criteria
        criteria: set[SeriousnessCriterion] = set()
        if isinstance(raw, str):  # iterating "death" would yield letters
            raw = [raw]
        for value in raw:
            member = _coerce(SeriousnessCriterion, value, "seriousness_criteria", problems)
            if member is not None:
                criteria.add(member)
        return criteria


# MSTS (Enneking 1993)

_MSTS_COMMON: Final = ("pain", "function", "emotional_acceptance")
MSTS_DOMAINS: Final[Mapping[str, tuple[str, ...]]] = {
    "lower": (*_MSTS_COMMON, "supports", "walking", "gait"),
    "upper": (*_MSTS_COMMON, "hand_positioning", "dexterity", "lifting"),
}
MSTS_MAX_TOTAL: Final = 30


@dataclass(frozen=True, slots=True)
class MstsScore:
    """An MSTS functional score: ``total`` out of 30 and the same as a percentage."""

    total: int
    percent: float


def msts_score(domains: Mapping[str, int], limb: Limb) -> MstsScore:
    """Musculoskeletal Tumor Society score for an upper or lower limb.

    ``domains`` maps each of the limb's six domain names (see :data:`MSTS_DOMAINS`) to 0–5.
    Missing, unexpected and out-of-range domains are all reported at once. ``percent`` is
    ``total / 30 * 100``, unrounded.

    >>> msts_score({"pain": 5, "function": 4, "emotional_acceptance": 5,
    ...             "supports": 3, "walking": 4, "gait": 3}, "lower")
    MstsScore(total=24, percent=80.0)
    """
    expected = MSTS_DOMAINS.get(limb)
    if expected is None:
        raise ValidationError([Problem("limb", f"{limb!r} is not a limb; expected upper or lower")])
    listing = ", ".join(expected)
    problems: list[Problem] = []
    for name in expected:
        if name not in domains:
            problems.append(Problem(f"domains.{name}", f"is missing; expected 0–5 ({limb} limb)"))
        else:
            _check_int(domains[name], f"domains.{name}", 0, 5, problems)
    for name in domains:
        if name not in expected:
            message = f"is not an MSTS {limb} limb domain; expected one of {listing}"
            problems.append(Problem(f"domains.{name}", message))
    _raise_if(problems)
    total = sum(domains[name] for name in expected)
    return MstsScore(total=total, percent=total / MSTS_MAX_TOTAL * 100)


# Henderson failure types

_HENDERSON_NAMES: Final[Mapping[str, HendersonType]] = {
    "soft tissue failure": HendersonType.SOFT_TISSUE,
    "soft-tissue failure": HendersonType.SOFT_TISSUE,
    "soft tissue": HendersonType.SOFT_TISSUE,  # the enum name, underscores read as spaces
    "aseptic loosening": HendersonType.ASEPTIC_LOOSENING,
    "structural failure": HendersonType.STRUCTURAL,
    "structural": HendersonType.STRUCTURAL,
    "infection": HendersonType.INFECTION,
    "tumour progression": HendersonType.TUMOUR_PROGRESSION,
    "tumor progression": HendersonType.TUMOUR_PROGRESSION,
    "软组织失败": HendersonType.SOFT_TISSUE,
    "无菌性松动": HendersonType.ASEPTIC_LOOSENING,
    "结构性失败": HendersonType.STRUCTURAL,
    "感染": HendersonType.INFECTION,
    "肿瘤进展": HendersonType.TUMOUR_PROGRESSION,
}


def henderson_type(value: int | str) -> HendersonType:
    """Read a Henderson failure type from its number, ``"type N"``, name or description.

    Accepted: 1–5 (or ``"1"``…), ``"type 4"``, ``"4型"``, the enum name
    (``"ASEPTIC_LOOSENING"``), the description in English (``"soft-tissue failure"``,
    ``"tumor progression"``; case-insensitive) or Chinese (``"无菌性松动"``). Subtypes (e.g.
    ``"3b"`` of the 2014 revision) are refused: this is the 2011 classification.

    >>> henderson_type("Type 2")
    <HendersonType.ASEPTIC_LOOSENING: 2>
    >>> henderson_type("感染").label("en")
    'Type 4: infection'
    """
    found: HendersonType | None = None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        found = HendersonType(value)
    elif isinstance(value, str):
        text = " ".join(value.strip().casefold().replace("_", " ").split())
        number = text.removeprefix("type").removesuffix("型").strip()
        if number in {"1", "2", "3", "4", "5"}:
            found = HendersonType(int(number))
        else:
            found = _HENDERSON_NAMES.get(text)
    if found is None:
        raise ValidationError(
            [
                Problem(
                    "henderson_type",
                    f"{value!r} is not a Henderson failure type; expected 1–5 or one of: "
                    "soft-tissue failure, aseptic loosening, structural failure, infection, "
                    "tumour progression",
                )
            ]
        )
    return found
