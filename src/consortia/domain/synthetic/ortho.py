"""Synthetic patients of the ``ortho-3dp`` template: 3D-printed tumour prostheses.

Histology sets the age (osteosarcoma and Ewing sarcoma young, chondrosarcoma and metastases
older) and the stage. MSTS rises from ~45 % at 3 months to ~62, ~74 and ~77 % at 6, 12
and 24 months (pelvic reconstructions ~6 points lower). Each patient has Poisson(0.4)
complications, Henderson type 4 (infection, 33 %) and 2 (aseptic loosening, 28 %) the most
common; those treated by revision, removal or amputation revise the implant. Follow-up ends
at the cut-off (2025-06-01), at death (median survival 2 years with bone metastases) or by
loss to follow-up.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Final

from consortia.domain.synthetic._builder import Builder, Row, analysis_row

_HISTOLOGY: Final = {
    # histology: (share, mean age, SD of age, stages and their shares)
    "osteosarcoma": (0.35, 22, 10, (("IIA", "IIB", "III"), (0.2, 0.7, 0.1))),
    "chondrosarcoma": (0.20, 48, 12, (("IA", "IB", "IIA", "IIB"), (0.2, 0.2, 0.3, 0.3))),
    "ewing": (0.08, 18, 6, (("IIB", "III"), (0.8, 0.2))),
    "gctb": (0.12, 33, 8, (("IA", "IB"), (0.4, 0.6))),
    "ups": (0.05, 55, 12, (("IIB", "III"), (0.85, 0.15))),
    "metastasis": (0.15, 60, 10, (("III",), (1.0,))),
    "other": (0.05, 45, 15, (("IB", "IIB"), (0.5, 0.5))),
}
_SITES: Final = {
    "pelvis": 0.25,
    "proximal_femur": 0.15,
    "femoral_shaft": 0.08,
    "distal_femur": 0.25,
    "proximal_tibia": 0.17,
    "tibial_shaft": 0.05,
    "distal_tibia": 0.05,
}
_HENDERSON: Final = {
    # type: (share, onset from, to (days after surgery), treatments and their shares)
    "1": (0.12, 5, 120, (("non_operative", "debridement"), (0.5, 0.5))),
    "2": (0.28, 120, 600, (("revision", "non_operative"), (0.7, 0.3))),
    "3": (0.12, 90, 700, (("revision", "non_operative"), (0.8, 0.2))),
    "4": (0.33, 10, 200, (("debridement", "revision", "removal"), (0.5, 0.35, 0.15))),
    "5": (0.15, 120, 700, (("amputation", "non_operative"), (0.4, 0.6))),
}
_REVISING: Final = {"revision": "total", "removal": "removal", "amputation": "amputation"}
_VISITS: Final = (
    ("month3", 91, 14, 45),
    ("month6", 182, 21, 62),
    ("month12", 365, 30, 74),
    ("month24", 730, 45, 77),
)
_DOMAINS: Final = {  # MSTS lower-limb domain: offset from the patient's level
    "msts_pain": 0.4,
    "msts_function": -0.2,
    "msts_emotional": 0.3,
    "msts_supports": 0.0,
    "msts_walking": 0.0,
    "msts_gait": -0.3,
}


def _implant(build: Builder, number: int) -> Row:
    porous = build.chance(0.92)
    gtin = f"069{build.whole(10**10, 10**11 - 1)}"
    return {
        "implant_udi": f"(01){gtin}(21)3DP{number:05d}",
        "manufacturer": build.pick(["Shanghai Additive Orthopaedics", "Lion City Implants"]),
        "material": build.pick(["ti6al4v", "ti6al4v_eli", "tantalum"], [0.85, 0.1, 0.05]),
        "printing_process": build.pick(["ebm", "slm"], [0.6, 0.4]),
        "design_days": int(build.normal(21, 7, 7, 60)),
        "porous_scaffold": porous,
        "lattice_type": build.pick(
            ["diamond", "dodecahedron", "gyroid", "octet", "voronoi"], [0.35, 0.25, 0.2, 0.1, 0.1]
        )
        if porous
        else None,
        "pore_size_um": int(build.normal(600, 120, 300, 1000)) if porous else None,
        "porosity_pct": build.normal(68, 6, 50, 85, 1) if porous else None,
        "ha_coating": build.chance(0.3),
        "fixation": build.pick(
            ["press_fit", "screws", "cemented_stem", "hybrid"], [0.45, 0.3, 0.15, 0.1]
        ),
    }


def _complications(build: Builder, surgery: date, last: date) -> list[Row]:
    found = []
    types = list(_HENDERSON)
    for _ in range(int(build.rng.poisson(0.4))):
        kind = build.pick(types, [_HENDERSON[t][0] for t in types])
        _, first, latest, (treatments, shares) = _HENDERSON[kind]
        when = build.after(surgery, first, latest)
        if when <= last:
            treatment = build.pick(treatments, shares)
            found.append(
                {
                    "comp_date": when,
                    "henderson_type": kind,
                    "comp_description": None,
                    "comp_treatment": treatment,
                    "reoperation": treatment != "non_operative",
                }
            )
    return sorted(found, key=lambda complication: str(complication["comp_date"]))


def generate(build: Builder, subjects: int) -> list[Row]:
    """Add every patient's forms to ``build``; return the ``ortho_outcomes`` rows."""
    cutoff = date(2025, 6, 1)
    histologies = list(_HISTOLOGY)
    rows = []
    for number, surgery in enumerate(build.enrolment(subjects, date(2022, 6, 1), 730), 1):
        build.subject(number)
        histology = build.pick(histologies, [_HISTOLOGY[h][0] for h in histologies])
        _, mean_age, sd_age, (stages, stage_shares) = _HISTOLOGY[histology]
        age, sex = int(build.normal(mean_age, sd_age, 10, 85)), build.pick(["M", "F"], [0.55, 0.45])
        site = build.pick(list(_SITES), list(_SITES.values()))
        screening = build.after(surgery, -20, -7)
        tall = 172 if sex == "M" else 160
        build.add("screening", "consent", {"consent_given": True, "consent_date": screening})
        build.add(
            "screening",
            "demographics",
            build.person(screening, age)
            | {
                "age": age,
                "sex": sex,
                "height_cm": build.normal(tall, 8, 130, 200, 1),
                "weight_kg": build.normal(tall - 100, 12, 30, 130, 1),
            },
        )
        build.add(
            "screening",
            "tumour",
            {
                "histology": histology,
                "tumour_site": site,
                "side": build.pick(["L", "R"]),
                "enneking_stage": build.pick(stages, stage_shares),
                "tumour_size_cm": build.normal(8, 3, 1, 25, 1),
                "neoadjuvant_chemo": histology in ("osteosarcoma", "ewing")
                or (histology == "ups" and build.chance(0.5)),
                "pathological_fracture": build.chance(0.1),
            },
        )
        if site == "pelvis":
            reconstruction, length = "hemipelvic", build.normal(150, 40, 60, 300)
        elif site.endswith("shaft"):
            reconstruction, length = "intercalary", build.normal(140, 40, 40, 300)
        else:
            reconstruction = "osteoarticular" if build.chance(0.8) else "intercalary"
            length = build.normal(150, 45, 40, 350)
        build.add(
            "surgery",
            "surgery",
            {
                "surgery_date": surgery,
                "margin": build.pick(
                    ["wide", "marginal", "radical", "intralesional"], [0.75, 0.15, 0.03, 0.07]
                ),
                "resection_length_mm": int(length),
                "reconstruction": reconstruction,
                "operative_time_min": int(build.normal(300, 80, 120, 720)),
                "blood_loss_ml": int(
                    build.normal(2000 if site == "pelvis" else 600, 500, 100, 6000)
                ),
            },
        )
        build.add("surgery", "implant", _implant(build, number))

        median_life = 700 if histology == "metastasis" else 5000
        t_death = build.rng.exponential(median_life / math.log(2))
        t_admin, t_lost = (cutoff - surgery).days, build.rng.exponential(365 / 0.03)
        end = max(1, int(min(t_death, t_admin, t_lost)))
        last, died = build.after(surgery, end), t_death <= min(t_admin, t_lost)
        level = build.rng.normal(0, 0.6) - (0.3 if site == "pelvis" else 0.0)
        for event, day, window, mean in _VISITS:
            when = build.after(surgery, day - window, day + window)
            if when > last:
                break
            domains = {
                name: int(
                    min(5, max(0, round(mean / 20 + level + shift + build.rng.normal(0, 0.6))))
                )
                for name, shift in _DOMAINS.items()
            }
            build.add(event, "msts", {"msts_date": when, **domains})
            build.add(
                event,
                "follow_up",
                {
                    "fu_date": when,
                    "local_recurrence": build.chance(0.02),
                    "metastasis": histology == "metastasis" or build.chance(0.04),
                    "radiolucent_lines": build.chance(0.1),
                },
            )
        complications = _complications(build, surgery, last)
        if complications:
            build.add("complications", "complication", complications)
        revising = [c for c in complications if c["comp_treatment"] in _REVISING]
        if revising:
            first, onset = revising[0], revising[0]["comp_date"]
            assert isinstance(onset, date)
            when = min(build.after(onset, 2, 21), last)
            build.add(
                "revision",
                "revision",
                {
                    "revision_date": when,
                    "revision_reason": first["henderson_type"],
                    "revision_type": _REVISING[str(first["comp_treatment"])],
                },
            )
        build.add(
            "end_of_study",
            "status",
            {
                "last_contact": last,
                "vital_status": "dead" if died else "alive",
                "death_date": last if died else None,
            },
        )

        values = build.typed("screening", "surgery", "revision", "end_of_study")
        derived = build.derived(values)
        row: Row = {
            "age": age,
            "sex": sex,
            "histology": histology,
            "tumour_site": site,
            "reconstruction": reconstruction,
            "porous_scaffold": values["porous_scaffold"],
            "implant_survival_days": derived["implant_survival_days"],
            "revision_event": derived["revision_event"],
        }
        for event, *_ in _VISITS:
            msts = build.derived(build.typed(event))
            row[f"msts_total_{event}"] = msts["msts_total"]
            row[f"msts_percent_{event}"] = msts["msts_percent"]
        rows.append(analysis_row(row))
    return rows
