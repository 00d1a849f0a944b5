"""Signing several forms in one call: ``POST /studies/{study}/signatures``.

The password is checked once for the series (21 CFR Part 11 §11.200(a)(1)(i)); each form
gets its own signature and ``form.sign`` audit event; all or none of the forms are signed.
"""

from __future__ import annotations

from typing import Any

import pytest
from node_client import Node, SyncClient

from consortia.auth.principal import Role
from consortia.domain.templates import template_text
from consortia.services.form_states import MAX_SIGNED_AT_ONCE
from consortia.storage.audit import iter_events, verify_trail

STUDY = "CART-LBCL"
BASE = f"/api/v1/studies/{STUDY}"
SIGNATURES = f"{BASE}/signatures"
PASSWORD = "investigator-password-42"
ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "eligible": True,
}
OWN = ("SG01-001", "SG01-002", "SG01-003")
OTHER = "SH01-001"


class Team:
    """cart-lbcl with three subjects at SG01 and one at SH01, each with a complete
    eligibility form; an investigator and a coordinator at SG01 only."""

    def __init__(self, node: Node) -> None:
        self.node = node
        admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
        self.coordinator = node.client(
            node.add_user("coord@sg.example", (STUDY, "SG01", Role.COORDINATOR))
        )
        self.investigator = node.client(
            node.add_user("pi@sg.example", (STUDY, "SG01", Role.INVESTIGATOR), password=PASSWORD)
        )
        self.other_site = node.client(
            node.add_user("coord@sh.example", (STUDY, "SH01", Role.COORDINATOR))
        )
        loaded = admin.put(f"{BASE}/definition", json={"source": template_text("cart-lbcl")})
        assert loaded.status_code == 200, loaded.text
        for subject_id in (*OWN, OTHER):
            client = self.other_site if subject_id == OTHER else self.coordinator
            enrolled = client.post(
                f"{BASE}/subjects",
                json={
                    "subject_id": subject_id,
                    "site": subject_id[:4],
                    "screening_date": "2025-01-06",
                },
            )
            assert enrolled.status_code == 201, enrolled.text
            saved = client.put(
                _form(subject_id), json={"version": 0, "values": ELIGIBLE, "complete": True}
            )
            assert saved.status_code == 200, saved.text

    def states(self) -> dict[str, tuple[str, int]]:
        """Each form's (state, version), read by the coordinator of its site."""
        found = {}
        for subject_id in (*OWN, OTHER):
            client = self.other_site if subject_id == OTHER else self.coordinator
            form = client.get(_form(subject_id)).json()
            found[subject_id] = (form["state"], form["version"])
        return found

    def signatures_in_trail(self) -> list[str]:
        """The entities of the study's ``form.sign`` events, after checking the chain."""
        with self.node.engine.connect() as connection:
            assert verify_trail(connection).ok
            events = list(iter_events(connection, chain=STUDY))
        return [e.entity_id for e in events if e.action == "form.sign"]


@pytest.fixture
def team(node: Node) -> Team:
    return Team(node)


def _form(subject_id: str) -> str:
    return f"{BASE}/subjects/{subject_id}/events/screening/forms/eligibility"


def _series(*subjects: str, version: int = 1) -> list[dict[str, Any]]:
    return [
        {"subject_id": s, "event": "screening", "form": "eligibility", "version": version}
        for s in subjects
    ]


def _sign(client: SyncClient, forms: list[dict[str, Any]], password: str = PASSWORD) -> Any:
    return client.post(
        SIGNATURES, json={"forms": forms, "password": password, "meaning": "approval"}
    )


UNSIGNED = dict.fromkeys((*OWN, OTHER), ("complete", 1))


def test_several_forms_are_signed_in_one_call_with_one_audit_event_each(team: Team) -> None:
    signed = _sign(team.investigator, _series(*OWN))
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert [(f["subject_id"], f["event"], f["form"]) for f in body] == [
        (s, "screening", "eligibility") for s in OWN
    ]
    assert {(f["state"], f["version"]) for f in body} == {("signed", 2)}
    for entry in body:
        assert set(entry) == {"subject_id", "event", "form", "version", "state", "signature"}
        assert entry["signature"]["signed_by"] == "pi@sg.example"
        assert entry["signature"]["printed_name"] == "pi"
        assert entry["signature"]["meaning"].startswith("approval: I approve")
    assert team.states() == {**UNSIGNED, **dict.fromkeys(OWN, ("signed", 2))}
    assert team.signatures_in_trail() == [f"{STUDY}/{s}/screening/eligibility" for s in OWN]
    # each form now shows its signature, as a single signature shows it
    form = team.investigator.get(_form(OWN[1])).json()
    assert form["signature"] == body[1]["signature"]


def test_a_wrong_password_signs_none(team: Team) -> None:
    refused = _sign(team.investigator, _series(*OWN), password="not-the-password")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert team.states() == UNSIGNED
    assert team.signatures_in_trail() == []


def test_a_form_changed_since_it_was_read_refuses_the_whole_series(team: Team) -> None:
    changed = team.coordinator.put(
        _form(OWN[2]),
        json={"version": 1, "values": {**ELIGIBLE, "ecog": 0}, "complete": True, "reason": "typo"},
    )
    assert changed.status_code == 200, changed.text
    refused = _sign(team.investigator, _series(*OWN))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert f"{OWN[2]}" in refused.json()["detail"]
    assert "reload" in refused.json()["detail"]
    assert team.states() == {**UNSIGNED, OWN[2]: ("complete", 2)}
    assert team.signatures_in_trail() == []


def test_a_coordinator_may_not_sign(team: Team) -> None:
    refused = _sign(team.coordinator, _series(*OWN))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert team.states() == UNSIGNED
    assert team.signatures_in_trail() == []


def test_a_form_at_a_site_without_a_grant_refuses_the_series_and_signs_none(team: Team) -> None:
    refused = _sign(team.investigator, _series(OWN[0], OTHER, OWN[1]))
    # as for every capture route, a subject the caller may not see is not found
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    assert OTHER in refused.json()["detail"]
    assert team.states() == UNSIGNED
    assert team.signatures_in_trail() == []


def test_too_many_forms_or_a_bad_entry_is_refused_naming_the_field(team: Team) -> None:
    many = [
        {"subject_id": f"SG01-{n:03}", "event": "screening", "form": "eligibility", "version": 1}
        for n in range(1, MAX_SIGNED_AT_ONCE + 2)
    ]
    too_many = _sign(team.investigator, many)
    assert too_many.status_code == 422
    assert too_many.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in too_many.json()["errors"]] == ["body.forms"]
    assert str(MAX_SIGNED_AT_ONCE) in too_many.json()["errors"][0]["message"]
    bad = _series(*OWN)
    bad[2]["version"] = 0
    refused = _sign(team.investigator, bad)
    assert refused.status_code == 422
    assert [e["path"] for e in refused.json()["errors"]] == ["body.forms[2].version"]
    twice = _sign(team.investigator, _series(OWN[0], OWN[1], OWN[0]))
    assert twice.status_code == 422
    assert [e["path"] for e in twice.json()["errors"]] == ["forms"]
    none = _sign(team.investigator, [])
    assert none.status_code == 422
    assert team.states() == UNSIGNED
    assert team.signatures_in_trail() == []
