"""The vocabulary of the clinical grading scales: labelled enums and the checks they share.

The scales themselves are :mod:`consortia.domain.cart_toxicity` (ASTCT CRS and ICANS, the
ICE score), :mod:`consortia.domain.ctcae` (CTCAE v5 adverse events) and
:mod:`consortia.domain.orthopaedic_scores` (MSTS and Henderson). Every scale function is pure
and takes keyword arguments named after what a clinician records. Inputs that cannot be true
of a patient are refused with a :class:`~consortia.exceptions.ValidationError` listing *every*
problem at once, each with the argument it concerns (``Problem(path, message)``), never
silently clipped: the helpers here (:func:`check_int`, :func:`coerce_member`,
:func:`raise_if_any`) collect them.

Enums a user sees carry English and Simplified Chinese labels: ``member.label("zh")``; the
whole table is :data:`LABELS`.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def check_int(value: object, path: str, low: int, high: int, problems: list[Problem]) -> None:
    """Add a problem at ``path`` unless ``value`` is a whole number from low to high."""
    # bool is an int subclass; True is not a score.
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(Problem(path, f"{value!r} is not a whole number; expected {low}–{high}"))
    elif not low <= value <= high:
        problems.append(Problem(path, f"{value} is outside {low}–{high}"))


def coerce_member(enum: type[_E], value: object, path: str, problems: list[Problem]) -> _E | None:
    """The member of ``enum`` that ``value`` is or stores; None, with a problem, otherwise."""
    # Accept the member or its stored value ("cpap"), as forms and CSV files deliver strings.
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        problems.append(Problem(path, f"{value!r} is not one of: {allowed}"))
        return None


def raise_if_any(problems: list[Problem]) -> None:
    """Raise a ValidationError listing ``problems``, if there are any."""
    if problems:
        raise ValidationError(problems)
