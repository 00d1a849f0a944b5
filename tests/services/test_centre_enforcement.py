"""What the innovation centre enforces, on SQLite and PostgreSQL: a member hosts a study's
site only under a data-sharing agreement in force (publishing refused otherwise), an
expired agreement stops new analyses of the study (the refusal names the agreement), and a
study role needs the training the study asks for. Each refusal changes nothing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Role
from consortia.domain.templates import template_text
from consortia.exceptions import PermissionDeniedError, ValidationError
from consortia.federation.signing import generate_key
from consortia.services import centre, centre_people, hub_analyses, hub_studies, users
from consortia.services.common import cli_operator, utc_now
from consortia.services.hub import HubIdentity
from consortia.storage.audit import audit_event
from consortia.storage.hub import HubRepository, MemberRecord
from consortia.storage.tables import hub_analysis, hub_study, role_grant

SOURCE = template_text("cart-lbcl")
STUDY = "CART-LBCL"
TODAY = utc_now().date()


def _member(engine: sa.Engine, name: str, institution: str) -> None:
    now = utc_now()
    with engine.begin() as connection:
        HubRepository(connection).add_member(
            MemberRecord(
                name=name,
                institution=institution,
                country="SG",
                url=f"http://{name}.test",
                transport="pull",
                public_key="A" * 43 + "=",
                fingerprint="f" * 16,
                status="active",
                software_version="test",
                protocol_version="1",
                joined_at=now,
                last_seen_at=None,
                removed_at=None,
            )
        )


@pytest.fixture
def hub(engine: sa.Engine) -> HubIdentity:
    """A hub running the centre: members sgh and shh, each its institution's partner."""
    operator = cli_operator()
    _member(engine, "sgh", "Singapore General")
    _member(engine, "shh", "Shanghai Hospital")
    centre.add_partner(
        engine, operator, code="SGH", name="Singapore General", kind="hospital", country="SG",
        member="sgh",
    )  # fmt: skip
    centre.add_partner(
        engine, operator, code="SHH", name="Shanghai Hospital", kind="hospital", country="CN",
        member="shh",
    )  # fmt: skip
    return HubIdentity("hub", "http://hub.test", generate_key())


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _dsa(
    engine: sa.Engine, code: str, party: str, starts: date, ends: date, **scope: object
) -> None:
    centre.add_agreement(
        engine,
        cli_operator(),
        code=code,
        title=f"{party} data sharing",
        kind="data_sharing",
        starts_on=starts,
        ends_on=ends,
        parties=[party],
        **scope,  # type: ignore[arg-type]
    )


def test_a_site_without_a_data_sharing_agreement_in_force_is_refused_and_nothing_published(
    engine: sa.Engine, hub: HubIdentity
) -> None:
    operator = cli_operator()
    _dsa(engine, "DSA-SG", "SGH", TODAY - timedelta(days=10), TODAY + timedelta(days=300),
         studies=[STUDY])  # fmt: skip
    _dsa(engine, "DSA-SH-2025", "SHH", date(2025, 1, 1), TODAY - timedelta(days=1),
         studies=[STUDY])  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        hub_studies.publish_study(engine, operator, hub, SOURCE, {"SG01": "sgh", "SH01": "shh"})
    [problem] = refused.value.problems
    assert problem.path == "--site SH01"
    assert "data-sharing agreement DSA-SH-2025 ('SHH data sharing') expired on" in problem.message
    assert (TODAY - timedelta(days=1)).isoformat() in problem.message
    assert _count(engine, hub_study) == 0
    # the site of the member under an agreement in force is published
    record, _, members = hub_studies.publish_study(engine, operator, hub, SOURCE, {"SG01": "sgh"})
    assert record.study == STUDY
    assert [m.name for m in members] == ["sgh"]


def test_an_agreement_covering_the_studys_programme_lets_its_member_host_a_site(
    engine: sa.Engine, hub: HubIdentity
) -> None:
    operator = cli_operator()
    with pytest.raises(ValidationError, match="has no data-sharing agreement covering study"):
        hub_studies.publish_study(engine, operator, hub, SOURCE, {"SH01": "shh"})
    centre.add_programme(engine, operator, code="CGT", name="Cell and gene therapy",
                         studies=[STUDY])  # fmt: skip
    _dsa(engine, "DSA-CGT", "SHH", TODAY, TODAY + timedelta(days=5), programmes=["CGT"])
    record, _, _ = hub_studies.publish_study(engine, operator, hub, SOURCE, {"SH01": "shh"})
    assert record.study == STUDY


def test_a_member_linked_to_no_partner_cannot_host_a_site(
    engine: sa.Engine, hub: HubIdentity
) -> None:
    _member(engine, "nuh", "National University Hospital")
    with pytest.raises(ValidationError, match="member 'nuh' is linked to no partner"):
        hub_studies.publish_study(engine, cli_operator(), hub, SOURCE, {"SG01": "nuh"})


