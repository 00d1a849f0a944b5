"""Synthetic subjects of the ``cart-lbcl`` template: a randomised CAR-T trial.

Randomisation 1:1 in permuted blocks of 4 within disease-status strata. PFS is exponential
from randomisation with medians of 12 (CAR-T) and 4 (standard of care) months, shortened by
a fifth in primary refractory disease; 12 % of PFS events are deaths without progression;
subjects are censored at the data cut-off (2025-09-01) or lost to follow-up (5 % a year).
95 % of the CAR-T arm is infused; CRS occurs in 80 % of infused patients (worst grade 1-4 in
45/42/10/3 %) and ICANS in 30 % (35/30/25/10 %), entered as daily raw inputs from which
the template derives the ASTCT grades. Complete response at day 28: 50 % after infusion,
22 % otherwise; in the table ``cr_day28`` a subject without a day-28 assessment (progressed,
died or lost before it) counts as not in complete response (intention to treat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Final

from consortia.domain.synthetic._builder import Builder, Row, analysis_row

_LN2: Final = math.log(2)
_CRS: Final = ((1, 2, 3, 4), (0.45, 0.42, 0.10, 0.03))  # worst grade given CRS
_ICANS: Final = ((1, 2, 3, 4), (0.35, 0.30, 0.25, 0.10))
_ICE_FULL: Final = {
    "ice_orientation": 4,
    "ice_naming": 3,
    "ice_commands": 1,
    "ice_writing": 1,
    "ice_attention": 1,
}
_ICE_LOST: Final = ("ice_writing", "ice_attention", *["ice_orientation"] * 4, "ice_naming")
_AE_TERMS: Final = {
    # CTCAE v5.0 term: (SOC code, grades from, to, chance after CAR-T, after standard of care)
    "Neutrophil count decreased": ("inv", 3, 4, 0.85, 0.70),
    "Platelet count decreased": ("inv", 3, 4, 0.50, 0.50),
    "Anemia": ("blood", 2, 3, 0.60, 0.60),
    "Febrile neutropenia": ("blood", 3, 3, 0.15, 0.20),
    "Fatigue": ("genrl", 1, 2, 0.40, 0.50),
    "Nausea": ("gastr", 1, 2, 0.20, 0.55),
}


@dataclass(frozen=True)
class _Course:
    """One trial subject's simulated course."""

    arm: str
    rand: date
    day0: date  # infusion, or start of standard therapy
    last: date  # last contact; the date of death for those who died
    progression: date | None
    died: bool
    death_first: bool
    reason: str
    infused: bool


def _course(build: Builder, arm: str, refractory: bool, rand: date, cutoff: date) -> _Course:
    median = (365.0 if arm == "car_t" else 122.0) * (0.8 if refractory else 1.0)
    t_pfs = 1 + build.rng.exponential(median / _LN2)
    death_first = build.chance(0.12)
    t_death = t_pfs if death_first else t_pfs + build.rng.exponential(300 / _LN2)
    t_admin, t_lost = (cutoff - rand).days, 1 + build.rng.exponential(365 / 0.05)
    end = min(t_death, t_admin, t_lost)
    died = t_death <= min(t_admin, t_lost)
    day0 = build.after(rand, *((28, 35) if arm == "car_t" else (5, 9)))
    return _Course(
        arm=arm,
        rand=rand,
        day0=day0,
        last=build.after(rand, int(end)),
        progression=None if death_first or t_pfs >= end else build.after(rand, int(t_pfs)),
        died=died,
        death_first=death_first,
        reason="died" if died else "in_follow_up" if t_admin <= t_lost else "lost",
        infused=arm == "car_t" and (day0 - rand).days + 15 <= end and build.chance(0.95),
    )


def _episode(build: Builder, grades: tuple[tuple[int, ...], tuple[float, ...]]) -> list[int]:
    """Target grades for days 1-14 of one CRS or ICANS episode (0 outside it)."""
    worst = int(build.rng.choice(grades[0], p=grades[1]))
    first = build.whole(1, 4) if grades is _CRS else build.whole(4, 8)
    duration = build.whole(3, 8) if grades is _CRS else build.whole(2, 6)
    peak = first + duration // 3
    return [
        max(1, worst - abs(day - peak)) if first <= day < first + duration else 0
        for day in range(1, 15)
    ]


