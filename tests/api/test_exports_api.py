"""Exports over the API of data saved through the API: ODM ClinicalData that parses, is
valid against the schema we ship and holds every value, whatever order forms were saved in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from node_client import Node

from consortia.api.exports import ExportAborted
from consortia.auth.principal import Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.services import imports
from consortia.services.common import cli_operator
from consortia.standards.odm import EXTENDED_SCHEMA, ODM_NS
from consortia.storage.tables import event_instance, form_instance, item_value, subject
from processes import served_in_thread

STUDY = "CART-LBCL"
BASE = f"/api/v1/studies/{STUDY}"
REASON = "corrected against the source document"
#: values of the crs_icans form (two non-repeating groups, crs and icans) that no show_if
#: hides and no edit check refuses, whatever else the form holds; canonical text
CRS_ICANS: dict[str, list[str]] = {
    "assessment_date": ["2025-02-03", "2025-02-04"],
    "max_temp": ["37.2", "38.9", "39.5"],
    "antipyretic": ["1", "0"],
    "tocilizumab": ["0", "1"],
    "corticosteroids": ["0", "1"],
    "seizure": ["none", "rapid_resolving_or_eeg_nonconvulsive"],
    "motor_weakness": ["0", "1"],
    "icp_oedema": ["none", "focal_local"],
}
#: the items of CRS_ICANS in the crs group (the others are in icans)
_CRS = {"assessment_date", "max_temp", "antipyretic", "tocilizumab", "corticosteroids"}
AE = {
    "ae_term": "Pyrexia",
    "ae_soc": "genrl",
    "ae_ctcae_version": "5.0",
    "ae_onset": "2025-03-02",
    "ae_grade": "2",
    "ae_serious": "0",
    "ae_related": "probable",
}

Value = tuple[str, str, str | None, str, str, str | None, str, str]


class Clients:
    """The node with cart-lbcl loaded, a coordinator at SG01 and an administrator."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
        self.coordinator = node.client(
            node.add_user("coord@sg.example", (STUDY, "SG01", Role.COORDINATOR))
        )
        loaded = self.admin.put(f"{BASE}/definition", json={"source": template_text("cart-lbcl")})
        assert loaded.status_code == 200, loaded.text
        self.enrolled = 0

    def enrol(self) -> str:
        self.enrolled += 1
        subject_id = f"SG01-{self.enrolled:03d}"
        enrolled = self.coordinator.post(
            f"{BASE}/subjects",
            json={"subject_id": subject_id, "site": "SG01", "screening_date": "2025-01-06"},
        )
        assert enrolled.status_code == 201, enrolled.text
        return subject_id

    def save(self, subject_id: str, event: str, form: str, values: dict[str, Any]) -> None:
        url = f"{BASE}/subjects/{subject_id}/events/{event}/forms/{form}"
        version = self.coordinator.get(url).json()["version"]
        body = {"version": version, "values": values, "reason": REASON if version else None}
        saved = self.coordinator.put(url, json=body)
        assert saved.status_code == 200, saved.text

    def export_odm(self) -> bytes:
        exported = self.admin.post(f"{BASE}/exports", json={"format": "odm"})
        assert exported.status_code == 200, exported.text
        return exported.content


@pytest.fixture
def clients(node: Node) -> Clients:
    return Clients(node)


def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(EXTENDED_SCHEMA), parser))


def _children(element: Any, tag: str) -> Iterator[Any]:
    return iter(element.iterfind(f"{{{ODM_NS}}}{tag}"))


