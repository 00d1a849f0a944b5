"""Items filled from the allocation (cart-lbcl's ``randomisation.arm``, ``source:
randomisation``): never typed, derived from the subject's randomisation record when read,
and blind by the same rule as the allocation itself — the code for blinded roles, the arm
for the unblinded statistician and, after an emergency unblinding, for whoever may unblind
that subject. Members on both backends (``migrated_database_url``), the hub on SQLite."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.exceptions import ValidationError
from consortia.federation.policy import NodePolicy
from consortia.services import analyses, data_entry, imports, randomisation, studies
from consortia.storage.audit import iter_events
from consortia.storage.tables import item_value
from consortia.storage.tables import subject as subject_table
from randomisation_network import STUDY, Network, audit_actions, network, ready_subject, staff

SUBJECTS = ["SG01-001", "SG01-002", "SG01-003", "SG01-004"]
ARMS = {"car_t", "soc"}
CODES = {"A", "B"}
ARM_WORDS = re.compile(r"\b(car_t|soc)\b")
FILLED = "filled from the subject's allocation; randomise the subject instead"


@pytest.fixture
def net(
    migrated_database_url: str, migrated_sqlite: Callable[[Path], str], tmp_path: Path
) -> Iterator[Network]:
    with network(
        migrated_sqlite(tmp_path / "hub.db"),
        lambda path: migrated_database_url if path.name == "sgh.db" else migrated_sqlite(path),
        tmp_path,
        members=("sgh",),
    ) as built:
        member = built.members["sgh"]
        # a coordinator who may see the arm, to type it as coordinators did before
        seeing = staff("SG01", Role.UNBLINDED_STATISTICIAN, Role.COORDINATOR)
        for number, subject_id in enumerate(SUBJECTS):
            status = ("early_relapse", "primary_refractory")[number % 2]
            ready_subject(member, subject_id, "SG01", status=status)
            allocation = randomisation.randomise_subject(
                member.engine, seeing, STUDY, subject_id, built.link("sgh")
            )
            assert allocation.arm in ARMS
            type_the_arm(built, subject_id, allocation.arm)
        yield built


def type_the_arm(net: Network, subject_id: str, arm: str) -> bool:
    """What a coordinator did before: type the allocated arm into the form. Whether it was
    taken (when refused, the date alone is saved)."""
    coordinator = staff("SG01", Role.COORDINATOR)
    engine = net.members["sgh"].engine
    values: dict[str, object] = {"rand_date": date(2026, 12, 1), "arm": arm}
    save = data_entry.FormSave(version=0, values=values)
    try:
        data_entry.save_form(
            engine, coordinator, STUDY, subject_id, "randomisation", "randomisation", save
        )
    except ValidationError:
        save = data_entry.FormSave(version=0, values={"rand_date": date(2026, 12, 1)})
        data_entry.save_form(
            engine, coordinator, STUDY, subject_id, "randomisation", "randomisation", save
        )
        return False
    return True


def form_arm(net: Network, role: Role, subject_id: str, site: str = "SG01") -> object:
    view = data_entry.read_form(
        net.members["sgh"].engine,
        staff(site, role, email=f"{role.value}@example.org"),
        STUDY,
        subject_id,
        "randomisation",
        "randomisation",
    )
    return view.values.get("arm")


def test_typing_the_arm_is_refused_on_its_item_and_nothing_changes(net: Network) -> None:
    engine = net.members["sgh"].engine
    coordinator = staff("SG01", Role.COORDINATOR)
    before = data_entry.read_form(
        engine, coordinator, STUDY, "SG01-001", "randomisation", "randomisation"
    )
    trail = audit_actions(engine, STUDY)
    for arm in ("car_t", "soc"):
        with pytest.raises(ValidationError) as refused:
            data_entry.save_form(
                engine,
                coordinator,
                STUDY,
                "SG01-001",
                "randomisation",
                "randomisation",
                data_entry.FormSave(
                    version=before.version, values={"rand_date": "2026-12-02", "arm": arm}
                ),
            )
        assert [(p.path, p.message) for p in refused.value.problems] == [
            ("forms.randomisation.arm", FILLED)
        ]
    after = data_entry.read_form(
        engine, coordinator, STUDY, "SG01-001", "randomisation", "randomisation"
    )
    assert after.version == before.version
    assert after.values == before.values
    assert audit_actions(engine, STUDY) == trail


def test_the_form_shows_the_code_to_blinded_roles_and_the_arm_to_the_unblinded_statistician(
    net: Network,
) -> None:
    engine = net.members["sgh"].engine
    truth = {
        a.subject_id: (a.code, a.arm)
        for a in randomisation.list_allocations(
            engine, staff("*", Role.UNBLINDED_STATISTICIAN), STUDY
        )
    }
    assert set(truth) == set(SUBJECTS)
    for subject_id, (code, arm) in truth.items():
        for role in (Role.COORDINATOR, Role.INVESTIGATOR):
            assert form_arm(net, role, subject_id) == code
        for role in (Role.MONITOR, Role.DATA_MANAGER, Role.STATISTICIAN):
            assert form_arm(net, role, subject_id, "*") == code
        assert form_arm(net, Role.UNBLINDED_STATISTICIAN, subject_id, "*") == arm
        assert code in CODES
        assert arm in ARMS


def test_emergency_unblinding_shows_the_arm_on_the_form_of_that_subject_only(
    net: Network,
) -> None:
    engine = net.members["sgh"].engine
    investigator = staff("SG01", Role.INVESTIGATOR, email=f"{Role.INVESTIGATOR.value}@example.org")
    unblinded = randomisation.unblind_subject(
        engine, investigator, STUDY, "SG01-002", "grade 4 CRS, the arm is needed"
    )
    assert unblinded.arm in ARMS
    assert form_arm(net, Role.INVESTIGATOR, "SG01-002") == unblinded.arm
    for subject_id in ("SG01-001", "SG01-003", "SG01-004"):
        assert form_arm(net, Role.INVESTIGATOR, subject_id) in CODES
    # a coordinator may not unblind: still the code, for that subject too
    assert form_arm(net, Role.COORDINATOR, "SG01-002") in CODES


CROSSTAB = {"kind": "crosstab", "table": "edc", "rows": "arm", "columns": "disease_status"}


def test_an_analysis_by_arm_uses_codes_for_a_blinded_statistician_and_arms_when_unblinded(
    net: Network,
) -> None:
    engine = net.members["sgh"].engine
    policy = NodePolicy(min_cell_count=1)  # four subjects: let every cell out
    blinded = analyses.run_analysis(
        engine, staff("*", Role.STATISTICIAN), STUDY, CROSSTAB, policy=policy
    ).to_dict()
    levels = set(blinded["estimates"]["row_levels"])
    assert levels, blinded
    assert levels <= CODES, blinded
    assert not ARMS & set(str(blinded).split("'")), blinded
    unblinded = analyses.run_analysis(
        engine, staff("*", Role.UNBLINDED_STATISTICIAN), STUDY, CROSSTAB, policy=policy
    ).to_dict()
    assert set(unblinded["estimates"]["row_levels"]) <= ARMS
    assert unblinded["estimates"]["row_levels"]
    # the audit trail, which blinded auditors read, keeps the unblinded run without its arms
    with engine.connect() as connection:
        trail = [
            json.dumps([event.action, event.before, event.after], default=str)
            for event in iter_events(connection, chain=STUDY)
        ]
    assert not [event for event in trail if ARM_WORDS.search(event)], trail[-3:]
    # an unblinded statistician of one site: the arms of that site's subjects
    site_only = analyses.run_analysis(
        engine,
        staff("SG01", Role.UNBLINDED_STATISTICIAN, Role.STATISTICIAN),
        STUDY,
        CROSSTAB,
        policy=policy,
    ).to_dict()
    assert set(site_only["estimates"]["row_levels"]) <= ARMS


def test_a_bulk_import_that_sets_the_arm_is_refused_at_its_line_and_writes_nothing(
    engine: sa.Engine, tmp_path: Path
) -> None:
    admin = Principal(
        7, "dm@sg.example", "DM",
        frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
    )  # fmt: skip
    studies.load_definition(engine, admin, template_text("cart-lbcl"))
    path = synthesize("cart-lbcl", subjects=3, site="SG01", seed=3).write_csv(tmp_path / "c.csv")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    line = next(n for n, row in enumerate(rows, 2) if row["redcap_event_name"] == "randomisation")
    rows[line - 2]["arm"] = "car_t"  # as a file from before the arm was filled by randomisation
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValidationError) as refused:
        imports.import_file(engine, admin, STUDY, path)
    assert [(p.line, p.path, p.message) for p in refused.value.problems] == [
        (line, "forms.randomisation.arm", FILLED)
    ]
    with engine.connect() as connection:
        for table in (subject_table, item_value):
            assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
