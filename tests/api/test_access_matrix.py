"""Every role x (own site, other site) x every action, through the running API.

Each person holds one role at study CART01, site SG01 (the node administrator: every
study and site). Subjects exist at SG01 (own) and SH01 (other). The expected answers are
written out by hand below — an independent statement of docs/roles.md — and the test
checks the API gives exactly those: 404 where the caller cannot see the record or study
(existence does not leak), 403 where the role lacks the action.

CART01 runs the cart-lbcl template. Data-capture actions change state, so each role acts
on its own subjects, S-SG01-<role> and S-SH01-<role>, seeded with a complete eligibility
form (to verify), a complete demographics form (to sign), an in-progress randomisation
form (to lock) and two open queries on eligibility (to answer, to close). Each role also
has its own analysis request in the node's manual-approval queue (to approve).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from argon2 import PasswordHasher
from node_client import Node, running_node

from consortia.auth.policy import ROLE_ACTIONS, Action
from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.federation.approval import DatabaseApprovals
from consortia.services import data_entry, queries, studies, subjects
from consortia.storage.approvals import ApprovalRepository
from consortia.storage.audit import iter_events

STUDY = "/api/v1/studies/CART01"
OWN_INITIALS, OTHER_INITIALS = "QZA", "QZB"
# the parameters of conftest's fast_password_hashing, which is per test: the module
# fixture below sets passwords (for signing) and asks for them itself
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
DEFINITION = template_text("cart-lbcl").replace("  id: CART-LBCL\n", "  id: CART01\n", 1)
# a role's own targets (see Targets); paths are formatted with them
OWN = f"{STUDY}/subjects/{{own}}/events"
OTHER = f"{STUDY}/subjects/{{other}}/events"
ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "eligible": True,
}
CONSENT = {"consent_given": True, "consent_date": "2025-01-06", "consent_version": "2.1"}

# (method, path, the action it exercises); bodies come from _body()
ENDPOINTS: dict[str, tuple[str, str, Action]] = {
    "list": ("GET", f"{STUDY}/subjects", Action.SUBJECT_READ),
    "get_own": ("GET", f"{STUDY}/subjects/SG01-001", Action.SUBJECT_READ),
    "get_other": ("GET", f"{STUDY}/subjects/SH01-001", Action.SUBJECT_READ),
    "create_own": ("POST", f"{STUDY}/subjects", Action.SUBJECT_CREATE),
    "create_other": ("POST", f"{STUDY}/subjects", Action.SUBJECT_CREATE),
    "enrolment": ("GET", f"{STUDY}/enrolment", Action.AGGREGATE_READ),
    "audit": ("GET", f"{STUDY}/audit", Action.AUDIT_READ),
    "other_study": ("GET", "/api/v1/studies/ORTHO/subjects", Action.SUBJECT_READ),
    "users": ("GET", "/api/v1/users", Action.USER_READ),
    "create_user": ("POST", "/api/v1/users", Action.USER_MANAGE),
    "node_audit": ("GET", "/api/v1/audit", Action.NODE_AUDIT_READ),
    "grant_own": ("POST", "/api/v1/grants", Action.GRANT_MANAGE),
    "grant_other": ("POST", "/api/v1/grants", Action.GRANT_MANAGE),
    # data capture, on the caller's own targets
    "definition": ("PUT", f"{STUDY}/definition", Action.STUDY_MANAGE),
    "save_own": ("PUT", f"{OWN}/screening/forms/consent", Action.DATA_ENTER),
    "save_other": ("PUT", f"{OTHER}/screening/forms/consent", Action.DATA_ENTER),
    "verify_own": ("POST", f"{OWN}/screening/forms/eligibility/verify", Action.DATA_VERIFY),
    "verify_other": ("POST", f"{OTHER}/screening/forms/eligibility/verify", Action.DATA_VERIFY),
    "sign_own": ("POST", f"{OWN}/screening/forms/demographics/sign", Action.DATA_SIGN),
    "sign_series_own": ("POST", f"{STUDY}/signatures", Action.DATA_SIGN),
    "sign_series_other": ("POST", f"{STUDY}/signatures", Action.DATA_SIGN),
    "lock_own": ("POST", f"{OWN}/randomisation/forms/randomisation/lock", Action.FORM_LOCK),
    "lock_other": ("POST", f"{OTHER}/randomisation/forms/randomisation/lock", Action.FORM_LOCK),
    "query_open_own": ("POST", f"{OWN}/screening/forms/eligibility/queries", Action.QUERY_OPEN),
    "query_open_other": (
        "POST",
        f"{OTHER}/screening/forms/eligibility/queries",
        Action.QUERY_OPEN,
    ),
    "query_list": ("GET", f"{STUDY}/queries", Action.QUERY_READ),
    "query_answer_own": ("POST", f"{STUDY}/queries/{{answer_own}}/answer", Action.QUERY_ANSWER),
    "query_answer_other": (
        "POST",
        f"{STUDY}/queries/{{answer_other}}/answer",
        Action.QUERY_ANSWER,
    ),
    "query_close_own": ("POST", f"{STUDY}/queries/{{close_own}}/close", Action.QUERY_CLOSE),
    # assigning is managing a query: whoever may open queries (the answered one: not closed)
    "query_assign_own": ("POST", f"{STUDY}/queries/{{answer_own}}/assign", Action.QUERY_OPEN),
    "query_assign_other": (
        "POST",
        f"{STUDY}/queries/{{answer_other}}/assign",
        Action.QUERY_OPEN,
    ),
    "export_identifiers": ("POST", f"{STUDY}/exports", Action.IDENTIFIER_EXPORT),
    # the node's manual-approval queue, each role deciding its own queued request
    "approvals": ("GET", "/api/v1/approvals?status=pending", Action.APPROVAL_DECIDE),
    "approve": ("POST", "/api/v1/approvals/{approval}/approve", Action.APPROVAL_DECIDE),
    # an analysis of the node's own captured data: aggregates only, statisticians
    "analysis": ("POST", f"{STUDY}/analyses", Action.ANALYSIS_RUN),
    # randomisation (this node has no hub: a permitted request is refused, 400, after the
    # gates held) and emergency unblinding (the subject is not randomised: 404)
    "randomise_own": ("POST", f"{STUDY}/subjects/{{own}}/randomisation", Action.SUBJECT_RANDOMISE),
    "unblind_own": ("POST", f"{STUDY}/subjects/{{own}}/unblind", Action.SUBJECT_UNBLIND),
    # the site performance metrics (docs/site-performance.md), at the caller's sites
    "performance": ("GET", f"{STUDY}/site-performance", Action.SITE_PERFORMANCE_READ),
}
COLUMNS = list(ENDPOINTS)

# fmt: off
EXPECTED: dict[Role, tuple[int, ...]] = {
    #                   list get_own get_other create_own create_other enrolment audit other_study users create_user node_audit grant_own grant_other
    Role.NODE_ADMIN:     (403, 403, 403, 403, 403, 403, 403, 403, 200, 201, 200, 403, 403),
    Role.STUDY_ADMIN:    (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 201, 403),
    Role.INVESTIGATOR:   (200, 200, 404, 201, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.COORDINATOR:    (200, 200, 404, 201, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.MONITOR:        (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.DATA_MANAGER:   (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.STATISTICIAN:   (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.SPONSOR_VIEWER: (403, 403, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.AUDITOR:        (200, 200, 404, 403, 403, 200, 200, 404, 403, 403, 403, 403, 403),
    Role.UNBLINDED_STATISTICIAN: (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
}
# The data-capture columns, in ENDPOINTS order. The other site is 404 for a step the role
# holds (the subject or query is invisible there) and, for a form step the role lacks, 404
# too (the subject is looked up first); query steps check the role first: 403.
CAPTURE_EXPECTED: dict[Role, tuple[int, ...]] = {
    # A definition changes the study at every site: it needs a study-wide grant, and every
    # person here holds a role at SG01 only. Identifier export: study administrators.
    # Several forms at once (signatures) check the role for the study first: 403; then the
    # other site's subject is not found: 404.
    #                   defini- save      verify    sign signatures       lock      query_open query query_answer query_close query_assign export
    #                   tion    own  other own other own  own  other          own other own  other list  own  other  own         own  other   identifiers
    Role.NODE_ADMIN:     (403,  403, 403,  403, 403, 403, 403,  403,       403, 403, 403, 403,  403,  403, 403,   403,   403, 403,  403),
    Role.STUDY_ADMIN:    (403,  403, 404,  403, 404, 403, 403,  403,       403, 404, 403, 404,  403,  403, 403,   403,   403, 403,  200),
    Role.INVESTIGATOR:   (403,  200, 404,  403, 404, 200, 200,  404,       403, 404, 403, 404,  200,  200, 404,   403,   403, 403,  403),
    Role.COORDINATOR:    (403,  200, 404,  403, 404, 403, 403,  403,       403, 404, 403, 404,  200,  200, 404,   403,   403, 403,  403),
    Role.MONITOR:        (403,  403, 404,  200, 404, 403, 403,  403,       403, 404, 201, 404,  200,  403, 403,   403,   200, 404,  403),
    Role.DATA_MANAGER:   (403,  403, 404,  403, 404, 403, 403,  403,       200, 404, 201, 404,  200,  403, 403,   200,   200, 404,  403),
    Role.STATISTICIAN:   (403,  403, 404,  403, 404, 403, 403,  403,       403, 404, 403, 404,  403,  403, 403,   403,   403, 403,  403),
    Role.SPONSOR_VIEWER: (403,  403, 404,  403, 404, 403, 403,  403,       403, 404, 403, 404,  403,  403, 403,   403,   403, 403,  403),
    Role.AUDITOR:        (403,  403, 404,  403, 404, 403, 403,  403,       403, 404, 403, 404,  200,  403, 403,   403,   403, 403,  403),
    Role.UNBLINDED_STATISTICIAN: (403, 403, 404, 403, 404, 403, 403,  403,       403, 404, 403, 404, 403, 403, 403, 403,   403, 403,  403),
}
# The approval-queue columns, in ENDPOINTS order: the node's data steward decides queued
# analysis requests; a site grant never covers a node action. Then an analysis of the
# node's own data: statisticians only. A few subjects at SG01 have no age: they are left
# out and counted, the count released as "<5" (complete cases), not refused. Site
# performance: study administrators, monitors and data managers; the node administrator
# sees the study (a ``*`` grant) but holds no study action there: 403.
APPROVAL_EXPECTED: dict[Role, tuple[int, ...]] = {
    #                   approvals approve analysis randomise_own unblind_own performance
    Role.NODE_ADMIN:     (200,      200,     403,     403,          403,        403),
    Role.STUDY_ADMIN:    (403,      403,     403,     403,          403,        200),
    Role.INVESTIGATOR:   (403,      403,     403,     400,          404,        403),
    Role.COORDINATOR:    (403,      403,     403,     400,          403,        403),
    Role.MONITOR:        (403,      403,     403,     403,          403,        200),
    Role.DATA_MANAGER:   (403,      403,     403,     403,          403,        200),
    Role.STATISTICIAN:   (403,      403,     200,     403,          403,        403),
    Role.SPONSOR_VIEWER: (403,      403,     403,     403,          403,        403),
    Role.AUDITOR:        (403,      403,     403,     403,          403,        403),
    Role.UNBLINDED_STATISTICIAN: (403, 403,  200,     403,          403,        403),
}
# Who may grant what (docs/roles.md, "Granting roles"): each person above grants every role
# (node_admin at */*, the others at CART01/SG01) to someone else, then to themselves.
# Nobody grants to themselves; nobody grants a role that sees more than their own roles
# there, identifiers included: the node administrator sees no study data, the study
# administrator no identifiers and no query text.
# The unblinded statistician sees arms and the sealed lists, which nobody else sees: only
# the node's operator grants it (and it grants nothing).
#                   granted: node_ study_ investi- coordi- moni- data_   statis- unblinded sponsor_ audi-
#                            admin admin  gator    nator   tor   manager tician  statis.   viewer   tor
GRANT_EXPECTED: dict[Role, tuple[int, ...]] = {
    Role.NODE_ADMIN:     (201,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.STUDY_ADMIN:    (403,  201,   403,     403,    403,  403,    201,    403,      201,     403),
    Role.INVESTIGATOR:   (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.COORDINATOR:    (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.MONITOR:        (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.DATA_MANAGER:   (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.STATISTICIAN:   (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.UNBLINDED_STATISTICIAN: (403, 403, 403,  403,    403,  403,    403,    403,      403,     403),
    Role.SPONSOR_VIEWER: (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
    Role.AUDITOR:        (403,  403,   403,     403,    403,  403,    403,    403,      403,     403),
}
# fmt: on
SEES_IDENTIFIERS = {Role.INVESTIGATOR, Role.COORDINATOR, Role.MONITOR, Role.AUDITOR}
# actions decided by the policy but without an endpoint yet (later features add them)
NO_ENDPOINT_YET: set[Action] = {Action.HUB_MANAGE}  # a hub's app only: test_hub_join.py
# actions that decide what an answer holds, or act at a hub only, with tests of their own:
# arm.read (tests/api/test_blinding.py), randomisation_list.manage (test_hub_randomisation)
COVERED_ELSEWHERE: set[Action] = {Action.ARM_READ, Action.RANDOMISATION_LIST}
# what a successful write appends to CART01's audit chain (an unchanged definition: nothing)
AUDITED = {
    "create_own": "subject.create",
    "create_other": "subject.create",
    "save_own": "form.save",
    "save_other": "form.save",
    "verify_own": "form.verify",
    "verify_other": "form.verify",
    "sign_own": "form.sign",
    "sign_series_own": "form.sign",
    "sign_series_other": "form.sign",
    "lock_own": "form.lock",
    "lock_other": "form.lock",
    "query_open_own": "query.open",
    "query_open_other": "query.open",
    "query_answer_own": "query.answer",
    "query_answer_other": "query.answer",
    "query_close_own": "query.close",
    "query_assign_own": "query.assign",
    "query_assign_other": "query.assign",
    "export_identifiers": "data.export",
    "analysis": "analysis.run",
}


@dataclass(frozen=True)
class Targets:
    """One role's own subjects (at SG01 and SH01) and the ids of their open queries."""

    own: str
    other: str
    answer_own: int
    close_own: int
    answer_other: int
    close_other: int
    approval: str