def test_an_expired_agreement_stops_new_analyses_of_the_study_naming_the_agreement(
    engine: sa.Engine, hub: HubIdentity
) -> None:
    operator = cli_operator()
    _dsa(engine, "DSA-SG", "SGH", TODAY - timedelta(days=10), TODAY + timedelta(days=300),
         studies=[STUDY])  # fmt: skip
    _dsa(engine, "DSA-SH-2026", "SHH", TODAY - timedelta(days=100), TODAY,
         studies=[STUDY])  # fmt: skip
    hub_studies.publish_study(engine, operator, hub, SOURCE, {"SG01": "sgh", "SH01": "shh"})
    # the agreement ends: the next day no new analysis of the study goes to shh
    tomorrow = TODAY + timedelta(days=1)
    with pytest.raises(PermissionDeniedError) as refused:
        from consortia.services import centre_enforcement

        centre_enforcement.check_analysis_agreements(engine, STUDY, ["sgh", "shh"], on=tomorrow)
    message = str(refused.value)
    assert f"no new analysis of study {STUDY} is sent" in message
    assert "member 'shh'" in message
    assert f"data-sharing agreement DSA-SH-2026 ('SHH data sharing') expired on {TODAY}" in message
    assert "sgh" not in message.replace("member 'shh'", "")
    # through the hub's analysis path: refused before anything is recorded or sent
    centre.set_agreement_status(engine, operator, "DSA-SH-2026", status="terminated")
    events = _count(engine, audit_event)
    with pytest.raises(PermissionDeniedError, match=r"DSA-SH-2026 .* is terminated, not in force"):
        hub_analyses.run_analysis(
            engine,
            operator,
            hub,
            study=STUDY,
            plan=None,
            request={"kind": "descriptive", "table": "cart_efficacy"},
            clock_skew_seconds=60,
        )
    assert _count(engine, hub_analysis) == 0
    assert _count(engine, audit_event) == events


def test_a_hub_without_a_centre_publishes_as_before(engine: sa.Engine) -> None:
    _member(engine, "sgh", "Singapore General")
    hub = HubIdentity("hub", "http://hub.test", generate_key())
    record, _, _ = hub_studies.publish_study(engine, cli_operator(), hub, SOURCE, {"SG01": "sgh"})
    assert record.study == STUDY


def test_a_study_role_needs_a_valid_gcp_certificate_and_the_protocol_training(
    engine: sa.Engine,
) -> None:
    operator = cli_operator()
    email = "dr.tan@sgh.example"
    users.create_user(engine, operator, email=email, name="Dr Tan", password=None)
    grant = {"email": email, "study": STUDY, "site": "SG01", "role": Role.INVESTIGATOR}
    # no rule for the study: granted as before
    users.grant_role(
        engine,
        operator,
        **grant,
    )  # type: ignore[arg-type]
    users.revoke_role(engine, operator, **grant)  # type: ignore[arg-type]
    centre_people.set_study_training(
        engine, operator, study=STUDY, requires_gcp=True, requires_protocol=True
    )
    grants = _count(engine, role_grant)
    with pytest.raises(PermissionDeniedError) as refused:
        users.grant_role(engine, operator, **grant)  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"a role at study {STUDY} needs a valid GCP certificate and the protocol training for "
        f"study {STUDY}: {email} has no such record valid today at the centre (record it with "
        "`consortia centre training add`)"
    )
    centre_people.add_person(engine, operator, email=email, name="Dr Tan")
    centre_people.add_training(
        engine, operator, email=email, kind="gcp", title="ICH GCP E6(R3)",
        completed_on=date(2024, 1, 1), expires_on=TODAY - timedelta(days=1),
    )  # fmt: skip
    centre_people.add_training(
        engine, operator, email=email, kind="protocol", study=STUDY, title="CART-LBCL v1",
        completed_on=TODAY, expires_on=None,
    )  # fmt: skip
    with pytest.raises(PermissionDeniedError, match="needs a valid GCP certificate: "):
        users.grant_role(engine, operator, **grant)  # type: ignore[arg-type]
    assert _count(engine, role_grant) == grants
    # a role at every study covers this one; the node's administration does not
    everywhere = {**grant, "study": "*", "site": "*"}
    with pytest.raises(PermissionDeniedError, match=f"a role at study {STUDY} needs a valid GCP"):
        users.grant_role(engine, operator, **everywhere)  # type: ignore[arg-type]
    assert _count(engine, role_grant) == grants
    users.grant_role(engine, operator, **{**everywhere, "role": Role.NODE_ADMIN})  # type: ignore[arg-type]
    users.revoke_role(engine, operator, **{**everywhere, "role": Role.NODE_ADMIN})  # type: ignore[arg-type]
    centre_people.add_training(
        engine, operator, email=email, kind="gcp", title="ICH GCP E6(R3) renewal",
        completed_on=TODAY, expires_on=TODAY + timedelta(days=20),
    )  # fmt: skip
    record = users.grant_role(engine, operator, **grant)  # type: ignore[arg-type]
    assert record.grant.study == STUDY
    [expiring] = centre_people.expiring_training(engine, operator)
    assert expiring.title == "ICH GCP E6(R3) renewal"