def _crs_inputs(build: Builder, grade: int, tocilizumab: bool, steroids: bool) -> Row:
    fever = grade >= 1
    values: Row = {
        "max_temp": build.rng.uniform(38.1, 40.2) if fever else build.rng.uniform(36.2, 37.7),
        "hypotension": False,
        "vasopressors": 0,
        "vasopressin": False,
        "oxygen": "none",
        "antipyretic": fever and build.chance(0.7),
        "tocilizumab": tocilizumab,
        "corticosteroids": steroids,
    }
    circulation = build.chance(0.5)  # which organ support drives the grade
    if grade == 2 and circulation:
        values["hypotension"] = True
    elif grade == 2:
        values.update(oxygen="low_flow_nasal_cannula", oxygen_flow=build.whole(1, 6))
    elif grade == 3 and circulation:
        values.update(hypotension=True, vasopressors=1, vasopressin=build.chance(0.2))
    elif grade == 3:
        device = build.pick(["high_flow_nasal_cannula", "facemask", "non_rebreather"])
        values.update(oxygen=device, oxygen_flow=build.whole(8, 40))
    elif grade == 4 and circulation:
        values.update(hypotension=True, vasopressors=2, vasopressin=build.chance(0.3))
    elif grade == 4:
        values["oxygen"] = build.pick(["cpap", "bipap", "mechanical_ventilation"])
    return values


def _icans_inputs(build: Builder, grade: int) -> Row:
    values: Row = {
        "consciousness": "awake",
        "seizure": "none",
        "motor_weakness": False,
        "icp_oedema": "none",
    }
    if grade == 2 and build.chance(0.3):
        values["consciousness"] = "awakens_to_voice"
    elif grade >= 3:
        values["consciousness"] = "awakens_to_tactile"
    if grade == 4:
        kind = build.pick(["unarousable", "seizure", "oedema"], [0.7, 0.15, 0.15])
        if kind == "unarousable":
            return values | {"consciousness": "unarousable"}  # the ICE cannot be done
        values["seizure" if kind == "seizure" else "icp_oedema"] = (
            "prolonged_or_repetitive" if kind == "seizure" else "diffuse_or_signs"
        )
    lost = [0, build.whole(1, 3), build.whole(4, 7), build.whole(8, 10), build.whole(8, 10)]
    ice = dict(_ICE_FULL)
    for name in (*_ICE_LOST, "ice_naming", "ice_naming", "ice_commands")[: lost[grade]]:
        ice[name] -= 1
    return values | ice


def _adverse_event(
    build: Builder, term: str, soc: str, grade: int, onset: date, related: str
) -> Row:
    serious = grade >= 3 and build.chance(0.6 if grade == 3 else 0.85)
    outcome = build.pick(["recovered", "recovering", "not_recovered"], [0.8, 0.12, 0.08])
    return {
        "ae_term": term,
        "ae_soc": soc,
        "ae_ctcae_version": "5.0",
        "ae_onset": onset,
        "ae_grade": grade,
        "ae_serious": serious,
        "ae_serious_criteria": (
            ("hospitalisation", "life_threatening") if grade == 4 else ("hospitalisation",)
        )
        if serious
        else None,
        "ae_related": related,
        "ae_outcome": outcome,
        "ae_end": build.after(onset, 2, 21) if outcome == "recovered" else None,
    }