@dataclass
class Consortium:
    node: Node
    tokens: dict[Role, str]
    targets: dict[Role, Targets]

    def path(self, column: str, role: Role) -> str:
        return ENDPOINTS[column][1].format(**asdict(self.targets[role]))


def _email(role: Role) -> str:
    return f"{role.value}@sg.example"


def _password(role: Role) -> str:
    return f"password-of-{role.value}"


def _seed_targets(node: Node, seeder: Principal, role: Role) -> Targets:
    """Enrol S-SG01-<role> and S-SH01-<role>, save their forms, open two queries on each."""
    query_ids: dict[str, int] = {}
    for site, where in (("SG01", "own"), ("SH01", "other")):
        subject_id = f"S-{site}-{role.value}"
        subjects.enrol_subject(
            node.engine, seeder, "CART01", subjects.SubjectInput(subject_id, site)
        )
        for event, form, values, complete in [
            ("screening", "eligibility", ELIGIBLE, True),
            (
                "screening",
                "demographics",
                {"age": 40, "sex": "M", "initials": f"Q{site[:2]}{site[-1]}"},
                True,
            ),
            ("randomisation", "randomisation", {"rand_date": "2025-01-10"}, False),
        ]:
            save = data_entry.FormSave(version=0, values=values, complete=complete)
            data_entry.save_form(node.engine, seeder, "CART01", subject_id, event, form, save)
        eligibility = (subject_id, "screening", "eligibility")
        for step, item in (("answer", "ecog"), ("close", "prior_lines")):
            opened = queries.open_query(
                node.engine, seeder, "CART01", *eligibility, item, f"{item} in the source?"
            )
            query_ids[f"{step}_{where}"] = opened.record.id
    request = {"kind": "describe", "table": "cart_efficacy", "variable": f"age_{role.value}"}
    approval = DatabaseApprovals(node.engine).find_or_submit(request, "lead-node").id
    return Targets(
        own=f"S-SG01-{role.value}", other=f"S-SH01-{role.value}", approval=approval, **query_ids
    )


