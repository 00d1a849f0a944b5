"""Orthopaedic tumour outcomes: the MSTS functional score and Henderson's failure types.

Sources: Enneking et al. 1993 (MSTS, upper and lower limb); Henderson et al., JBJS Am
2011;93:418 (failure types of endoprostheses; the types are the labelled
:class:`~consortia.domain.grading.HendersonType`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from consortia.domain.grading import HendersonType, check_int, raise_if_any
from consortia.exceptions import Problem, ValidationError

Lang = Literal["en", "zh"]
Limb = Literal["upper", "lower"]

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
            check_int(domains[name], f"domains.{name}", 0, 5, problems)
    for name in domains:
        if name not in expected:
            message = f"is not an MSTS {limb} limb domain; expected one of {listing}"
            problems.append(Problem(f"domains.{name}", message))
    raise_if_any(problems)
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