def _exported_values(xml: bytes) -> list[Value]:
    """Every ItemData of the file, with the keys of the elements holding it, after checking
    that the file parses and is valid against the schema we ship."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    document = etree.fromstring(xml, parser)
    schema = _schema()
    assert schema.validate(document), schema.error_log
    values: list[Value] = []
    for clinical in _children(document, "ClinicalData"):
        for subject_data in _children(clinical, "SubjectData"):
            for event in _children(subject_data, "StudyEventData"):
                for form in _children(event, "FormData"):
                    for group in _children(form, "ItemGroupData"):
                        for item in _children(group, "ItemData"):
                            values.append(
                                (
                                    subject_data.get("SubjectKey"),
                                    event.get("StudyEventOID"),
                                    event.get("StudyEventRepeatKey"),
                                    form.get("FormOID"),
                                    group.get("ItemGroupOID"),
                                    group.get("ItemGroupRepeatKey"),
                                    item.get("ItemOID"),
                                    item.get("Value"),
                                )
                            )
    return values


def _stored_values(node: Node) -> list[Value]:
    """Every value in the database, keyed as the ODM export keys it."""
    query = (
        sa.select(
            subject.c.subject_id,
            event_instance.c.event,
            event_instance.c.instance,
            form_instance.c.form,
            item_value.c.group_instance,
            item_value.c.item,
            item_value.c.value_text,
        )
        .join(form_instance, form_instance.c.id == item_value.c.form_pk)
        .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
    )
    stored: list[Value] = []
    with node.engine.connect() as connection:
        for row in connection.execute(query):
            group = "events" if row.form == "ae" else "crs" if row.item in _CRS else "icans"
            stored.append(
                (
                    row.subject_id,
                    f"SE.{row.event}",
                    str(row.instance) if row.instance > 1 else None,
                    f"F.{row.form}",
                    f"IG.{row.form}.{group}",
                    str(row.group_instance) if row.group_instance else None,
                    f"I.{row.item}",
                    row.value_text,
                )
            )
    return stored


def test_a_form_whose_groups_were_saved_interleaved_exports_as_valid_odm_with_every_value(
    clients: Clients,
) -> None:
    subject_id = clients.enrol()
    # icans first, then crs, then icans again (a value removed and written anew gets a new
    # row, after the crs rows): the rows of the two groups interleave
    clients.save(subject_id, "crs_daily", "crs_icans", {"seizure": "none", "icp_oedema": "none"})
    crs = {"assessment_date": "2025-02-03", "max_temp": "38.9", "antipyretic": "1"}
    clients.save(subject_id, "crs_daily", "crs_icans", {"seizure": "none", **crs})
    clients.save(
        subject_id,
        "crs_daily",
        "crs_icans",
        {"seizure": "none", **crs, "icp_oedema": "focal_local", "motor_weakness": "0"},
    )
    clients.save(
        subject_id, "crs_daily.2", "crs_icans", {"motor_weakness": "1", "max_temp": "37.2"}
    )
    # a repeating group, its instances saved out of order with values rewritten
    clients.save(subject_id, "ae_log", "ae", {"events": [AE]})
    clients.save(subject_id, "ae_log", "ae", {"events": [AE, {**AE, "ae_term": "Headache"}]})
    clients.save(
        subject_id,
        "ae_log",
        "ae",
        {"events": [{**AE, "ae_grade": "1"}, {**AE, "ae_term": "Headache", "ae_grade": "3"}]},
    )
    exported = _exported_values(clients.export_odm())
    assert len(exported) == len(set(exported))
    assert sorted(exported, key=repr) == sorted(_stored_values(clients.node), key=repr)
    assert (
        subject_id,
        "SE.crs_daily",
        None,
        "F.crs_icans",
        "IG.crs_icans.icans",
        None,
        "I.icp_oedema",
        "focal_local",
    ) in exported
    assert len([value for value in exported if value[3] == "F.ae"]) == 2 * len(AE)


_steps = st.lists(
    st.dictionaries(
        st.sampled_from(sorted(CRS_ICANS)),
        st.integers(min_value=0, max_value=2) | st.none(),  # None: remove the value
        min_size=1,
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_steps)
def test_any_order_of_saves_exports_as_valid_odm_with_every_value(
    clients: Clients, steps: list[dict[str, int | None]]
) -> None:
    # each example enrols its own subject on the one node, and saves its form step by step
    subject_id = clients.enrol()
    values: dict[str, str] = {}
    saved: dict[str, str] = {}
    for step in steps:
        for item, choice in step.items():
            if choice is None:
                values.pop(item, None)
            else:
                options = CRS_ICANS[item]
                values[item] = options[choice % len(options)]
        if values and values != saved:
            clients.save(subject_id, "crs_daily", "crs_icans", values)
            saved = dict(values)
    exported = _exported_values(clients.export_odm())
    mine = {(value[4], value[6], value[7]) for value in exported if value[0] == subject_id}
    assert mine == {
        (f"IG.crs_icans.{'crs' if item in _CRS else 'icans'}", f"I.{item}", text)
        for item, text in saved.items()
    }
    assert sorted(exported, key=repr) == sorted(_stored_values(clients.node), key=repr)


# --- characters XML 1.0 cannot hold -------------------------------------------------------


def test_a_save_with_a_character_xml_cannot_hold_is_refused_and_nothing_is_saved(
    clients: Clients,
) -> None:
    subject_id = clients.enrol()
    url = f"{BASE}/subjects/{subject_id}/events/ae_log/forms/ae"
    message = "is not allowed (XML 1.0 cannot hold it); tabs and newlines are allowed"
    for text in ("Pyr\x00exia", "Pyr\ud800exia"):
        body = {"version": 0, "values": {"events": [AE, {**AE, "ae_term": text}]}}
        # json.dumps escapes a lone surrogate as \ud800, as a client may send it
        refused = clients.coordinator.put(
            url, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["path"] == "forms.ae.events[2].ae_term"
        assert error["message"] == f"character U+{ord(text[3]):04X} {message}"
    assert clients.coordinator.get(url).json()["version"] == 0
    with clients.node.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(item_value)).scalar() == 0


def _import_subjects(node: Node, tmp_path: Path, subjects: int) -> None:
    records = synthesize("cart-lbcl", subjects=subjects, site="SG01", seed=8)
    path = records.write_csv(tmp_path / "records.csv")
    imports.import_file(node.engine, cli_operator(Role.COORDINATOR), STUDY, path)


def _store_directly(node: Node, text: str, *, last: bool) -> str:
    """Put ``text`` in the ae_term of the first (or last) subject that has one, as an older
    version could have stored it; return the value's path."""
    order = subject.c.subject_id.desc() if last else subject.c.subject_id
    with node.engine.begin() as connection:
        row = connection.execute(
            sa.select(
                item_value.c.id,
                item_value.c.group_instance,
                subject.c.subject_id,
                event_instance.c.instance,
            )
            .join(form_instance, form_instance.c.id == item_value.c.form_pk)
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .join(subject, subject.c.id == form_instance.c.subject_pk)
            .where(item_value.c.item == "ae_term")
            .order_by(order, item_value.c.id)
            .limit(1)
        ).one()
        connection.execute(
            item_value.update().where(item_value.c.id == row.id).values(value_text=text)
        )
    event = "ae_log" if row.instance == 1 else f"ae_log.{row.instance}"
    return f"{row.subject_id}/{event}/ae/events[{row.group_instance}].ae_term"


