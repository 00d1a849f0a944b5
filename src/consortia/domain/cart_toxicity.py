"""CAR-T toxicity grading (ASTCT consensus): cytokine release syndrome, the ICE score and ICANS.

Pure functions taking keyword arguments named after what a clinician records; inputs that
cannot be true of a patient are refused with a :class:`~consortia.exceptions.ValidationError`
listing every problem at once. Source: Lee et al., Biol Blood Marrow Transplant 2019;25:625
(see ``/work/shared/REFERENCE.md``). The choices a clinician records (oxygen support,
consciousness, seizure, oedema) are the labelled enums of :mod:`consortia.domain.grading`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from consortia.domain.grading import (
    Consciousness,
    Oedema,
    OxygenSupport,
    Seizure,
    check_int,
    coerce_member,
    raise_if_any,
)
from consortia.exceptions import Problem

Lang = Literal["en", "zh"]
Limb = Literal["upper", "lower"]

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
    check_int(vasopressors, "vasopressors", 0, 10, problems)
    pressor_given = vasopressin or (isinstance(vasopressors, int) and vasopressors > 0)
    if pressor_given and not hypotension:
        problems.append(
            Problem("hypotension", "must be true when a vasopressor or vasopressin is given")
        )
    device = coerce_member(OxygenSupport, oxygen, "oxygen", problems)
    if oxygen_flow_l_min is not None:
        if not (math.isfinite(oxygen_flow_l_min) and oxygen_flow_l_min >= 0):
            problems.append(
                Problem(
                    "oxygen_flow_l_min", f"{oxygen_flow_l_min} is not a flow of 0 L/min or more"
                )
            )
        elif device is OxygenSupport.NONE:
            problems.append(Problem("oxygen_flow_l_min", "is given but oxygen is 'none'"))
    raise_if_any(problems)
    assert device is not None  # raise_if_any returned, so coercion succeeded

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
        check_int(value, name, 0, maximum, problems)
    raise_if_any(problems)
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
    level = coerce_member(Consciousness, consciousness, "consciousness", problems)
    fit = coerce_member(Seizure, seizure, "seizure", problems)
    oedema = coerce_member(Oedema, icp_oedema, "icp_oedema", problems)
    if ice is None:
        if level is not Consciousness.UNAROUSABLE:
            problems.append(
                Problem("ice", "may be missing only when the patient is unarousable; expected 0–10")
            )
    else:
        check_int(ice, "ice", 0, 10, problems)
        if level is Consciousness.UNAROUSABLE and isinstance(ice, int) and ice > 0:
            problems.append(
                Problem(
                    "ice", f"{ice} is impossible for an unarousable patient; expected 0 or none"
                )
            )
    raise_if_any(problems)
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
