"""Data capture over the API: definitions, schedule, form saves, states, queries, history."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from node_client import Node, SyncClient

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services.common import cli_operator
from consortia.services.data_entry import derived_values
from consortia.services.studies import current_definition
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.capture import CaptureRepository
from consortia.storage.queries import QueryRepository
from consortia.storage.repositories import SubjectRepository

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


class Team:
    """A node with the cart-lbcl study loaded and one person per role at SG01."""

    def __init__(self, node: Node) -> None:
        self.node = node
        sg = lambda role: (STUDY, "SG01", role)  # noqa: E731
        self.admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
        self.coordinator = node.client(node.add_user("coord@sg.example", sg(Role.COORDINATOR)))
        self.investigator = node.client(
            node.add_user("pi@sg.example", sg(Role.INVESTIGATOR), password=PASSWORD)
        )
        self.monitor = node.client(node.add_user("cra@sg.example", sg(Role.MONITOR)))
        self.data_manager = node.client(node.add_user("dm@sg.example", sg(Role.DATA_MANAGER)))
        self.statistician = node.client(node.add_user("stat@sg.example", sg(Role.STATISTICIAN)))
        self.other_site = node.client(
            node.add_user("coord@sh.example", (STUDY, "SH01", Role.COORDINATOR))
        )
        source = template_text("cart-lbcl")
        loaded = self.admin.put(f"{BASE}/definition", json={"source": source})
        assert loaded.status_code == 200, loaded.text
        enrolled = self.coordinator.post(
            f"{BASE}/subjects",
            json={"subject_id": "SG01-001", "site": "SG01", "screening_date": "2025-01-06"},
        )
        assert enrolled.status_code == 201, enrolled.text


@pytest.fixture
def team(node: Node) -> Team:
    return Team(node)


def _form(event: str, form: str, subject: str = "SG01-001") -> str:
    return f"{BASE}/subjects/{subject}/events/{event}/forms/{form}"


def _save(client: SyncClient, url: str, version: int, values: dict[str, Any], **extra: Any) -> Any:
    return client.put(url, json={"version": version, "values": values, **extra})


def _chain_ok(node: Node) -> list[Any]:
    with node.engine.connect() as connection:
        assert verify_trail(connection).ok
        return list(iter_events(connection, chain=STUDY))


def test_loading_a_definition_plans_the_schedule_with_targets_and_windows(team: Team) -> None:
    events = team.coordinator.get(f"{BASE}/subjects/SG01-001/events").json()
    by_ref = {e["ref"]: e for e in events}
    # the first scheduled event (screening, day -35) falls on the screening date
    assert by_ref["screening"]["target_date"] == "2025-01-06"
    assert by_ref["day28"]["target_date"] == "2025-03-10"
    assert (by_ref["day28"]["window_start"], by_ref["day28"]["window_end"]) == (
        "2025-03-07",
        "2025-03-17",
    )
    assert "ae_log" not in by_ref  # unscheduled events appear when used
    again = team.admin.put(
        f"{BASE}/definition",
        json={"source": template_text("cart-lbcl")},
    )
    assert again.json()["changed"] is False
    assert again.json()["version"] == 1


def test_hard_problems_refuse_the_save_with_every_item_path_and_change_nothing(
    team: Team,
) -> None:
    url = _form("screening", "eligibility")
    refused = _save(team.coordinator, url, 0, {**ELIGIBLE, "ecog": 7, "prior_lines": "two"})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    paths = {e["path"]: e["message"] for e in refused.json()["errors"]}
    assert paths["forms.eligibility.ecog"] == "7 is outside 0–5"
    assert "forms.eligibility.prior_lines" in paths
    assert team.coordinator.get(url).json()["version"] == 0
    hidden = _save(
        team.coordinator,
        _form("screening", "demographics"),
        0,
        {"age": 40, "sex": "M", "pregnant": False},
    )
    assert hidden.status_code == 422
    assert hidden.json()["errors"][0]["path"] == "forms.demographics.pregnant"
    incomplete = _save(team.coordinator, url, 0, {"ecog": 1}, complete=True)
    assert {e["path"] for e in incomplete.json()["errors"]} >= {"forms.eligibility.histology"}
    assert [e.action for e in _chain_ok(team.node)] == ["study.load", "subject.create"]


def test_a_soft_problem_saves_and_opens_a_query_on_the_item(team: Team) -> None:
    saved = _save(team.coordinator, _form("screening", "eligibility"), 0, {**ELIGIBLE, "ecog": 3})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["version"] == 1
    assert body["state"] == "in_progress"
    assert body["values"]["ecog"] == "3"
    assert [w["path"] for w in body["warnings"]] == ["forms.eligibility.ecog"]
    queries = team.monitor.get(f"{BASE}/queries", params={"status": "open"}).json()
    assert [(q["item"], q["origin"], q["opened_by"]) for q in queries] == [
        ("ecog", "auto", "system")
    ]
    assert body["open_queries"] == 1


def test_a_stale_version_gets_409_and_changes_nothing(team: Team) -> None:
    url = _form("screening", "eligibility")
    assert _save(team.coordinator, url, 0, ELIGIBLE).status_code == 200
    stale = _save(team.coordinator, url, 0, {**ELIGIBLE, "ecog": 0}, reason="typo")
    assert stale.status_code == 409
    assert team.coordinator.get(url).json()["values"]["ecog"] == "1"


def test_changing_a_saved_value_needs_a_reason_and_history_shows_before_and_after(
    team: Team,
) -> None:
    url = _form("screening", "eligibility")
    _save(team.coordinator, url, 0, ELIGIBLE)
    no_reason = _save(team.coordinator, url, 1, {**ELIGIBLE, "ecog": 0})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["path"] == "reason"
    changed = _save(team.coordinator, url, 1, {**ELIGIBLE, "ecog": 0}, reason="source: ECOG 0")
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    history = team.monitor.get(f"{url}/items/ecog/history").json()
    assert [(h["before"], h["after"], h["reason"], h["actor"]) for h in history] == [
        (None, "1", None, "coord@sg.example"),
        ("1", "0", "source: ECOG 0", "coord@sg.example"),
    ]
    form_events = team.monitor.get(f"{url}/history").json()
    assert [e["action"] for e in form_events] == ["form.save", "form.save"]
    subject_events = team.monitor.get(f"{BASE}/subjects/SG01-001/history").json()
    assert [e["action"] for e in subject_events] == ["subject.create", "form.save", "form.save"]


def test_verify_sign_lock_and_unlock_with_the_rules_of_part_11(team: Team) -> None:
    url = _form("screening", "eligibility")
    _save(team.coordinator, url, 0, ELIGIBLE, complete=True)
    assert team.coordinator.post(f"{url}/verify", json={"version": 1}).status_code == 403
    verified = team.monitor.post(f"{url}/verify", json={"version": 1})
    assert verified.json()["state"] == "verified"
    wrong = team.investigator.post(
        f"{url}/sign", json={"version": 2, "password": "not-the-password", "meaning": "approval"}
    )
    assert wrong.status_code == 401
    signed = team.investigator.post(
        f"{url}/sign", json={"version": 2, "password": PASSWORD, "meaning": "approval"}
    ).json()
    assert signed["state"] == "signed"
    assert signed["signature"]["printed_name"] == "pi"
    assert signed["signature"]["meaning"].startswith("approval: I approve")
    # a change clears the signature, and says so in the audit trail
    changed = _save(
        team.coordinator, url, 3, {**ELIGIBLE, "ecog": 0}, complete=True, reason="corrected"
    ).json()
    assert changed["state"] == "complete"
    assert changed["signature"] is None
    actions = [e.action for e in _chain_ok(team.node)]
    assert "form.signature_cleared" in actions
    assert "form.verification_cleared" in actions
    locked = team.data_manager.post(f"{url}/lock", json={"version": 4}).json()
    assert locked["state"] == "locked"
    refused = _save(team.coordinator, url, 5, {**ELIGIBLE, "ecog": 1}, reason="again")
    assert refused.status_code == 409
    assert "locked" in refused.json()["detail"]
    no_reason = team.data_manager.post(f"{url}/unlock", json={"version": 5, "reason": ""})
    assert no_reason.status_code == 422
    unlocked = team.data_manager.post(f"{url}/unlock", json={"version": 5, "reason": "query 3"})
    assert unlocked.json()["state"] == "complete"
    with team.node.engine.connect() as connection:
        unlock = [e for e in iter_events(connection, chain=STUDY) if e.action == "form.unlock"]
    assert unlock[0].reason == "query 3"


def test_a_query_is_opened_answered_closed_and_reopened_by_the_right_roles(team: Team) -> None:
    url = _form("screening", "eligibility")
    _save(team.coordinator, url, 0, ELIGIBLE)
    assert (
        team.coordinator.post(f"{url}/queries", json={"item": "ecog", "text": "?"}).status_code
        == 403
    )
    opened = team.monitor.post(f"{url}/queries", json={"item": "ecog", "text": "ECOG 1 in source?"})
    assert opened.status_code == 201
    query_id = opened.json()["id"]
    step = f"{BASE}/queries/{query_id}"
    assert team.monitor.post(f"{step}/answer", json={"text": "x"}).status_code == 403
    assert team.coordinator.post(f"{step}/answer", json={"text": "Yes, clinic note"}).json()[
        "status"
    ] == ("answered")
    assert team.coordinator.post(f"{step}/close", json={"text": "x"}).status_code == 403
    assert team.data_manager.post(f"{step}/close", json={"text": "ok"}).json()["status"] == "closed"
    reopened = team.monitor.post(f"{step}/reopen", json={"text": "date differs"}).json()
    assert reopened["status"] == "open"
    assert [m["action"] for m in reopened["messages"]] == ["open", "answer", "close", "reopen"]
    listed = team.data_manager.get(f"{BASE}/queries", params={"item": "ecog"}).json()
    assert [q["id"] for q in listed] == [query_id]
    assert listed[0]["age_days"] == 0
    assert team.other_site.get(step).status_code == 404
    assert team.other_site.get(f"{BASE}/queries").json() == []


def test_identifiers_are_masked_for_a_statistician_and_reading_them_is_audited(
    team: Team,
) -> None:
    url = _form("screening", "demographics")
    values = {"initials": "ALT", "hospital_number": "H123", "age": 40, "sex": "M"}
    assert _save(team.coordinator, url, 0, values).status_code == 200
    seen = team.statistician.get(url).json()
    assert seen["values"]["initials"] is None
    assert seen["identifiers_masked"] is True
    assert seen["values"]["age"] == "40"
    history = team.statistician.get(f"{url}/history").text
    assert "H123" not in history
    assert "ALT" not in history
    assert team.coordinator.get(url).json()["values"]["hospital_number"] == "H123"
    reads = [e for e in _chain_ok(team.node) if e.action == "identifier.read"]
    assert [(e.actor, e.after) for e in reads] == [
        ("coord@sg.example", {"items": ["hospital_number", "initials"]})
    ]


def test_a_subject_at_another_site_is_not_found_for_every_capture_route(team: Team) -> None:
    url = _form("screening", "eligibility")
    assert team.other_site.get(url).status_code == 404
    assert _save(team.other_site, url, 0, ELIGIBLE).status_code == 404
    assert team.other_site.get(f"{BASE}/subjects/SG01-001/events").status_code == 404
    assert team.other_site.get(f"{BASE}/subjects/SG01-001/history").status_code == 404


def test_status_changes_follow_the_lifecycle_with_dates_and_reasons(team: Team) -> None:
    status = f"{BASE}/subjects/SG01-001/status"
    skip = team.coordinator.post(status, json={"status": "on_study", "on_date": "2025-01-10"})
    assert skip.status_code == 422
    assert "cannot become on_study" in skip.json()["errors"][0]["message"]
    _meet_the_eligibility_gates(team)
    assert (
        team.coordinator.post(status, json={"status": "eligible", "on_date": "2025-01-10"}).json()[
            "status"
        ]
        == "eligible"
    )
    no_reason = team.coordinator.post(status, json={"status": "withdrawn", "on_date": "2025-02-01"})
    assert no_reason.status_code == 422
    withdrawn = team.coordinator.post(
        status, json={"status": "withdrawn", "on_date": "2025-02-01", "reason": "consent withdrawn"}
    )
    assert withdrawn.json()["status"] == "withdrawn"
    final = team.coordinator.post(status, json={"status": "enrolled", "on_date": "2025-02-02"})
    assert final.status_code == 422


CONSENT = {"consent_given": True, "consent_date": "2025-01-06", "consent_version": "2.1"}


def _meet_the_eligibility_gates(team: Team) -> None:
    for form, values in (("consent", CONSENT), ("eligibility", ELIGIBLE)):
        saved = _save(team.coordinator, _form("screening", form), 0, values, complete=True)
        assert saved.status_code == 200, saved.text


def test_becoming_eligible_is_refused_with_each_unmet_gate_and_changes_nothing(
    team: Team,
) -> None:
    status = f"{BASE}/subjects/SG01-001/status"
    eligible = {"status": "eligible", "on_date": "2025-01-10"}
    refused = team.coordinator.post(status, json=eligible)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"] == [
        {
            "path": "forms.consent",
            "message": "becoming eligible needs form consent (screening) complete with "
            "consent_given == True: the form has not been saved",
        },
        {
            "path": "forms.eligibility",
            "message": "becoming eligible needs form eligibility (screening) complete with "
            "eligible == True: the form has not been saved",
        },
    ]
    refused_consent = {**CONSENT, "consent_given": False}
    _save(team.coordinator, _form("screening", "consent"), 0, refused_consent, complete=True)
    _save(team.coordinator, _form("screening", "eligibility"), 0, ELIGIBLE)  # in progress
    refused = team.coordinator.post(status, json=eligible)
    assert refused.status_code == 422
    assert [e["message"].rsplit(": ", 1)[1] for e in refused.json()["errors"]] == [
        "consent_given == True does not hold",
        "the form is in progress, not complete",
    ]
    subject_page = team.coordinator.get(f"{BASE}/subjects/SG01-001").json()
    assert subject_page["status"] == "screening"
    assert "subject.status" not in [e.action for e in _chain_ok(team.node)]


def test_reanchoring_moves_targets_and_a_late_visit_is_flagged(team: Team) -> None:
    moved = team.coordinator.put(
        f"{BASE}/subjects/SG01-001/schedule",
        json={"anchor_date": "2025-03-01", "reason": "infusion on 1 March"},
    ).json()
    day28 = next(e for e in moved if e["ref"] == "day28")
    assert day28["target_date"] == "2025-03-29"
    response = {"response_date": "2025-04-20", "response_method": "pet_ct", "response": "CR"}
    saved = _save(
        team.coordinator, _form("day28", "response"), 0, response, visit_date="2025-04-20"
    )
    assert saved.status_code == 200, saved.text
    events = team.coordinator.get(f"{BASE}/subjects/SG01-001/events").json()
    day28 = next(e for e in events if e["ref"] == "day28")
    assert (day28["visit_date"], day28["window_status"]) == ("2025-04-20", "late")
    assert day28["forms"] == {"response": "in_progress"}


def _refused_field(response: Any) -> tuple[str, str]:
    """The one field a 422 problem response names, with its message."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    ((path, message),) = [(e["path"], e["message"]) for e in body["errors"]]
    assert body["detail"] == f"{path}: {message}"
    return path, message