def test_a_stored_value_xml_cannot_hold_early_in_the_export_is_a_problem_response(
    clients: Clients, tmp_path: Path
) -> None:
    _import_subjects(clients.node, tmp_path, 2)
    path = _store_directly(clients.node, "Neutro\x01penia", last=False)
    refused = clients.admin.post(f"{BASE}/exports", json={"format": "odm"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["path"] == path
    assert error["message"].startswith("character U+0001 is not allowed")


def test_an_export_failing_after_its_first_bytes_is_an_incomplete_read_for_the_client(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clients = Clients(node)
    _import_subjects(node, tmp_path, 30)
    token = node.add_user("dm@sg.example", (STUDY, "*", Role.DATA_MANAGER))
    headers = {"Authorization": f"Bearer {token}"}
    # the app's lifespan already runs (the node fixture's), so uvicorn leaves it alone
    served = served_in_thread(node.app, lifespan="off")
    with served as url, httpx.Client(base_url=url, headers=headers) as http:
        whole = http.post(f"{BASE}/exports", json={"format": "odm"})
        assert whole.status_code == 200
        assert len(_exported_values(whole.content)) > 1000  # well past the first 64 KiB
        path = _store_directly(node, "Neutro\x01penia", last=True)
        with http.stream("POST", f"{BASE}/exports", json={"format": "odm"}) as response:
            assert response.status_code == 200  # the status line went out with the first bytes
            received = bytearray()
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                for chunk in response.iter_bytes():
                    received += chunk
        assert received.startswith(b'<?xml version="1.0"')
        assert not received.rstrip().endswith(b"</ODM>")
        assert http.get("/api/v1/health").status_code == 200  # the server serves on
    assert any(path in record.getMessage() for record in caplog.records)
    # in process, the application does not complete the response either: it raises
    with pytest.raises(ExportAborted):
        clients.admin.post(f"{BASE}/exports", json={"format": "odm"})