@pytest.fixture(scope="module")
def consortium(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Consortium]:
    with running_node(module_database_url) as node:
        tokens: dict[Role, str] = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("consortia.auth.passwords._HASHER", CHEAP_HASHER)
            for role in Role:
                where = ("*", "*") if role is Role.NODE_ADMIN else ("CART01", "SG01")
                tokens[role] = node.add_user(_email(role), (*where, role), password=_password(role))
                node.add_user(f"target-{role.value}@sg.example", with_token=False)
        seeder = Principal(
            0,
            "seed@sg.example",
            "seed",
            frozenset(
                Grant("CART01", "*", role)
                for role in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.MONITOR)
            ),
        )
        studies.load_definition(node.engine, seeder, DEFINITION, expected_study="CART01")
        for subject_id, site, initials in [
            ("SG01-001", "SG01", OWN_INITIALS),
            ("SH01-001", "SH01", OTHER_INITIALS),
        ]:
            subjects.enrol_subject(
                node.engine, seeder, "CART01", subjects.SubjectInput(subject_id, site, initials)
            )
        targets = {role: _seed_targets(node, seeder, role) for role in Role}
        yield Consortium(node, tokens, targets)


def _body(column: str, role: Role) -> dict[str, Any] | None:
    target = f"target-{role.value}@sg.example"
    return {
        "create_own": {"subject_id": f"SG01-{role.value}", "site": "SG01", "initials": "QZC"},
        "create_other": {"subject_id": f"SH01-{role.value}", "site": "SH01", "initials": "QZD"},
        "create_user": {"email": f"new-{role.value}@sg.example", "name": "New"},
        "grant_own": {"email": target, "study": "CART01", "site": "SG01", "role": "statistician"},
        "grant_other": {"email": target, "study": "CART01", "site": "SH01", "role": "statistician"},
        "definition": {"source": DEFINITION},
        "save_own": {"version": 0, "values": CONSENT, "complete": True},
        "save_other": {"version": 0, "values": CONSENT, "complete": True},
        "verify_own": {"version": 1},
        "verify_other": {"version": 1},
        "sign_own": {"version": 1, "password": _password(role), "meaning": "approval"},
        "sign_series_own": _series(role, "own"),
        "sign_series_other": _series(role, "other"),
        "lock_own": {"version": 1},
        "lock_other": {"version": 1},
        "query_open_own": {"item": "ecog", "text": "ECOG 1 in the clinic note?"},
        "query_open_other": {"item": "ecog", "text": "ECOG 1 in the clinic note?"},
        "query_answer_own": {"text": "Yes, clinic note of 6 January"},
        "query_answer_other": {"text": "Yes, clinic note of 6 January"},
        "query_close_own": {"text": "Resolved"},
        "query_assign_own": {"assignee": _email(Role.COORDINATOR)},
        "query_assign_other": {"assignee": _email(Role.COORDINATOR)},
        "export_identifiers": {
            "table": "demographics",
            "include_identifiers": True,
            "reason": "ethics-approved re-contact",
        },
        "analysis": {"kind": "describe", "table": "edc", "variable": "age"},
        "unblind_own": {"reason": "grade 4 CRS: the treating physician needs the arm"},
    }.get(column)


