"""The innovation centre's services on SQLite and PostgreSQL: agreements with their
documents and what expires soon; projects through their stage gates (no gate skipped,
quorum enforced, a stop is final); ideas from submission to a project or a decline; the
IP portfolio; people, placements and training. Each change is audited on the hub chain,
each refusal says why and changes nothing."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import centre, centre_ideas, centre_people, centre_projects
from consortia.services.common import cli_operator, utc_now
from consortia.storage.audit import audit_event
from consortia.storage.centre_tables import centre_document, centre_gate_decision

TODAY = utc_now().date()
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"
MEMBERS = ["chair@sgh.example", "dean@nus.example", "cto@imaging.example"]


def _hub_actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_event.c.action)
            .where(audit_event.c.chain == "hub")
            .order_by(audit_event.c.seq)
        )
        return [str(row.action) for row in rows]


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture
def operator() -> Principal:
    return cli_operator()


@pytest.fixture
def partners(engine: sa.Engine, operator: Principal) -> None:
    centre.add_partner(engine, operator, code="SGH", name="Singapore General", kind="hospital",
                       country="SG")  # fmt: skip
    centre.add_partner(engine, operator, code="NUS", name="National University of Singapore",
                       kind="university", country="SG")  # fmt: skip
    centre.add_partner(engine, operator, code="IMG", name="Imaging Co", kind="company",
                       country="CN")  # fmt: skip


@pytest.fixture
def committee(engine: sa.Engine, operator: Principal) -> str:
    for email in MEMBERS:
        centre_people.add_person(engine, operator, email=email, name=email.split("@")[0])
    centre_projects.add_committee(
        engine, operator, code="SC", name="Steering committee", quorum=2, members=MEMBERS
    )
    return "SC"


def test_an_agreement_keeps_its_documents_with_their_sha256_and_expiring_ones_are_listed(
    engine: sa.Engine, operator: Principal, partners: None
) -> None:
    view = centre.add_agreement(
        engine, operator, code="MOU-1", title="Innovation centre MOU", kind="mou",
        starts_on=TODAY - timedelta(days=300), ends_on=TODAY + timedelta(days=29),
        parties=["SGH", "NUS"],
    )  # fmt: skip
    assert (view.parties, view.state, view.expiring) == (["NUS", "SGH"], "in_force", True)
    centre.add_agreement(
        engine, operator, code="CTA-1", title="CAR-T trial", kind="clinical_trial",
        starts_on=TODAY, ends_on=TODAY + timedelta(days=31), parties=["SGH", "IMG"],
    )  # fmt: skip
    assert [v.agreement.code for v in centre.expiring_agreements(engine, operator)] == ["MOU-1"]
    document = centre.attach_document(
        engine, operator, owner_type="agreement", owner="MOU-1", filename="MOU signed.pdf",
        content=PDF,
    )  # fmt: skip
    assert document.sha256 == hashlib.sha256(PDF).hexdigest()
    assert document.media_type == "application/pdf"
    record, content = centre.read_document(engine, operator, document.id)
    assert (record.size, content) == (len(PDF), PDF)
    [listed] = [v for v in centre.list_agreements(engine, operator) if v.agreement.code == "MOU-1"]
    assert [d.sha256 for d in listed.documents] == [document.sha256]
    # a file that is not what its name says, an unknown type, too big: refused, none kept
    for filename, content, message in (
        ("MOU.pdf", b"MZ\x90\x00", "the content is not a .pdf file"),
        ("MOU.exe", PDF, ".exe: the centre keeps .pdf"),
        ("../MOU.pdf", PDF, "is not a plain file name"),
        ("big.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024), "at most 10485760 bytes"),
    ):
        with pytest.raises(ValidationError, match=message):
            centre.attach_document(
                engine, operator, owner_type="agreement", owner="MOU-1", filename=filename,
                content=content,
            )  # fmt: skip
    assert _count(engine, centre_document) == 1
    with pytest.raises(ValidationError, match=r"ends .* before it starts"):
        centre.add_agreement(
            engine, operator, code="BAD", title="Backwards", kind="mou",
            starts_on=TODAY, ends_on=TODAY - timedelta(days=1), parties=["SGH"],
        )  # fmt: skip
    with pytest.raises(ValidationError, match="'XYZ' is not a partner"):
        centre.add_agreement(
            engine, operator, code="BAD", title="Unknown party", kind="mou",
            starts_on=TODAY, ends_on=None, parties=["XYZ"],
        )  # fmt: skip
    with pytest.raises(ValidationError, match="a data-sharing agreement covers a study"):
        centre.add_agreement(
            engine, operator, code="BAD", title="No scope", kind="data_sharing",
            starts_on=TODAY, ends_on=None, parties=["SGH"],
        )  # fmt: skip
    assert _hub_actions(engine).count("centre.agreement.add") == 2
    assert "centre.document.add" in _hub_actions(engine)
    assert "centre.document.read" in _hub_actions(engine)


def test_a_project_passes_its_gates_in_order_with_a_quorum_and_cannot_skip_one(
    engine: sa.Engine, operator: Principal, partners: None, committee: str
) -> None:
    centre.add_programme(engine, operator, code="3DP", name="3D printing in orthopaedics")
    view = centre_projects.add_project(
        engine, operator, code="PROSTHESIS", title="Printed tumour prosthesis",
        committee=committee, programme="3DP",
    )  # fmt: skip
    assert (view.project.stage, view.next_stage, view.programme) == (
        "idea",
        "proof_of_concept",
        "3DP",
    )
    with pytest.raises(ValidationError) as skipped:
        centre_projects.record_gate(
            engine, operator, "PROSTHESIS", to_stage="prototype", decision="go",
            rationale="Looks ready", present=MEMBERS,
        )  # fmt: skip
    assert str(skipped.value.problems[0].message) == (
        "project PROSTHESIS is at idea: a project moves one gate at a time: from idea the next "
        "gate is proof_of_concept, not prototype"
    )
    with pytest.raises(ValidationError) as no_quorum:
        centre_projects.record_gate(
            engine, operator, "PROSTHESIS", to_stage="proof_of_concept", decision="go",
            rationale="Bench results", present=[MEMBERS[0], "visitor@else.example"],
        )  # fmt: skip
    messages = [p.message for p in no_quorum.value.problems]
    assert "visitor@else.example: not on steering committee SC" in messages[0]
    assert messages[1] == (
        "steering committee SC: quorum not met: 1 of 3 committee members present, the "
        "committee needs 2"
    )
    assert _count(engine, centre_gate_decision) == 0
    held = centre_projects.record_gate(
        engine, operator, "PROSTHESIS", to_stage="proof_of_concept", decision="hold",
        rationale="Needs the cadaver study", present=MEMBERS[:2], documents=["Bench report v2"],
    )  # fmt: skip
    assert (held.project.stage, held.project.status) == ("idea", "on_hold")
    went = centre_projects.record_gate(
        engine, operator, "PROSTHESIS", to_stage="proof_of_concept", decision="go",
        rationale="Cadaver study passed", present=MEMBERS[1:], documents=["Cadaver study"],
        decided_on=TODAY - timedelta(days=1),
    )  # fmt: skip
    assert (went.project.stage, went.project.status) == ("proof_of_concept", "active")
    assert [d.decision for d in went.decisions] == ["hold", "go"]
    assert went.decisions[1].documents == ["Cadaver study"]
    assert went.decisions[1].present == sorted(MEMBERS[1:])
    centre_projects.link_project(engine, operator, "PROSTHESIS", kind="partner", target="IMG")
    linked = centre_projects.link_project(
        engine, operator, "PROSTHESIS", kind="study", target="ORTHO-3DP"
    )
    assert linked.links == {"partner": ["IMG"], "study": ["ORTHO-3DP"]}
    with pytest.raises(NotFoundError, match="'NOPE' is not a agreement"):
        centre_projects.link_project(
            engine, operator, "PROSTHESIS", kind="agreement", target="NOPE"
        )
    stopped = centre_projects.record_gate(
        engine, operator, "PROSTHESIS", to_stage="prototype", decision="stop",
        rationale="Market too small", present=MEMBERS,
    )  # fmt: skip
    assert stopped.project.status == "stopped"
    with pytest.raises(ValidationError, match="was stopped: it takes no more gates"):
        centre_projects.record_gate(
            engine, operator, "PROSTHESIS", to_stage="prototype", decision="go",
            rationale="Second thoughts", present=MEMBERS,
        )  # fmt: skip
    assert _hub_actions(engine).count("centre.project.gate") == 3


def test_an_idea_is_triaged_and_becomes_a_project_or_is_declined_with_a_reason(
    engine: sa.Engine, operator: Principal, partners: None, committee: str
) -> None:
    clinician = Principal(7, "dr.lim@sgh.example", "Dr Lim", frozenset())
    centre.add_programme(engine, operator, code="DIGI", name="Digital medicine")
    idea = centre_ideas.submit_idea(
        engine, clinician, title="Wearable glucose patch", problem="Finger pricks hurt",
        solution="A non-invasive patch", patients="Type 1 diabetes", needs="Sensor engineers",
    )  # fmt: skip
    assert (idea.idea.status, idea.idea.clinician) == ("submitted", "dr.lim@sgh.example")
    with pytest.raises(PermissionDeniedError):
        centre_ideas.triage_idea(engine, clinician, idea.idea.id, programme=None, partners=[])
    with pytest.raises(ValidationError, match="is submitted: this needs an idea that is triaged"):
        centre_ideas.accept_idea(engine, operator, idea.idea.id, project="PATCH", committee="SC")
    triaged = centre_ideas.triage_idea(
        engine, operator, idea.idea.id, programme="DIGI", partners=["IMG", "NUS"]
    )
    assert (triaged.idea.status, triaged.programme, triaged.partners) == (
        "triaged",
        "DIGI",
        ["IMG", "NUS"],
    )
    accepted = centre_ideas.accept_idea(
        engine, operator, idea.idea.id, project="PATCH", committee="SC"
    )
    assert (accepted.idea.status, accepted.project) == ("accepted", "PATCH")
    [project] = centre_projects.list_projects(engine, operator)
    assert (project.project.stage, project.programme) == ("idea", "DIGI")
    assert project.links == {"partner": ["IMG", "NUS"]}
    other = centre_ideas.submit_idea(
        engine, clinician, title="Robot porter", problem="Long waits", solution="A robot",
        patients="All inpatients", needs="Money",
    )  # fmt: skip
    with pytest.raises(ValidationError, match="reason: required"):
        centre_ideas.decline_idea(engine, operator, other.idea.id, reason=" ")
    declined = centre_ideas.decline_idea(
        engine, operator, other.idea.id, reason="Outside the centre's programmes"
    )
    assert (declined.idea.status, declined.idea.reason) == (
        "declined",
        "Outside the centre's programmes",
    )
    actions = _hub_actions(engine)
    for action in ("centre.idea.submit", "centre.idea.triage", "centre.idea.accept"):
        assert action in actions
    assert actions[-1] == "centre.idea.decline"


def test_the_ip_portfolio_counts_filings_by_status_and_jurisdiction(
    engine: sa.Engine, operator: Principal, partners: None, committee: str
) -> None:
    centre_projects.add_project(engine, operator, code="CART", title="CAR-T", committee="SC")
    centre_ideas.add_ip(
        engine, operator, kind="disclosure", title="Armoured CAR", inventors=["Tan", "Li"],
        status="disclosed", project="CART",
    )  # fmt: skip
    for number, jurisdiction, status, granted in (
        ("SG10202600001", "SG", "filed", None),
        ("CN202610000001", "CN", "granted", date(2026, 6, 1)),
        ("EP26000001", "EP", "filed", None),
    ):
        centre_ideas.add_ip(
            engine, operator, kind="patent", title="Armoured CAR", inventors=["Tan"],
            status=status, application_number=number, jurisdiction=jurisdiction,
            filed_on=date(2026, 1, 5), granted_on=granted, family="ARMOURED-CAR",
            project="CART",
        )  # fmt: skip
    with pytest.raises(ValidationError, match="a patent filing has an application number"):
        centre_ideas.add_ip(
            engine, operator, kind="patent", title="Half a filing", inventors=["Tan"],
            status="filed",
        )  # fmt: skip
    totals = centre_ideas.portfolio(engine, operator)
    assert totals.total == 4
    assert totals.by_status == {"disclosed": 1, "filed": 2, "granted": 1}
    assert totals.by_jurisdiction == {"-": 1, "CN": 1, "EP": 1, "SG": 1}
    [project] = centre_projects.list_projects(engine, operator)
    assert len(project.links["ip"]) == 4


def test_people_hold_several_affiliations_placements_and_training(
    engine: sa.Engine, operator: Principal, partners: None
) -> None:
    email = "dr.wu@sgh.example"
    centre_people.add_person(engine, operator, email=email, name="Dr Wu")
    centre_people.affiliate(engine, operator, email=email, partner="SGH", title="Consultant")
    view = centre_people.affiliate(
        engine, operator, email=email, partner="NUS", title="Adjunct professor"
    )
    assert view.affiliations == [("NUS", "Adjunct professor"), ("SGH", "Consultant")]
    with pytest.raises(ConflictError, match="affiliated with SGH already"):
        centre_people.affiliate(engine, operator, email=email, partner="SGH", title="Again")
    placement = centre_people.add_placement(
        engine, operator, email=email, from_partner="SGH", to_partner="IMG",
        starts_on=date(2026, 3, 1), ends_on=date(2026, 8, 31), purpose="AI imaging research",
    )  # fmt: skip
    assert (placement.from_partner, placement.to_partner) == ("SGH", "IMG")
    with pytest.raises(ValidationError, match="protocol training names its study"):
        centre_people.add_training(
            engine, operator, email=email, kind="protocol", title="Protocol",
            completed_on=TODAY, expires_on=None,
        )  # fmt: skip
    centre_people.add_training(
        engine, operator, email=email, kind="gcp", title="GCP", completed_on=TODAY,
        expires_on=TODAY + timedelta(days=30),
    )  # fmt: skip
    centre_people.add_training(
        engine, operator, email=email, kind="protocol", study="CART", title="CART v2",
        completed_on=TODAY, expires_on=TODAY + timedelta(days=31),
    )  # fmt: skip
    assert [t.title for t in centre_people.expiring_training(engine, operator)] == ["GCP"]
    [person] = centre_people.list_people(engine, operator)
    assert len(person.training) == 2


def test_the_centre_is_for_the_hubs_administrators(engine: sa.Engine) -> None:
    statistician = Principal(
        9, "stats@hub.example", "S", frozenset({Grant("CART", "*", Role.STATISTICIAN)})
    )
    with pytest.raises(PermissionDeniedError):
        centre.add_partner(engine, statistician, code="X", name="X", kind="hospital", country="SG")
    with pytest.raises(PermissionDeniedError):
        centre.list_agreements(engine, statistician)
    assert _hub_actions(engine) == []


def test_names_that_are_not_the_centres_are_each_refused_at_their_field(
    engine: sa.Engine, operator: Principal, partners: None
) -> None:
    with pytest.raises(ValidationError) as refused:
        centre.add_agreement(
            engine,
            operator,
            code="DSA-X",
            title="Data sharing",
            kind="data_sharing",
            starts_on=TODAY,
            ends_on=None,
            parties=["SGH", "NOPE"],
            programmes=["GHOST"],
        )
    assert [(p.path, p.message) for p in refused.value.problems] == [
        ("parties", "'NOPE' is not a partner of the centre"),
        ("programmes", "'GHOST' is not a programme"),
    ]
    with pytest.raises(ValidationError) as refused:
        centre_projects.add_committee(
            engine, operator, code="SC", name="Steering", quorum=1, members=["nobody@x.example"]
        )
    assert [(p.path, p.message) for p in refused.value.problems] == [
        ("members", "nobody@x.example is not a person of the centre"),
    ]
    assert _hub_actions(engine).count("centre.agreement.add") == 0
