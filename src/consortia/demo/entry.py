"""The demo's hospital staff: their accounts and API tokens, and the synthetic subjects the
coordinator enters through the node's REST API (the investigator signs each site's screening
forms as one series, the monitor asks)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import httpx

from consortia.auth.principal import Role
from consortia.demo.processes import START_SECONDS, DemoError, DemoNode
from consortia.domain.synthetic import FormEntry, synthesize
from consortia.services import tokens, users
from consortia.services.common import cli_operator
from consortia.services.database import opened_database
from consortia.services.form_states import MAX_SIGNED_AT_ONCE

__all__ = ["PEOPLE", "STUDIES", "enter_site", "new_password", "people", "sqlite_url"]

STUDIES = {"cart-lbcl": "CART-LBCL", "glucose-iso15197": "GLUCOSE-ISO15197"}


def new_password() -> str:
    """A login's password, made for this run."""
    return secrets.token_urlsafe(15)


def sqlite_url(node: DemoNode) -> str:
    """The node's SQLite database (``consortia init`` made it)."""
    return f"sqlite:///{node.folder / 'consortia.db'}"


PEOPLE = {
    Role.COORDINATOR: "Research coordinator",
    Role.INVESTIGATOR: "Principal investigator",
    Role.MONITOR: "Clinical monitor",
}


def people(node: DemoNode, studies: list[str]) -> dict[Role, str]:
    """Accounts for the hospital's people at its site of each study; an API token each."""
    secrets_of: dict[Role, str] = {}
    with opened_database(sqlite_url(node)) as engine:
        operator = cli_operator()
        for role, title in PEOPLE.items():
            email, password = f"{role.value}@{node.name}.demo", new_password()
            users.create_user(
                engine, operator, email=email, name=f"{title}, {node.name}", password=password
            )
            for study in studies:
                users.grant_role(
                    engine, operator, email=email, study=study, site=node.site, role=role
                )
            node.logins[role.value] = (email, password)
            created = tokens.create_token(
                engine,
                operator,
                name="demo data entry",
                lifetime=timedelta(days=1),
                studies=studies,
                email=email,
            )
            secrets_of[role] = created.secret
    return secrets_of


class _Api:
    """One person's calls to a node's REST API with their token."""

    def __init__(self, node: DemoNode, token: str) -> None:
        self.client = httpx.Client(
            base_url=node.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=START_SECONDS,
        )

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = self.client.request(method, path, json=body)
        if response.status_code >= 300:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def close(self) -> None:
        self.client.close()


def enter_site(
    node: DemoNode, template: str, subjects: int, seed: int, people: dict[Role, str]
) -> int:
    """Enter one site's synthetic subjects of ``template`` through the node's API, every
    visit of a repeating event too (cart-lbcl's daily CRS/ICANS assessments: ``crs_daily``,
    ``crs_daily.2``, ...); then the investigator signs each subject's screening form
    (eligibility, or demographics for glucose-iso15197) in one ``POST .../signatures`` per
    :data:`~consortia.services.form_states.MAX_SIGNED_AT_ONCE` forms: one password check
    per call rather than one argon2id verification per subject."""
    study = STUDIES[template]
    data = synthesize(template, subjects=subjects, site=node.site, seed=seed)
    by_subject: dict[str, list[FormEntry]] = {}
    for entry in data.entries:
        by_subject.setdefault(entry.subject_id, []).append(entry)
    coordinator = _Api(node, people[Role.COORDINATOR])
    investigator = _Api(node, people[Role.INVESTIGATOR])
    monitor = _Api(node, people[Role.MONITOR])
    base = f"/studies/{study}"
    signed_form = "eligibility" if template == "cart-lbcl" else "demographics"
    to_sign: list[dict[str, Any]] = []  # each subject's screening form, signed at the end
    try:
        for number, (subject_id, entries) in enumerate(by_subject.items()):
            first = entries[0].values
            coordinator.call(
                "POST",
                f"{base}/subjects",
                {
                    "subject_id": subject_id,
                    "site": node.site,
                    "screening_date": first.get("consent_date") or None,
                },
            )
            forms: dict[str, int] = {}
            for entry in entries:
                event = entry.event
                if entry.event_instance is not None and entry.event_instance > 1:
                    event = f"{event}.{entry.event_instance}"
                path = f"{base}/subjects/{subject_id}/events/{event}/forms/{entry.form}"
                if entry.form == "randomisation":
                    # the arm item is filled from the allocation: randomise through the hub
                    coordinator.call("POST", f"{base}/subjects/{subject_id}/randomisation", {})
                saved = coordinator.call(
                    "PUT", path, {"version": 0, "values": dict(entry.values), "complete": True}
                )
                forms[f"{event}/{entry.form}"] = int(saved["version"])
                if entry.form == "eligibility" and str(entry.values.get("eligible")) == "1":
                    coordinator.call(
                        "POST",
                        f"{base}/subjects/{subject_id}/status",
                        {"status": "eligible", "on_date": first.get("consent_date")},
                    )
            if f"screening/{signed_form}" in forms:
                to_sign.append(
                    {
                        "subject_id": subject_id,
                        "event": "screening",
                        "form": signed_form,
                        "version": forms[f"screening/{signed_form}"],
                    }
                )
            if number == 0:
                form = f"{base}/subjects/{subject_id}/events/screening/forms/demographics"
                query = monitor.call(
                    "POST", f"{form}/queries", {"item": "age", "text": "Age as in the source?"}
                )
                coordinator.call(
                    "POST",
                    f"{base}/queries/{query['id']}/answer",
                    {"text": "Checked against the clinic record."},
                )
        # the investigator signs the site's forms as a series, the password entered once
        # per call, not once per subject (21 CFR Part 11 §11.200(a)(1)(i))
        _, password = node.logins[Role.INVESTIGATOR.value]
        for start in range(0, len(to_sign), MAX_SIGNED_AT_ONCE):
            investigator.call(
                "POST",
                f"{base}/signatures",
                {
                    "forms": to_sign[start : start + MAX_SIGNED_AT_ONCE],
                    "password": password,
                    "meaning": "approval",
                },
            )
    finally:
        for api in (coordinator, investigator, monitor):
            api.close()
    return len(by_subject)
