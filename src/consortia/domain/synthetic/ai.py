"""Synthetic cases of the ``ai-diagnostic`` template: an AI score for lung nodules.

30 % of nodules are malignant. The AI score is Beta(4, 2) for malignant and Beta(2, 4) for
benign nodules, rounded to 3 places (ROC AUC ~0.90; at 0.5, sensitivity and specificity
~0.81). The radiologist calls malignant nodules positive with probability 0.80 and benign
ones with 0.15. Malignancy is proven by histopathology; benign nodules by histopathology
(35 %) or two-year CT stability.
"""

from __future__ import annotations

from datetime import date

from consortia.domain.synthetic._builder import Builder, Row, analysis_row


def generate(build: Builder, subjects: int) -> list[Row]:
    """Add every case's forms to ``build``; return the ``ai_cases`` rows."""
    rows = []
    for number, imaging in enumerate(build.enrolment(subjects, date(2021, 1, 1), 730), 1):
        build.subject(number)
        malignant = build.chance(0.3)
        age, sex = int(build.normal(64 if malignant else 58, 10, 30, 90)), build.pick(["M", "F"])
        nodule = build.normal(17 if malignant else 11, 5, 6, 30, 1)
        score = round(float(build.rng.beta(4, 2) if malignant else build.rng.beta(2, 4)), 3)
        called = build.chance(0.80 if malignant else 0.15)
        standard = (
            "histopathology"
            if malignant
            else build.pick(["histopathology", "ct_follow_up"], [0.35, 0.65])
        )
        build.add(
            "case",
            "case_info",
            {
                "hospital_number": build.person(imaging, age)["hospital_number"],
                "accession_number": f"ACC{build.whole(10**8, 10**9 - 1)}",
                "age": age,
                "sex": sex,
                "smoker": build.chance(0.7 if malignant else 0.45),
            },
        )
        build.add(
            "case",
            "imaging",
            {
                "imaging_date": imaging,
                "scanner_vendor": build.pick(
                    ["ge", "siemens", "philips", "canon", "united_imaging"]
                ),
                "slice_mm": float(build.pick(["0.6", "0.75", "1.0", "1.25", "1.5"])),
                "nodule_mm": nodule,
            },
        )
        build.add("case", "ai_read", {"ai_version": "LungAI 2.3.1", "ai_score": score})
        build.add(
            "case",
            "reader_read",
            {
                "reader_code": build.pick(["R1", "R2", "R3", "R4"]),
                "reader_years": build.whole(3, 25),
                "reader_call": "positive" if called else "negative",
                "reader_confidence": build.whole(2, 5),
            },
        )
        days = (7, 60) if standard == "histopathology" else (720, 760)
        build.add(
            "case",
            "reference",
            {
                "reference_standard": standard,
                "reference_date": build.after(imaging, *days),
                "reference_diagnosis": "malignant" if malignant else "benign",
            },
        )
        values = build.typed()
        derived = build.derived(values)
        rows.append(
            analysis_row(
                {
                    "age": age,
                    "sex": sex,
                    "nodule_mm": values["nodule_mm"],
                    "scanner_vendor": values["scanner_vendor"],
                    "ai_score": values["ai_score"],
                    "ai_call": derived["ai_call"],
                    "reader_positive": derived["reader_positive"],
                    "reference_positive": derived["reference_positive"],
                }
            )
        )
    return rows
