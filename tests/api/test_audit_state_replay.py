"""``audit verify --state``: the state replayed from the audit trail equals the tables after
many saves over the API and an import, and a table edited behind the services' back is
reported by subject, form and item — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from node_client import Node, SyncClient

from consortia.auth.principal import Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.services import imports, tokens, users
from consortia.services.common import cli_operator
from consortia.storage.audit import verify_trail
from consortia.storage.replay import compare_state
from consortia.storage.tables import (
    app_user,
    data_query,
    event_instance,
    form_instance,
    item_value,
    role_grant,
    subject,
)

STUDY = "CART-LBCL"
BASE = f"/api/v1/studies/{STUDY}"
PASSWORD = "investigator-password-42"
ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "eligible": True,
}


def _form(event: str, form: str, subject_id: str = "SG01-001") -> str:
    return f"{BASE}/subjects/{subject_id}/events/{event}/forms/{form}"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _save(client: SyncClient, url: str, version: int, values: dict[str, Any], **extra: Any) -> Any:
    return _ok(client.put(url, json={"version": version, "values": values, **extra}))


@pytest.fixture
def busy(node: Node, tmp_path: Path) -> Node:
    """A node after a day's work over the API (saves, changes with reasons, repeating
    groups, identifiers, verify, sign, lock, unlock, queries, statuses, visit dates, tokens)
    and an import of a synthetic file."""
    sg = lambda role: (STUDY, "SG01", role)  # noqa: E731
    admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
    coordinator = node.client(node.add_user("coord@sg.example", sg(Role.COORDINATOR)))
    investigator = node.client(
        node.add_user("pi@sg.example", sg(Role.INVESTIGATOR), password=PASSWORD)
    )
    monitor = node.client(node.add_user("cra@sg.example", sg(Role.MONITOR)))
    manager = node.client(node.add_user("dm@sg.example", sg(Role.DATA_MANAGER)))
    _ok(admin.put(f"{BASE}/definition", json={"source": template_text("cart-lbcl")}))
    for number in (1, 2):
        _ok(
            coordinator.post(
                f"{BASE}/subjects",
                json={"subject_id": f"SG01-00{number}", "site": "SG01", "initials": "AB",
                      "screening_date": "2025-01-06"},
            ),
            201,
        )  # fmt: skip
    eligibility = _form("screening", "eligibility")
    _save(coordinator, eligibility, 0, ELIGIBLE, complete=True)
    _save(coordinator, eligibility, 1, {**ELIGIBLE, "ecog": 0}, complete=True, reason="source")
    _ok(monitor.post(f"{eligibility}/verify", json={"version": 2}))
    _ok(
        investigator.post(
            f"{eligibility}/sign",
            json={"version": 3, "password": PASSWORD, "meaning": "approval"},
        )
    )
    _ok(manager.post(f"{eligibility}/lock", json={"version": 4}))
    _ok(manager.post(f"{eligibility}/unlock", json={"version": 5, "reason": "query 1"}))
    demographics = {"initials": "ALT", "hospital_number": "H123", "age": 61, "sex": "M"}
    _save(coordinator, _form("screening", "demographics"), 0, demographics)
    _save(
        coordinator,
        _form("screening", "demographics"),
        1,
        {**demographics, "age": 62, "hospital_number": None},
        reason="birth year",
    )
    aes = {"events": [{"ae_term": "Fever"}, {"ae_term": "Rash"}]}
    _save(coordinator, _form("ae_log", "ae", "SG01-002"), 0, aes)
    _save(
        coordinator,
        _form("ae_log", "ae", "SG01-002"),
        1,
        {"events": [{"ae_term": "Fever"}]},
        reason="duplicate entry",
    )
    response = {"response_date": "2025-04-20", "response_method": "pet_ct", "response": "CR"}
    _save(coordinator, _form("day28", "response"), 0, response, visit_date="2025-04-20")
    query = _ok(
        monitor.post(f"{eligibility}/queries", json={"item": "ecog", "text": "ECOG in source?"}),
        201,
    )
    _ok(coordinator.post(f"{BASE}/queries/{query['id']}/answer", json={"text": "clinic note"}))
    _ok(manager.post(f"{BASE}/queries/{query['id']}/close", json={"text": "ok"}))
    # the study's gates: eligible needs consent given and the eligibility form met
    consent = {"consent_date": "2025-01-06", "consent_given": True, "consent_version": "v2"}
    _save(coordinator, _form("screening", "consent", "SG01-002"), 0, consent, complete=True)
    _save(coordinator, _form("screening", "eligibility", "SG01-002"), 0, ELIGIBLE, complete=True)
    status = f"{BASE}/subjects/SG01-002/status"
    _ok(coordinator.post(status, json={"status": "eligible", "on_date": "2025-01-10"}))
    _ok(
        coordinator.post(
            status, json={"status": "withdrawn", "on_date": "2025-02-01", "reason": "consent"}
        )
    )
    operator = cli_operator(Role.COORDINATOR)
    created = tokens.create_token(
        node.engine,
        operator,
        email="cra@sg.example",
        name="cli",
        lifetime=timedelta(days=3),
        studies=[STUDY],
    )
    tokens.revoke_token(node.engine, operator, created.record.id, email="cra@sg.example")
    users.revoke_role(
        node.engine, operator, email="dm@sg.example", study=STUDY, site="SG01",
        role=Role.DATA_MANAGER,
    )  # fmt: skip
    data = synthesize("cart-lbcl", subjects=6, site="SH01", seed=5)
    report = imports.import_file(node.engine, operator, STUDY, data.write_csv(tmp_path / "f.csv"))
    assert report.subjects_created == 6
    return node


def _value_row(engine: sa.Engine, subject_id: str, form: str, item: str) -> Any:
    query = (
        sa.select(item_value.c.id, item_value.c.form_pk, item_value.c.value_text)
        .join(form_instance, form_instance.c.id == item_value.c.form_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
        .where(subject.c.subject_id == subject_id, form_instance.c.form == form)
        .where(item_value.c.item == item)
    )
    with engine.connect() as connection:
        return connection.execute(query).one()


def _differences(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        assert verify_trail(connection).ok  # the hash chain alone sees nothing wrong
    return [str(difference) for difference in compare_state(engine)]


def test_the_trail_replays_to_the_tables_after_api_saves_and_an_import(busy: Node) -> None:
    assert _differences(busy.engine) == []


def test_an_item_value_edited_in_the_table_is_reported_by_subject_form_and_item(
    busy: Node,
) -> None:
    row = _value_row(busy.engine, "SG01-001", "eligibility", "ecog")
    assert row.value_text == "0"
    with busy.engine.begin() as connection:
        connection.execute(
            item_value.update().where(item_value.c.id == row.id).values(value_text="3")
        )
    assert _differences(busy.engine) == [
        "CART-LBCL SG01-001 / screening / eligibility.ecog: table 3, trail 0"
    ]
    with busy.engine.begin() as connection:  # the number beside it, which SQL sums read
        connection.execute(
            item_value.update()
            .where(item_value.c.id == row.id)
            .values(value_text="0", value_num=4.0)
        )
    assert _differences(busy.engine) == [
        "CART-LBCL SG01-001 / screening / eligibility.ecog value_num: table 4.0, trail 0"
    ]


def test_an_edited_identifier_is_reported_without_showing_its_value(busy: Node) -> None:
    row = _value_row(busy.engine, "SG01-001", "demographics", "initials")
    with busy.engine.begin() as connection:
        connection.execute(
            item_value.update().where(item_value.c.id == row.id).values(value_text="ZZZ")
        )
        connection.execute(
            subject.update().where(subject.c.subject_id == "SG01-002").values(initials="XY")
        )
    found = _differences(busy.engine)
    assert found == [
        "CART-LBCL SG01-001 / screening / demographics.initials identifier: "
        "table (an identifier value), trail (an identifier value)",
        "CART-LBCL SG01-002 initials: table (an identifier value), trail (an identifier value)",
    ]
    assert not any(text in line for line in found for text in ("ZZZ", "ALT", "XY", "AB"))


def test_a_deleted_row_is_reported(busy: Node) -> None:
    row = _value_row(busy.engine, "SG01-002", "ae", "ae_term")
    with busy.engine.begin() as connection:
        connection.execute(item_value.delete().where(item_value.c.id == row.id))
    assert _differences(busy.engine) == [
        "CART-LBCL SG01-002 / ae_log / ae.events[1].ae_term: table absent, trail Fever"
    ]


def test_a_row_inserted_without_an_event_is_reported(busy: Node) -> None:
    row = _value_row(busy.engine, "SG01-001", "eligibility", "ecog")
    with busy.engine.begin() as connection:
        connection.execute(
            item_value.insert().values(
                form_pk=row.form_pk, item="ldh_elevated", group_instance=0, value_text="1",
                value_num=1.0,
            )
        )  # fmt: skip
    assert _differences(busy.engine) == [
        "CART-LBCL SG01-001 / screening / eligibility.ldh_elevated: table 1, trail absent"
    ]


def test_form_states_subjects_queries_and_grants_changed_in_the_tables_are_reported(
    busy: Node,
) -> None:
    row = _value_row(busy.engine, "SG01-001", "eligibility", "ecog")
    with busy.engine.begin() as connection:
        connection.execute(
            form_instance.update()
            .where(form_instance.c.id == row.form_pk)
            .values(version=9, signed_by="cra@sg.example")
        )
        connection.execute(
            subject.update().where(subject.c.subject_id == "SG01-002").values(status="on_study")
        )
        connection.execute(data_query.update().values(status="open"))
        connection.execute(
            event_instance.update()
            .where(event_instance.c.visit_date.is_not(None))
            .values(visit_date=date(2025, 4, 21))
        )
        monitor = connection.execute(
            sa.select(app_user.c.id).where(app_user.c.email == "cra@sg.example")
        ).scalar_one()
        connection.execute(  # a self-grant written straight into the table
            role_grant.insert().values(
                user_id=monitor, study="*", site="*", role="node_admin",
                granted_at=datetime.now(UTC), granted_by="cra@sg.example",
            )
        )  # fmt: skip
    assert _differences(busy.engine) == [
        "CART-LBCL SG01-001 / day28 visit_date: table 2025-04-21, trail 2025-04-20",
        "CART-LBCL SG01-001 / screening / eligibility signed_by: table cra@sg.example, "
        "trail pi@sg.example",
        "CART-LBCL SG01-001 / screening / eligibility version: table 9, trail 6",
        "CART-LBCL SG01-002 status: table on_study, trail withdrawn",
        "CART-LBCL query 1 status: table open, trail closed",
        "grant node_admin at */* to cra@sg.example: table present, trail absent",
    ]