def _cart_treatment(build: Builder, course: _Course) -> tuple[int | None, int | None]:
    """Leukapheresis to day 14 (or standard therapy) and adverse events: the worst derived
    CRS and ICANS grades (None when not infused)."""
    rand, day0, arm = course.rand, course.day0, course.arm
    worst: tuple[int | None, int | None] = (None, None)
    events: list[Row] = []
    if arm == "car_t":
        bridging = build.chance(0.6)
        regimens = ["R-GemOx", "Radiotherapy", "Dexamethasone", "Pola-R"]
        build.add(
            "leukapheresis",
            "leukapheresis",
            {
                "apheresis_date": build.after(rand, 2, 6),
                "alc_per_ul": int(build.rng.lognormal(6.3, 0.6)),
                "bridging_therapy": bridging,
                "bridging_regimen": build.pick(regimens) if bridging else None,
            },
        )
    if course.infused:
        low = build.chance(0.2)  # flu/cy 25/250 rather than 30/500 mg/m²/day
        build.add(
            "lymphodepletion",
            "lymphodepletion",
            {
                "ld_start_date": build.after(day0, -5),
                "bsa_m2": build.normal(1.8, 0.18, 1.3, 2.4, 2),
                "fludarabine_mg_m2": 25 if low else 30,
                "cyclophosphamide_mg_m2": 250 if low else 500,
                "ld_days": 3,
            },
        )
        build.add(
            "day0",
            "infusion",
            {
                "infusion_date": day0,
                "car_t_dose": build.normal(2.0, 0.25, 0.5, 2.5, 2),
                "viability_pct": build.normal(88, 5, 70, 99, 1),
                "infusion_reaction": build.chance(0.05),
            },
        )
        crs = _episode(build, _CRS) if build.chance(0.8) else [0] * 14
        icans = _episode(build, _ICANS) if build.chance(0.3) else [0] * 14
        crs_grades, icans_grades = [], []
        for day in range(1, 15):
            toci = any(grade >= 2 for grade in crs[:day]) and crs[day - 1] > 0
            steroids = crs[day - 1] >= 3 or icans[day - 1] >= 2
            values = _crs_inputs(build, crs[day - 1], toci, steroids)
            values |= _icans_inputs(build, icans[day - 1])
            values["assessment_date"] = build.after(day0, day)
            entry = build.add("crs_daily", "crs_icans", values, instance=day)
            derived = build.derived(build.parsed(entry.values))
            crs_grades.append(_whole(derived["crs_grade_astct"]))
            icans_grades.append(_whole(derived["icans_grade_astct"]))
        worst = (max(crs_grades), max(icans_grades))
        for term, soc, grade, daily in (
            ("Cytokine release syndrome", "immun", worst[0], crs),
            ("Encephalopathy", "nerv", worst[1], icans),
        ):
            if grade:
                onset = build.after(day0, 1 + daily.index(max(daily)))
                events.append(_adverse_event(build, term, soc, grade, onset, "definite"))
    elif arm == "soc" and day0 < course.last:
        regimens = ["r_ice", "r_dhap", "r_gdp", "r_gemox", "other"]
        build.add(
            "day0",
            "soc_treatment",
            {
                "soc_start_date": day0,
                "soc_regimen": build.pick(regimens, [0.35, 0.25, 0.25, 0.1, 0.05]),
                "soc_cycles": build.whole(2, 3),
                "auto_sct": build.chance(0.35),
            },
        )
    if course.infused or (arm == "soc" and day0 < course.last):
        for term, (soc, low_grade, high_grade, after_cart, after_soc) in _AE_TERMS.items():
            if build.chance(after_cart if arm == "car_t" else after_soc):
                grade = build.whole(low_grade, high_grade)
                onset = min(build.after(day0, 1, 14), course.last)
                events.append(_adverse_event(build, term, soc, grade, onset, "probable"))
    if events:
        build.add("ae_log", "ae", events)
    return worst


def _non_responder(derived: Row) -> object:
    """Intention to treat: a subject without a day-28 assessment had no complete response."""
    response = derived["complete_response"]
    return 0 if response is None else response


def _whole(value: object) -> int:
    assert isinstance(value, int)
    return value


def _cart_visits(build: Builder, course: _Course) -> None:
    """Lugano responses at day 28 and months 3, 6, 12; contacts every 6 months."""
    previous = None
    visits = (("day28", 28, 3), ("month3", 91, 7), ("month6", 182, 7), ("month12", 365, 14))
    for event, day, window in visits:
        when = build.after(course.day0, day - window, day + window)
        if when >= course.last or previous == "PD":
            break
        if course.progression is not None and course.progression <= when:
            response = "PD"
        elif previous is None:
            complete = 0.5 if course.infused else 0.22
            response = build.pick(["CR", "PR", "SD"], [complete, 0.25, 0.75 - complete])
        elif previous == "PR":
            response = build.pick(["CR", "PR"], [0.4, 0.6])
        else:
            response = previous if previous == "CR" else build.pick(["SD", "PR"], [0.7, 0.3])
        method = build.pick(["pet_ct", "ct"], [0.85, 0.15])
        deauville = {"CR": build.whole(1, 3), "PR": 4, "SD": build.whole(4, 5), "PD": 5}
        build.add(
            event,
            "response",
            {
                "response_date": when,
                "response_method": method,
                "response": response,
                "deauville": deauville[response] if method == "pet_ct" else None,
            },
        )
        previous = response
    since = course.rand
    for event, day in (
        ("month6", 182),
        ("month12", 365),
        ("month18", 547),
        ("month24", 730),
        ("month30", 912),
        ("month36", 1095),
    ):
        when = build.after(course.day0, day - 14, day + 14)
        if when > course.last:
            break
        progression = course.progression
        if progression is not None and since < progression <= when:
            status = "progressed"
        else:
            status = (
                "no_progression" if progression is None or progression > when else "not_assessed"
            )
        treated = progression is not None and progression <= when and build.chance(0.7)
        build.add(
            event, "follow_up", {"fu_date": when, "fu_disease": status, "new_therapy": treated}
        )
        since = when
    if course.progression is not None:
        basis = build.pick(["imaging", "biopsy", "clinical"], [0.85, 0.1, 0.05])
        build.add(
            "progression",
            "progression",
            {"progression_date": course.progression, "progression_basis": basis},
        )
    if course.died:
        causes = ["lymphoma", "treatment_related", "infection", "other"]
        weights = [0.1, 0.3, 0.4, 0.2] if course.death_first else [0.85, 0.03, 0.07, 0.05]
        build.add(
            "death",
            "death",
            {"death_date": course.last, "death_cause": build.pick(causes, weights)},
        )
    build.add(
        "end_of_study", "status", {"last_contact": course.last, "status_reason": course.reason}
    )


