"""Blinding at a member node: every blinded role walks every API endpoint (by token and by
session) and every page, and the arm of a randomised subject never appears — only its
allocation code; the unblinded statistician sees it; an investigator's emergency unblinding
of one subject states a reason, is audited, and unblinds that subject only. The form's arm
item (filled from the allocation, never typed) is walked too: its form, histories, exports in
every format and an analysis by it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from node_client import SyncClient
from sqlalchemy import Engine

import randomisation_network
from consortia.auth.policy import ROLE_ACTIONS, Action
from consortia.auth.principal import Role
from consortia.exceptions import ValidationError
from consortia.services import data_entry, randomisation, tokens, users
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
).replace(  # the code list of the form's arm item, which the allocation fills
    "    - {code: car_t, label: {en: CAR-T cell therapy, zh: CAR-T细胞治疗}}\n"
    "    - {code: soc, label: {en: Standard of care, zh: 标准治疗}}\n",
    "    - {code: zqactive, label: {en: Zqx active, zh: 甲组}}\n"
    "    - {code: zqcontrol, label: {en: Zqx control, zh: 乙组}}\n",
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
RANDOMISATION = "/events/randomisation/forms/randomisation"
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
#: the same paths again at the randomisation form and its arm item (filled from the
#: allocation)
ARM_ITEM_VALUES = PATH_VALUES | {"event": "randomisation", "form": "randomisation", "item": "arm"}
POSTS = {
    "/api/v1/studies/{study}/exports": [
        {"table": "eligibility", "format": "csv"},
        *(
            {"table": "randomisation", "format": kind}
            for kind in ("csv", "csv-long", "odm", "parquet", "xpt")
        ),
    ],
    "/api/v1/studies/{study}/analyses": [
        {"kind": "describe", "table": "edc", "variable": "disease_status"},
        {"kind": "crosstab", "table": "edc", "rows": "arm", "columns": "disease_status"},
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
    *(
        f"/studies/{STUDY}/subjects/{s}/events/randomisation/forms/randomisation{view}"
        for s in SUBJECTS
        for view in ("", "/history", "/items/arm/history")
    ),
]
#: a blinded role that may read forms sees the allocation code in the arm item
ARM_CODE = re.compile(r'<span id="i-arm">[AB]</span>')


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
            type_the_arm(sgh.engine, subject_id)
        built.connect("sgh")
        yield built


def type_the_arm(engine: Engine, subject_id: str) -> None:
    """Fill the randomisation form as coordinators did when the arm was typed: the date and
    the allocated arm; where typing the arm is refused, the date alone."""
    arm = randomisation.get_allocation(
        engine, staff("SG01", Role.UNBLINDED_STATISTICIAN), STUDY, subject_id
    ).arm
    coordinator = staff("SG01", Role.COORDINATOR)

    def save(values: dict[str, object]) -> None:
        data_entry.save_form(
            engine,
            coordinator,
            STUDY,
            subject_id,
            "randomisation",
            "randomisation",
            data_entry.FormSave(version=0, values=values),
        )

    try:
        save({"rand_date": "2026-12-01", "arm": arm})
    except ValidationError as refused:
        where = [problem.path for problem in refused.problems]
    else:
        return
    assert where == ["forms.randomisation.arm"]
    save({"rand_date": "2026-12-01"})


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


def paths(template: str) -> list[str]:
    """The template's path with the walk's values, and again at the arm item."""
    found = []
    for values in (PATH_VALUES, ARM_ITEM_VALUES):
        path = re.sub(r"\{(\w+)\}", lambda m, v=values: v[m[1]], template)  # type: ignore[misc]
        if path not in found:
            found.append(path)
    return found


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
                for path in paths(template):
                    for body in POSTS.get(template, [None]) if method == "POST" else [None]:
                        for client in (by_token, by_session):
                            response = client.request(
                                method, path, json=body, headers={"X-CSRF-Token": csrf}
                            )
                            statuses.add(response.status_code)
                            assert not ARM_TEXT.search(response.text), (role, method, path, body)
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
                if (
                    page.endswith("forms/randomisation")
                    and Action.SUBJECT_READ in ROLE_ACTIONS[role]
                ):
                    # the form's arm item was really shown: as the allocation code
                    assert response.status_code == 200, (role, page)
                    assert ARM_CODE.search(response.text), (role, page)
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
        # and the form's arm item, each subject's own arm, in the API and on the page
        by_session = SyncClient(portal, app, {})
        signed_in = by_session.post(
            "/api/v1/session",
            json={"email": f"{Role.UNBLINDED_STATISTICIAN.value}@sg.example", "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        for subject_id, arm in zip(SUBJECTS, arms, strict=True):
            form = unblinded.get(f"/api/v1/studies/{STUDY}/subjects/{subject_id}{RANDOMISATION}")
            assert form.status_code == 200
            assert form.json()["values"]["arm"] == arm
            page = by_session.get(f"/studies/{STUDY}/subjects/{subject_id}{RANDOMISATION}")
            assert page.status_code == 200
            assert f'<span id="i-arm">{arm}</span>' in page.text
        unblinded.close()
        by_session.close()


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
        # the form's arm item follows: the arm of that subject for the investigator, the
        # code of every other subject, and the code for the coordinator
        arm_items = [
            investigator.get(f"/api/v1/studies/{STUDY}/subjects/{s}{RANDOMISATION}").json()[
                "values"
            ]["arm"]
            for s in SUBJECTS
        ]
        assert arm_items[0] == done.json()["arm"]
        assert all(code in ("A", "B") for code in arm_items[1:])
        by_coordinator = coordinator.get(
            f"/api/v1/studies/{STUDY}/subjects/SG01-001{RANDOMISATION}"
        ).json()
        assert by_coordinator["values"]["arm"] in ("A", "B")
        investigator.close()
        coordinator.close()
    events = audit_actions(net.members["sgh"].engine, STUDY)
    assert ("subject.unblind", f"{STUDY}/SG01-001", "grade 4 CRS, arm needed") in events


def test_exports_of_the_randomisation_form_hold_no_arm_for_a_blinded_role(net: Network) -> None:
    app = net.members["sgh"].app
    with start_blocking_portal() as portal:
        token = person(net, Role.DATA_MANAGER, "*")
        manager = SyncClient(portal, app, {"Authorization": f"Bearer {token}"})
        for body in POSTS["/api/v1/studies/{study}/exports"][1:]:
            exported = manager.post(f"/api/v1/studies/{STUDY}/exports", json=body)
            assert exported.status_code == 200, (body, exported.text)
            assert b"SG01-001" in exported.content, body  # the form's rows were exported
            assert not ARM_TEXT.search(exported.content.decode("latin-1")), ("arm in", body)
        manager.close()


def test_a_page_save_that_types_the_arm_is_refused_on_the_item_and_changes_nothing(
    net: Network,
) -> None:
    app = net.members["sgh"].app
    url = f"/studies/{STUDY}/subjects/SG01-001{RANDOMISATION}"
    with start_blocking_portal() as portal:
        person(net, Role.COORDINATOR, "SG01")
        browser = SyncClient(portal, app, {})
        signed_in = browser.post(
            "/api/v1/session",
            json={"email": f"{Role.COORDINATOR.value}@sg.example", "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        page = browser.get(url)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        version = re.search(r'id="form-version">(\d+)<', page.text)
        assert csrf is not None
        assert version is not None
        fields = {
            "csrf_token": csrf[1],
            "version": version[1],
            "rand_date": "2026-12-02",
            "reason": "date corrected against the source",
        }
        answer = browser.post(url, data=fields | {"arm": "zqcontrol"})
        assert 'id="refused"' in answer.text
        assert "filled from the subject&#39;s allocation; randomise the subject instead" in (
            answer.text
        )
        after = browser.get(url)
        kept = re.search(r'id="form-version">(\d+)<', after.text)
        assert kept is not None
        assert kept[1] == version[1]
        assert ARM_CODE.search(after.text)
        browser.close()
