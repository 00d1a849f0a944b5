"""Synthetic subjects of the ``glucose-iso15197`` template: paired meter and reference readings.

Each subject gives three capillary samples in one session, each measured on a different
test-strip lot. Reference values are drawn from the concentration bins ISO 15197:2013
prescribes (< 50 mg/dL 5 %, 50-80 15 %, 80-120 20 %, 120-200 30 %, 200-300 15 %, 300-400
10 %, > 400 5 %; here 40-450 mg/dL overall). The meter reads reference x (1 + e) with
e ~ N(0, 7 %), and e ~ N(0, 30 %) for 1 % outliers, so ~96-98 % of results fall within the
ISO limits.
"""

from __future__ import annotations

from datetime import date, time
from typing import Final

from consortia.domain.synthetic._builder import Builder, Row, analysis_row

BINS: Final = ((40, 50), (50, 80), (80, 120), (120, 200), (200, 300), (300, 400), (400, 450))
SHARES: Final = (0.05, 0.15, 0.20, 0.30, 0.15, 0.10, 0.05)
LOTS: Final = ("lot_a", "lot_b", "lot_c")


def generate(build: Builder, subjects: int) -> list[Row]:
    """Add every subject's forms to ``build``; return the ``glucose_pairs`` rows."""
    rows = []
    for number in range(1, subjects + 1):
        build.subject(number)
        session = build.after(date(2024, 4, 1), number // 4)
        age, sex = int(build.normal(52, 15, 18, 85)), build.pick(["M", "F"])
        diabetes = build.pick(["t1", "t2", "none"], [0.3, 0.6, 0.1])
        person = build.person(session, age)
        build.add("screening", "consent", {"consent_given": True, "consent_date": session})
        build.add(
            "screening",
            "demographics",
            {
                "initials": person["initials"],
                "hospital_number": person["hospital_number"],
                "age": age,
                "sex": sex,
                "diabetes_type": diabetes,
                "insulin": None if diabetes == "none" else diabetes == "t1" or build.chance(0.4),
            },
        )
        build.add(
            "test_session",
            "session",
            {
                "session_date": session,
                "haematocrit_pct": build.normal(42 if sex == "M" else 39, 4, 30, 55, 1),
                "room_temp_c": build.normal(23, 1.2, 18, 30, 1),
                "operator": build.pick(["OP1", "OP2", "OP3"]),
            },
        )
        method = build.pick(["ysi", "hexokinase"], [0.7, 0.3])
        minutes = 8 * 60 + build.whole(0, 60)
        readings = []
        for lot in LOTS:
            low, high = BINS[int(build.rng.choice(len(BINS), p=SHARES))]
            reference = round(float(build.rng.uniform(low, high)), 1)
            error = build.rng.normal(0, 0.30 if build.chance(0.01) else 0.07)
            readings.append(
                {
                    "sample_time": time(minutes // 60, minutes % 60),
                    "sample_type": "capillary",
                    "meter_lot": lot,
                    "reference_method": method,
                    "ref_mgdl": reference,
                    "meter_mgdl": int(min(600, max(20, round(reference * (1 + error))))),
                }
            )
            minutes += build.whole(45, 120)
        entry = build.add("test_session", "glucose_readings", readings)
        subject = build.typed("screening")
        instances = entry.values["readings"]
        assert isinstance(instances, list)
        for instance in instances:
            reading = build.parsed(instance)
            derived = build.derived(subject | reading)
            rows.append(
                analysis_row(
                    {
                        "ref_mgdl": reading["ref_mgdl"],
                        "meter_mgdl": reading["meter_mgdl"],
                        "reference_method": reading["reference_method"],
                        "meter_lot": reading["meter_lot"],
                        "sample_type": reading["sample_type"],
                        "diabetes_type": diabetes,
                        "within_iso": derived["within_iso"],
                    }
                )
            )
    return rows