def test_a_date_that_puts_a_visit_off_the_calendar_is_refused_naming_the_field(
    team: Team,
) -> None:
    schedule = f"{BASE}/subjects/SG01-001/schedule"
    events = team.coordinator.get(f"{BASE}/subjects/SG01-001/events").json()
    trail = len(_chain_ok(team.node))
    late = team.coordinator.put(schedule, json={"anchor_date": "9999-10-01", "reason": "typo"})
    assert _refused_field(late) == (
        "anchor_date",
        "9999-10-01 puts the window of visit month3 (day 91, -14/+14 days) after 9999-12-31",
    )
    early = team.coordinator.put(schedule, json={"anchor_date": "0001-01-01", "reason": "typo"})
    assert _refused_field(early) == (
        "anchor_date",
        "0001-01-01 puts visit screening (day -35) before 0001-01-01",
    )
    for screening, message in (
        ("9999-12-31", "9999-12-31 puts day 0, 35 days later, after 9999-12-31"),
        ("9999-06-01", "9999-06-01 puts visit month6 (day 182) after 9999-12-31"),
    ):
        enrolled = team.coordinator.post(
            f"{BASE}/subjects",
            json={"subject_id": "SG01-002", "site": "SG01", "screening_date": screening},
        )
        assert _refused_field(enrolled) == ("screening_date", message)
    # nothing changed: the schedule, the subjects, the audit trail
    assert team.coordinator.get(f"{BASE}/subjects/SG01-001/events").json() == events
    assert team.coordinator.get(f"{BASE}/subjects/SG01-002").status_code == 404
    assert len(_chain_ok(team.node)) == trail