def _series(role: Role, where: str) -> dict[str, Any]:
    """A signing of several forms: the role's own subject's eligibility form at ``where``."""
    subject_id = f"S-{'SG01' if where == 'own' else 'SH01'}-{role.value}"
    form = {"subject_id": subject_id, "event": "screening", "form": "eligibility", "version": 1}
    return {"forms": [form], "password": _password(role), "meaning": "approval"}


def _actions_of(role: Role) -> frozenset[Action]:
    return ROLE_ACTIONS[role]


def test_every_action_with_an_endpoint_is_in_the_matrix() -> None:
    covered = {action for _, _, action in ENDPOINTS.values()} | {Action.IDENTIFIER_READ}
    assert covered | NO_ENDPOINT_YET | COVERED_ELSEWHERE == set(Action)
    assert not covered & (NO_ENDPOINT_YET | COVERED_ELSEWHERE)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_its_answers_at_its_own_and_the_other_site(
    consortium: Consortium, role: Role
) -> None:
    client = consortium.node.client(consortium.tokens[role])
    answers: dict[str, Any] = {}
    for column in COLUMNS:
        method = ENDPOINTS[column][0]
        response = client.request(method, consortium.path(column, role), json=_body(column, role))
        answers[column] = response
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    got = tuple(answers[column].status_code for column in COLUMNS)
    expected = EXPECTED[role] + CAPTURE_EXPECTED[role] + APPROVAL_EXPECTED[role]
    assert dict(zip(COLUMNS, got, strict=True)) == dict(zip(COLUMNS, expected, strict=True))
    if answers["list"].status_code == 200:
        listed = answers["list"].json()
        if role is not Role.NODE_ADMIN:
            assert {s["site"] for s in listed} == {"SG01"}
        own = next(s for s in listed if s["subject_id"] == "SG01-001")
        expected_initials = OWN_INITIALS if role in SEES_IDENTIFIERS else None
        assert own["initials"] == expected_initials
        assert own["identifiers_masked"] is (role not in SEES_IDENTIFIERS)
        assert answers["get_own"].json()["initials"] == expected_initials
    if answers["enrolment"].status_code == 200:
        assert set(answers["enrolment"].json()["sites"]) == {"SG01"}
    if answers["audit"].status_code == 200:
        assert {event["site"] for event in answers["audit"].json()} == {"SG01"}
    for column in ("get_other", "other_study"):
        assert OTHER_INITIALS not in answers[column].text
    if ENDPOINTS["analysis"][2] in _actions_of(role):
        # the subjects without an age are left out and counted, never as the small number
        assert [node["excluded"] for node in answers["analysis"].json()["nodes"]] == ["<5"]
    if answers["export_identifiers"].status_code == 200:
        exported = answers["export_identifiers"].text
        assert "QSG1" in exported  # identifiers, with the stated reason, own site only
        assert "QSH1" not in exported
    if answers["sign_own"].status_code == 200:
        assert answers["sign_own"].json()["signature"]["meaning"].startswith("approval:")
    if answers["query_list"].status_code == 200:
        assert {q["site"] for q in answers["query_list"].json()} == {"SG01"}
    if answers["performance"].status_code == 200:
        # SH01 holds subjects too: it is left out, and not pooled into the overall row
        performance = answers["performance"].json()
        assert [site["site"] for site in performance["sites"]] == ["SG01"]
        assert performance["overall"]["screen_failure"] == performance["sites"][0]["screen_failure"]
    if answers["query_assign_own"].status_code == 200:
        assert answers["query_assign_own"].json()["assignee"] == _email(Role.COORDINATOR)
    # a refused request wrote nothing: the study's trail holds exactly the successful writes
    # (and access events: a signer is shown the form's identifier values, which is audited)
    with consortium.node.engine.connect() as connection:
        events = [e for e in iter_events(connection, chain="CART01") if e.actor == _email(role)]
    # (an analysis also logs what the node released or refused, with its release ledger)
    released = [e.action for e in events if e.action.startswith("federation.")]
    if answers["analysis"].status_code == 400:
        assert released == ["federation.refused"]
    written = [
        e.action
        for e in events
        if e.action != "identifier.read" and not e.action.startswith("federation.")
    ]
    # (an analysis the disclosure policy refuses, 400, is audited too: what was asked)
    succeeded = [
        c
        for c in COLUMNS
        if c in AUDITED
        and (answers[c].status_code < 300 or (c == "analysis" and answers[c].status_code == 400))
    ]
    assert written == [AUDITED[c] for c in succeeded]
    # identifier reads are access events: the subject list, the own subject, a signed form
    reads = {e.entity_id for e in events if e.action == "identifier.read"}
    expected_reads = {"CART01/*", "CART01/SG01-001"} if role in SEES_IDENTIFIERS else set()
    if answers["sign_own"].status_code == 200:
        expected_reads.add(f"CART01/{consortium.targets[role].own}/screening/demographics")
    assert reads == expected_reads
    # a decision goes to the node's chain; a refused one leaves the request pending
    approval = consortium.targets[role].approval
    with consortium.node.engine.connect() as connection:
        decisions = [
            e.action
            for e in iter_events(connection, chain="node")
            if e.entity_type == "approval" and e.entity_id == approval
        ]
    approved = answers["approve"].status_code == 200
    assert decisions == (["approval.approve"] if approved else [])
    with consortium.node.engine.connect() as connection:
        entry = ApprovalRepository(connection).get(approval)
    assert entry is not None
    assert entry.status.value == ("approved" if approved else "pending")
    if answers["approvals"].status_code == 200:
        assert approval in {e["id"] for e in answers["approvals"].json()}


