"""Blinding at a member node: every blinded role walks every API endpoint (by token and by
session) and every page, and the arm of a randomised subject never appears — only its
allocation code; the unblinded statistician sees it; an investigator's emergency unblinding
of one subject states a reason, is audited, and unblinds that subject only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from node_client import SyncClient

import randomisation_network
from consortia.auth.policy import ROLE_ACTIONS, Action
from consortia.auth.principal import Role
from consortia.services import randomisation, tokens, users
from consortia.services.common import cli_operator
from randomisation_network import (
    SOURCE,
    STUDY,
    Network,
    audit_actions,
    network,
    ready_subject,
    staff,
)

#: arms named so that nothing but an allocation can carry these strings
BLINDED_SOURCE = SOURCE.replace(
    "  car_t: {label: {en: CAR-T cell therapy, zh: CAR-T细胞治疗}, ratio: 1, code: A}\n"
    "  soc: {label: {en: Standard of care, zh: 标准治疗}, ratio: 1, code: B}\n",
    "  zqactive: {label: {en: Zqx active, zh: 甲组}, ratio: 1, code: A}\n"
    "  zqcontrol: {label: {en: Zqx control, zh: 乙组}, ratio: 1, code: B}\n",
)
ARM_TEXT = re.compile(r"zqactive|zqcontrol|Zqx", re.IGNORECASE)
PASSWORD = "a long passphrase for tests"
BLINDED_ROLES = [
    (Role.COORDINATOR, "SG01"),
    (Role.INVESTIGATOR, "SG01"),
    (Role.MONITOR, "*"),
    (Role.DATA_MANAGER, "*"),
    (Role.STATISTICIAN, "*"),
    (Role.STUDY_ADMIN, "*"),
    (Role.AUDITOR, "*"),
    (Role.SPONSOR_VIEWER, "*"),
]
SUBJECTS = ["SG01-001", "SG01-002", "SG01-003"]
PATH_VALUES = {
    "study": STUDY,
    "subject_id": "SG01-001",
    "event": "screening",
    "form": "eligibility",
    "item": "disease_status",
    "query_id": "1",
    "token_id": "1",
    "user_id": "1",
    "grant_id": "1",
    "approval_id": "0123456789abcdef",
    "step": "answer",
}
POSTS = {
    "/api/v1/studies/{study}/exports": [
        {"table": "eligibility", "format": "csv"},
        {"table": "randomisation", "format": "csv"},
    ],
    "/api/v1/studies/{study}/analyses": [
        {"kind": "describe", "table": "edc", "variable": "disease_status"},
    ],
}
PAGES = [
    "/",
    f"/studies/{STUDY}/subjects",
    f"/studies/{STUDY}/randomisation",
    f"/studies/{STUDY}/queries",
    f"/studies/{STUDY}/sdv",
    *(f"/studies/{STUDY}/subjects/{s}" for s in SUBJECTS),
    *(f"/studies/{STUDY}/subjects/{s}/randomisation" for s in SUBJECTS),
    *(f"/studies/{STUDY}/subjects/{s}/history" for s in SUBJECTS),
    f"/studies/{STUDY}/subjects/SG01-001/events/screening/forms/eligibility",
    f"/studies/{STUDY}/subjects/SG01-001/events/screening/forms/eligibility/history",
    f"/studies/{STUDY}/subjects/SG01-001/events/randomisation/forms/randomisation",
]


@pytest.fixture
def net(
    migrated_database_url: str,
    migrated_sqlite: Callable[[Path], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Network]:
    assert BLINDED_SOURCE != SOURCE
    monkeypatch.setattr(randomisation_network, "SOURCE", BLINDED_SOURCE)
    # the members on the backend under test; the hub on SQLite
    with network(
        migrated_sqlite(tmp_path / "hub.db"),
        lambda path: migrated_database_url if path.name == "sgh.db" else migrated_sqlite(path),
        tmp_path,
        members=("sgh",),
    ) as built:
        sgh = built.members["sgh"]
        coordinator = staff("SG01", Role.COORDINATOR)
        for number, subject_id in enumerate(SUBJECTS):
            ready_subject(
                sgh, subject_id, "SG01", status=("early_relapse", "primary_refractory")[number % 2]
            )
            randomisation.randomise_subject(
                sgh.engine, coordinator, STUDY, subject_id, built.link("sgh")
            )
        built.connect("sgh")
        yield built


def person(net: Network, role: Role, site: str) -> str:
    engine = net.members["sgh"].engine
    email = f"{role.value}@sg.example"
    operator = cli_operator()
    users.create_user(engine, operator, email=email, name=role.value, password=PASSWORD)
    users.grant_role(engine, operator, email=email, study=STUDY, site=site, role=role)
    return tokens.create_token(
        engine, operator, email=email, name="t", lifetime=timedelta(days=1), studies=None
    ).secret


def operations(net: Network) -> list[tuple[str, str]]:
    schema = net.members["sgh"].app.openapi()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method == "get" or path in POSTS
    )


def test_a_blinded_role_never_sees_an_arm_on_any_endpoint_or_page(net: Network) -> None:
    app = net.members["sgh"].app
    with start_blocking_portal() as portal:
        for role, site in BLINDED_ROLES:
            token = person(net, role, site)
            by_token = SyncClient(portal, app, {"Authorization": f"Bearer {token}"})
            by_session = SyncClient(portal, app, {})
            signed_in = by_session.post(
                "/api/v1/session", json={"email": f"{role.value}@sg.example", "password": PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            csrf = signed_in.json()["csrf_token"]
            statuses: set[int] = set()
            for method, template in operations(net):
                if template == "/api/v1/session":
                    continue  # signing out would end the walk
                path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m[1]], template)
                for body in POSTS.get(template, [None]) if method == "POST" else [None]:
                    for client in (by_token, by_session):
                        response = client.request(
                            method, path, json=body, headers={"X-CSRF-Token": csrf}
                        )
                        statuses.add(response.status_code)
                        assert not ARM_TEXT.search(response.text), (role, method, path)
            for page in PAGES:
                response = by_session.get(page)
                statuses.add(response.status_code)
                assert not ARM_TEXT.search(response.text), (role, page)
                if page.endswith("SG01-001/randomisation") and role in (
                    Role.COORDINATOR,
                    Role.STATISTICIAN,
                ):  # the page was really shown: the code, and the note that it is blind
                    assert response.status_code == 200
                    assert 'id="allocation-code"' in response.text
                    assert 'id="blinded"' in response.text
            # the walk did read allocations where the role may read subjects
            listed = by_token.get(f"/api/v1/studies/{STUDY}/randomisation")
            assert listed.status_code == 200
            reads = Action.SUBJECT_READ in ROLE_ACTIONS[role]
            expected = [None] * len(SUBJECTS) if reads else []
            assert [a["arm"] for a in listed.json()] == expected
            assert {a["code"] for a in listed.json()} <= {"A", "B"}
            assert 200 in statuses
            by_token.close()
            by_session.close()

        # the positive control: the same walk's allocation endpoint shows the unblinded
        # statistician the arms
        token = person(net, Role.UNBLINDED_STATISTICIAN, "*")
        unblinded = SyncClient(portal, app, {"Authorization": f"Bearer {token}"})
        arms = [a["arm"] for a in unblinded.get(f"/api/v1/studies/{STUDY}/randomisation").json()]
        assert len(arms) == len(SUBJECTS)
        assert all(ARM_TEXT.fullmatch(arm) for arm in arms)
        unblinded.close()


def test_emergency_unblinding_states_a_reason_is_audited_and_unblinds_one_subject(
    net: Network,
) -> None:
    app = net.members["sgh"].app
    with start_blocking_portal() as portal:
        investigator = SyncClient(
            portal, app, {"Authorization": f"Bearer {person(net, Role.INVESTIGATOR, 'SG01')}"}
        )
        coordinator = SyncClient(
            portal, app, {"Authorization": f"Bearer {person(net, Role.COORDINATOR, 'SG01')}"}
        )
        url = f"/api/v1/studies/{STUDY}/subjects/SG01-001/unblind"
        assert investigator.post(url, json={"reason": "why"}).status_code == 422
        assert coordinator.post(url, json={"reason": "grade 4 CRS, arm needed"}).status_code == 403
        done = investigator.post(url, json={"reason": "grade 4 CRS, arm needed"})
        assert done.status_code == 200
        assert ARM_TEXT.fullmatch(done.json()["arm"])
        # that subject only, and only for whoever may unblind at the site
        mine = investigator.get(f"/api/v1/studies/{STUDY}/randomisation").json()
        assert [a["arm"] is not None for a in mine] == [True, False, False]
        theirs = coordinator.get(f"/api/v1/studies/{STUDY}/subjects/SG01-001/randomisation")
        assert theirs.json()["arm"] is None
        assert theirs.json()["unblinded_at"] is not None
        investigator.close()
        coordinator.close()
    events = audit_actions(net.members["sgh"].engine, STUDY)
    assert ("subject.unblind", f"{STUDY}/SG01-001", "grade 4 CRS, arm needed") in events