def test_numbers_past_what_the_database_holds_are_refused_or_not_found(team: Team) -> None:
    # a query id past the 32-bit id column: PostgreSQL refused it with an error (500)
    assert team.coordinator.get(f"{BASE}/queries/3000000000").status_code == 422
    with team.node.engine.connect() as connection:
        admin = Principal(
            1, "admin@sg.example", "Admin", frozenset({Grant(STUDY, "*", Role.STUDY_ADMIN)})
        )
        assert QueryRepository(connection, admin).get(STUDY, 2**40) is None
    for listing in ("subjects", "queries"):
        past = team.coordinator.get(f"{BASE}/{listing}", params={"offset": 2**63})
        assert _refused_field(past)[0] == "query.offset"
        last = team.coordinator.get(f"{BASE}/{listing}", params={"offset": 2**31 - 1})
        assert (last.status_code, last.json()) == (200, [])


def test_repeating_events_and_groups_get_instances_in_order(team: Team) -> None:
    ae = {
        "events": [
            {
                "ae_term": "Pyrexia",
                "ae_soc": "genrl",
                "ae_ctcae_version": "5.0",
                "ae_onset": "2025-03-02",
                "ae_grade": 2,
                "ae_serious": False,
                "ae_related": "probable",
            }
        ]
    }
    first = _save(team.coordinator, _form("ae_log", "ae"), 0, ae)
    assert first.status_code == 200, first.text
    assert first.json()["values"]["events"][0]["ae_term"] == "Pyrexia"
    skipped = _save(team.coordinator, _form("ae_log.3", "ae"), 0, ae)
    assert skipped.status_code == 404
    second = _save(team.coordinator, _form("ae_log.2", "ae"), 0, ae)
    assert second.status_code == 200
    assert second.json()["event"] == "ae_log.2"
    not_repeating = _save(team.coordinator, _form("screening.2", "eligibility"), 0, ELIGIBLE)
    assert not_repeating.status_code == 404