def test_nothing_but_health_and_login_answers_without_credentials(consortium: Consortium) -> None:
    anonymous = consortium.node.client()
    for column, (method, _, _) in ENDPOINTS.items():
        path = consortium.path(column, Role.NODE_ADMIN)
        response = anonymous.request(method, path, json=_body(column, Role.NODE_ADMIN))
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get("/api/v1/health").status_code == 200


def test_one_person_with_roles_at_two_sites_gets_each_sites_rights(
    consortium: Consortium,
) -> None:
    token = consortium.node.add_user(
        "both@sg.example", ("CART01", "SG01", Role.COORDINATOR), ("CART01", "SH01", Role.MONITOR)
    )
    client = consortium.node.client(token)
    listed = {s["subject_id"]: s for s in client.get(f"{STUDY}/subjects").json()}
    assert {"SG01-001", "SH01-001"} <= set(listed)
    assert listed["SH01-001"]["initials"] == OTHER_INITIALS
    create = {"subject_id": "SH01-both", "site": "SH01"}
    assert client.post(f"{STUDY}/subjects", json=create).status_code == 403
    create = {"subject_id": "SG01-both", "site": "SG01"}
    assert client.post(f"{STUDY}/subjects", json=create).status_code == 201


def _grant_body(email: str, role: Role) -> dict[str, str]:
    study, site = ("*", "*") if role is Role.NODE_ADMIN else ("CART01", "SG01")
    return {"email": email, "study": study, "site": site, "role": role.value}