def generate(build: Builder, subjects: int) -> list[Row]:
    cutoff = date(2025, 9, 1)
    singapore = build.study.sites[build.site].country == "SG"
    ethnicities = ["chinese", "malay", "indian", "other"]
    ethnic_mix = [0.75, 0.13, 0.09, 0.03] if singapore else [0.98, 0.0, 0.0, 0.02]
    blocks: dict[str, list[str]] = {}  # permuted blocks of 4 per disease-status stratum
    rows = []
    for number, rand in enumerate(build.enrolment(subjects, date(2023, 3, 1), 540), 1):
        build.subject(number)
        screening = build.after(rand, -14, -7)
        age, sex = int(build.normal(58, 12, 20, 79)), build.pick(["M", "F"], [0.6, 0.4])
        status = build.pick(["primary_refractory", "early_relapse"], [0.55, 0.45])
        if not blocks.get(status):
            blocks[status] = [str(a) for a in build.rng.permutation(["car_t"] * 2 + ["soc"] * 2)]
        arm = blocks[status].pop()
        build.add(
            "screening",
            "consent",
            {
                "consent_given": True,
                "consent_date": screening,
                "consent_version": "2.1",
                "biobank_consent": build.chance(0.85),
            },
        )
        build.add(
            "screening",
            "eligibility",
            {
                "histology": build.pick(
                    ["dlbcl_nos", "hgbl", "pmbcl", "tfl"], [0.7, 0.12, 0.06, 0.12]
                ),
                "disease_status": status,
                "prior_lines": 1 if build.chance(0.85) else 2,
                "ecog": 0 if build.chance(0.55) else 1,
                "ldh_elevated": build.chance(0.5),
                "eligible": True,
            },
        )
        build.add(
            "screening",
            "demographics",
            build.person(screening, age)
            | {
                "age": age,
                "sex": sex,
                "pregnant": False if sex == "F" and age < 55 else None,
                "ethnicity": build.pick(ethnicities, ethnic_mix),
                "weight_kg": build.normal(72 if sex == "M" else 60, 11, 40, 130, 1),
            },
        )
        # the arm is the allocation's, never typed: the form holds the date only
        build.add("randomisation", "randomisation", {"rand_date": rand})
        build.allocations[build.current] = arm
        course = _course(build, arm, status == "primary_refractory", rand, cutoff)
        crs, icans = _cart_treatment(build, course)
        _cart_visits(build, course)
        values = build.typed("screening", "randomisation", "progression", "death", "end_of_study")
        derived = build.derived(values)
        rows.append(
            analysis_row(
                {
                    "arm": arm,
                    "age": age,
                    "sex": sex,
                    "disease_status": status,
                    "ecog": values["ecog"],
                    "pfs_days": derived["pfs_days"],
                    "pfs_event": derived["pfs_event"],
                    "os_days": derived["os_days"],
                    "os_event": derived["os_event"],
                    "cr_day28": _non_responder(build.derived(build.typed("day28"))),
                    "crs_max_grade": crs,
                    "icans_max_grade": icans,
                }
            )
        )
    return rows