def test_derived_variables_are_recomputed_on_save(team: Team) -> None:
    _save(
        team.coordinator,
        _form("randomisation", "randomisation"),
        0,
        {"rand_date": date(2025, 1, 10).isoformat()},
    )
    saved = _save(
        team.coordinator,
        _form("end_of_study", "status"),
        0,
        {"last_contact": "2025-07-10", "status_reason": "in_follow_up"},
    )
    assert saved.status_code == 200, saved.text
    with team.node.engine.connect() as connection:
        save = [e for e in iter_events(connection, chain=STUDY) if e.action == "form.save"][-1]
    assert save.after["derived"]["pfs_days"] == "181"
    # a value changed at an earlier visit, then a later one: the stored derived variables
    # equal a recomputation from every stored value, in schedule order
    _save(
        team.coordinator,
        _form("randomisation", "randomisation"),
        1,
        {"rand_date": "2025-01-12"},
        reason="date in the source",
    )
    _save(team.coordinator, _form("month6", "follow_up"), 0, {"fu_date": "2025-07-20"})
    with team.node.engine.connect() as connection:
        definition = current_definition(connection, STUDY)
        found = SubjectRepository(connection, cli_operator()).get(STUDY, "SG01-001")
        assert found is not None
        stored = CaptureRepository(connection, cli_operator()).derived(found)
        recomputed = derived_values(
            definition, CaptureRepository(connection, cli_operator()).subject_values(found)
        )
    assert stored == {name: text for name, (text, _) in recomputed.items()}
    assert stored["pfs_days"] == "179"