@pytest.mark.parametrize("granter", list(Role))
def test_each_role_grants_exactly_the_roles_the_rules_allow_and_never_to_itself(
    consortium: Consortium, granter: Role
) -> None:
    node = consortium.node
    grantee = f"grantee-{granter.value}@sg.example"
    node.add_user(grantee, with_token=False)
    client = node.client(consortium.tokens[granter])
    got = {}
    for role in Role:
        response = client.post("/api/v1/grants", json=_grant_body(grantee, role))
        got[role] = response.status_code
        if response.status_code != 201:
            assert response.headers["content-type"] == "application/problem+json"
    assert got == dict(zip(Role, GRANT_EXPECTED[granter], strict=True))
    own_grants_before = node.client(consortium.tokens[granter]).get("/api/v1/me").json()["grants"]
    for role in Role:
        to_self = client.post("/api/v1/grants", json=_grant_body(_email(granter), role))
        assert to_self.status_code == 403, role
    assert client.get("/api/v1/me").json()["grants"] == own_grants_before
    # the grantee holds exactly what was granted, and each grant is one audit event
    with node.engine.connect() as connection:
        added = [
            e.after["role"]
            for e in iter_events(connection, chain="node")
            if e.action == "grant.add" and e.after and e.after.get("email") == grantee
        ]
        to_self_added = [
            e
            for e in iter_events(connection, chain="node")
            if e.action == "grant.add"
            and e.after
            and e.after.get("email") == _email(granter)
            and e.actor == _email(granter)
        ]
    assert sorted(added) == sorted(r.value for r in Role if got[r] == 201)
    assert to_self_added == []


def test_a_study_admin_cannot_grant_itself_investigator_to_read_identifiers(
    consortium: Consortium,
) -> None:
    client = consortium.node.client(consortium.tokens[Role.STUDY_ADMIN])
    subject = f"{STUDY}/subjects/SG01-001"
    assert client.get(subject).json()["initials"] is None
    refused = client.post(
        "/api/v1/grants", json=_grant_body(_email(Role.STUDY_ADMIN), Role.INVESTIGATOR)
    )
    assert refused.status_code == 403
    assert "themselves" in refused.json()["detail"]
    assert client.get(subject).json()["initials"] is None
