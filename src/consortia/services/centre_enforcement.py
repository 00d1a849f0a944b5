"""What the innovation centre's records enforce elsewhere, each as one call the other
services make:

* :func:`check_site_agreements` (publishing a study at the hub): a member node may host a
  site of a study only while a data-sharing agreement covering that study (or its
  programme), to which the member's institution is a party, is in force;
* :func:`check_analysis_agreements` (running an analysis at the hub): no new analysis of a
  study goes to a member whose agreement has expired, and the refusal names the agreement;
* :func:`check_role_training` (granting a study role): the person needs a valid GCP
  certificate and the study's protocol training, when the study's training rule says so.

The agreement rules hold at a hub that runs the centre, from its first partner on: a hub
that records no partner is a consortium without a centre and publishes as before. The
agreement checks read as the node itself (:data:`~consortia.services.unit_of_work.SYSTEM`,
read-only): they are the hub's own rule, applied whoever asks, and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from sqlalchemy import Connection, Engine

from consortia.auth.principal import WILDCARD, Grant, Role
from consortia.domain import centre as rules
from consortia.exceptions import PermissionDeniedError, Problem, ValidationError
from consortia.services.common import utc_now
from consortia.services.unit_of_work import SYSTEM, reading
from consortia.storage.centre import AgreementRecord, CentreRepository
from consortia.storage.centre_people import PeopleRepository

__all__ = ["check_analysis_agreements", "check_role_training", "check_site_agreements"]

DATA_SHARING = "data_sharing"


def _agreement_refusal(
    repository: CentreRepository, study: str, member: str, day: date
) -> str | None:
    """Why ``member`` may not host a site of ``study`` on ``day`` (None when it may)."""
    partner = repository.partner_of_member(member)
    if partner is None:
        return (
            f"member {member!r} is linked to no partner of the centre: record its institution "
            f"as a partner (`consortia centre partner add CODE ... --member {member}`) with a "
            f"data-sharing agreement covering study {study}"
        )
    agreements = repository.covering_agreements(partner.id, study, DATA_SHARING)
    if any(rules.in_force(a.status, a.starts_on, a.ends_on, day) for a in agreements):
        return None
    who = f"member {member!r} ({partner.name}, partner {partner.code})"
    if not agreements:
        return (
            f"{who} has no data-sharing agreement covering study {study} or its programme: "
            "record one at the centre"
        )
    return f"{who}: {_describe(agreements[0], day)}"


def _describe(agreement: AgreementRecord, day: date) -> str:
    state = rules.agreement_state(agreement.status, agreement.starts_on, agreement.ends_on, day)
    name = f"data-sharing agreement {agreement.code} ({agreement.title!r})"
    if state == "expired":
        assert agreement.ends_on is not None
        return f"{name} expired on {agreement.ends_on.isoformat()}"
    if state == "not_started":
        return f"{name} starts on {agreement.starts_on.isoformat()}"
    return f"{name} is {state}, not in force"


def check_site_agreements(
    engine: Engine, study: str, sites: Mapping[str, str], *, on: date | None = None
) -> None:
    """Refuse (:class:`ValidationError`, one problem per site) a site whose member has no
    data-sharing agreement in force for ``study``; nothing at a hub without a centre."""
    day = on or utc_now().date()
    with reading(engine, SYSTEM) as work:
        repository = CentreRepository(work.connection)
        if not repository.any_partner():
            return
        problems = []
        for site, member in sorted(sites.items()):
            refusal = _agreement_refusal(repository, study, member, day)
            if refusal is not None:
                problems.append(Problem(f"--site {site}", f"cannot host study {study}: {refusal}"))
    if problems:
        raise ValidationError(problems)


def check_analysis_agreements(
    engine: Engine, study: str, members: Iterable[str], *, on: date | None = None
) -> None:
    """Refuse (:class:`PermissionDeniedError`) a new analysis of ``study`` while one of
    its members has no data-sharing agreement in force: the message names the agreement."""
    day = on or utc_now().date()
    with reading(engine, SYSTEM) as work:
        repository = CentreRepository(work.connection)
        if not repository.any_partner():
            return
        refusals = [
            refusal
            for member in sorted(set(members))
            if (refusal := _agreement_refusal(repository, study, member, day)) is not None
        ]
    if refusals:
        raise PermissionDeniedError(
            f"no new analysis of study {study} is sent: " + "; ".join(refusals)
        )


def check_role_training(
    connection: Connection, *, email: str, grant: Grant, on: date | None = None
) -> None:
    """Refuse (:class:`PermissionDeniedError`) ``grant`` to ``email`` when a study it covers
    has a training rule asking for a GCP certificate or its protocol training that the
    person does not hold, valid today. A grant at every study (``*``) is checked against
    every study with a rule; ``node_admin`` (the node's administration, no study data) is
    not checked. Runs inside the grant's own transaction."""
    if grant.role is Role.NODE_ADMIN:
        return
    day = on or utc_now().date()
    people = PeopleRepository(connection)
    if grant.study == WILDCARD:
        rules_ = people.study_trainings()
    else:
        found = people.study_training(grant.study)
        rules_ = [] if found is None else [found]
    person = people.person(email)
    for rule in rules_:
        missing = []
        if rule.requires_gcp and (
            person is None or people.valid_training(person.id, "gcp", None, day) is None
        ):
            missing.append("a valid GCP certificate")
        if rule.requires_protocol and (
            person is None or people.valid_training(person.id, "protocol", rule.study, day) is None
        ):
            missing.append(f"the protocol training for study {rule.study}")
        if missing:
            raise PermissionDeniedError(
                f"a role at study {rule.study} needs {' and '.join(missing)}: {email} has no "
                "such record valid today at the centre (record it with `consortia centre "
                "training add`)"
            )