def test_two_clients_saving_the_same_version_never_lose_an_update(team: Team) -> None:
    url = _form("screening", "eligibility")
    _save(team.coordinator, url, 0, ELIGIBLE)
    results: list[int] = []

    def save(ecog: int) -> None:
        response = _save(team.coordinator, url, 1, {**ELIGIBLE, "ecog": ecog}, reason=f"to {ecog}")
        results.append(response.status_code)

    threads = [threading.Thread(target=save, args=(n,)) for n in (0, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]
    final = team.coordinator.get(url).json()
    assert final["version"] == 2
    saves = [e for e in _chain_ok(team.node) if e.action == "form.save"]
    assert len(saves) == 2
    assert saves[-1].after["values"]["ecog"] == final["values"]["ecog"]


def test_exports_stream_over_the_api_without_identifiers_unless_an_admin_gives_a_reason(
    team: Team,
) -> None:
    values = {"initials": "QZW", "hospital_number": "H-QZ-77", "age": 40, "sex": "M"}
    _save(team.coordinator, _form("screening", "demographics"), 0, values)
    body = {"table": "demographics", "format": "csv"}
    plain = team.statistician.post(f"{BASE}/exports", json=body)
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/csv")
    assert "SG01-001" in plain.text
    assert "H-QZ-77" not in plain.text
    assert "hospital_number" not in plain.text.splitlines()[0]
    refused = team.statistician.post(
        f"{BASE}/exports", json={**body, "include_identifiers": True, "reason": "x"}
    )
    assert refused.status_code == 403
    no_reason = team.admin.post(f"{BASE}/exports", json={**body, "include_identifiers": True})
    assert no_reason.status_code == 422
    with_reason = team.admin.post(
        f"{BASE}/exports",
        json={**body, "include_identifiers": True, "reason": "ethics-approved re-contact"},
    )
    assert "H-QZ-77" in with_reason.text
    unknown = team.admin.post(f"{BASE}/exports", json={**body, "table": "nosuch"})
    assert unknown.status_code == 404
    assert team.other_site.post(f"{BASE}/exports", json=body).text.count("SG01-001") == 0
    parquet = team.statistician.post(f"{BASE}/exports", json={**body, "format": "parquet"})
    assert parquet.content[:4] == b"PAR1"
    exported = [e for e in _chain_ok(team.node) if e.action == "data.export"]
    assert [(e.actor, e.after["identifiers"], e.reason) for e in exported] == [
        ("stat@sg.example", False, None),
        ("admin@sg.example", True, "ethics-approved re-contact"),
        ("coord@sh.example", False, None),
        ("stat@sg.example", False, None),
    ]


def test_complete_response_at_day_28_is_derived_from_the_day_28_assessment(team: Team) -> None:
    def cr_day28() -> str | None:
        with team.node.engine.connect() as connection:
            found = SubjectRepository(connection, cli_operator()).get(STUDY, "SG01-001")
            assert found is not None
            return CaptureRepository(connection, cli_operator()).derived(found).get("cr_day28")

    def respond(event: str, version: int, response: str, **extra: Any) -> None:
        values = {"response_date": "2025-03-10", "response_method": "ct", "response": response}
        saved = _save(team.coordinator, _form(event, "response"), version, values, **extra)
        assert saved.status_code == 200, saved.text

    assert cr_day28() is None  # not randomised: no row of the analysis
    randomised = {"rand_date": "2025-01-10"}  # the arm is the allocation's, never typed
    _save(team.coordinator, _form("randomisation", "randomisation"), 0, randomised)
    assert cr_day28() == "0"  # randomised, not assessed at day 28: no complete response
    respond("month3", 0, "CR")  # a later complete response is not the day-28 response
    assert cr_day28() == "0"
    respond("day28", 0, "PR")
    assert cr_day28() == "0"
    respond("day28", 1, "CR", reason="corrected against the PET-CT report")
    assert cr_day28() == "1"
    respond("month3", 1, "PD", reason="corrected against the CT report")
    assert cr_day28() == "1"  # the latest response is PD; day 28's is still CR
