"""The innovation centre's people: staff and their affiliations at several partners,
exchange placements, training records with their expiry, and each study's training rule
(what granting one of its roles needs:
:func:`consortia.services.centre_enforcement.check_role_training`).

Each change is one unit of work with its audit event on the hub's ``hub`` chain and needs
``hub.manage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain import centre as rules
from consortia.exceptions import ConflictError, NotFoundError, Problem
from consortia.services.centre import refuse, today
from consortia.services.common import check_code, normalise_email, require, utc_now
from consortia.services.hub import HUB_CHAIN
from consortia.services.unit_of_work import reading, writing
from consortia.storage.centre import CentreRepository, PartnerRecord
from consortia.storage.centre_people import (
    PeopleRepository,
    PersonRecord,
    PlacementRecord,
    StudyTrainingRecord,
    TrainingRecord,
)

__all__ = [
    "PersonRecord",
    "PersonView",
    "PlacementRecord",
    "StudyTrainingRecord",
    "TrainingRecord",
    "add_person",
    "add_placement",
    "add_training",
    "affiliate",
    "expiring_training",
    "list_people",
    "list_placements",
    "list_study_training",
    "set_study_training",
]


@dataclass(frozen=True, slots=True)
class PersonView:
    """A person with their affiliations (partner code, title) and training records."""

    person: PersonRecord
    affiliations: list[tuple[str, str]]
    training: list[TrainingRecord]


def add_person(engine: Engine, principal: Principal, *, email: str, name: str) -> PersonRecord:
    """Record a member of staff (their account, if any, has the same email)."""
    require(principal, Action.HUB_MANAGE, Resource())
    email = normalise_email(email)
    refuse(rules.check_text(name, "name"))
    with writing(engine, principal, conflict=f"{email} is recorded already") as work:
        people = PeopleRepository(work.connection)
        if people.person(email) is not None:
            raise ConflictError(f"{email} is recorded already")
        values = {
            "email": email,
            "name": name.strip(),
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        people.add_person(values)
        work.audit("centre.person.add", "person", email, chain=HUB_CHAIN, after=values)
        person = people.person(email)
    assert person is not None
    return person


def _person(people: PeopleRepository, email: str, field: str = "email") -> PersonRecord:
    person = people.person(normalise_email(email))
    if person is None:
        raise NotFoundError(f"{field}: {email} is not a person recorded at the centre")
    return person


def _partner(repository: CentreRepository, code: str, field: str) -> PartnerRecord:
    partner = repository.partner(code)
    if partner is None:
        raise NotFoundError(f"{field}: {code!r} is not a partner of the centre")
    return partner


def affiliate(
    engine: Engine, principal: Principal, *, email: str, partner: str, title: str
) -> PersonView:
    """Affiliate a person with a partner (a person may hold several affiliations)."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(rules.check_text(title, "title", limit=200))
    with writing(engine, principal) as work:
        people = PeopleRepository(work.connection)
        person = _person(people, email)
        found = _partner(CentreRepository(work.connection), partner, "partner")
        if not people.add_affiliation(person.id, found.id, title.strip()):
            raise ConflictError(f"{person.email} is affiliated with {partner} already")
        work.audit(
            "centre.person.affiliate",
            "person",
            person.email,
            chain=HUB_CHAIN,
            after={"partner": partner, "title": title.strip()},
        )
        return _view(people, person)


def _view(people: PeopleRepository, person: PersonRecord) -> PersonView:
    return PersonView(
        person,
        people.affiliations().get(person.email, []),
        [t for t in people.trainings() if t.email == person.email],
    )


def list_people(engine: Engine, principal: Principal) -> list[PersonView]:
    """Every person with affiliations and training, by email."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        people = PeopleRepository(work.connection)
        affiliations = people.affiliations()
        trainings = people.trainings()
        return [
            PersonView(
                p, affiliations.get(p.email, []), [t for t in trainings if t.email == p.email]
            )
            for p in people.people()
        ]


def add_placement(
    engine: Engine,
    principal: Principal,
    *,
    email: str,
    from_partner: str,
    to_partner: str,
    starts_on: date,
    ends_on: date,
    purpose: str,
) -> PlacementRecord:
    """Record an exchange placement: who goes from which partner to which, when and why."""
    require(principal, Action.HUB_MANAGE, Resource())
    problems = [
        *rules.check_dates(starts_on, ends_on, "ends_on"),
        *rules.check_text(purpose, "purpose", limit=2000),
    ]
    if from_partner == to_partner:
        problems.append(Problem("to_partner", "a placement goes to another partner"))
    refuse(problems)
    with writing(engine, principal) as work:
        people = PeopleRepository(work.connection)
        centre = CentreRepository(work.connection)
        person = _person(people, email)
        source = _partner(centre, from_partner, "from_partner")
        target = _partner(centre, to_partner, "to_partner")
        placement_id = people.add_placement(
            {
                "person_id": person.id,
                "from_partner_id": source.id,
                "to_partner_id": target.id,
                "starts_on": starts_on,
                "ends_on": ends_on,
                "purpose": purpose.strip(),
                "created_by": principal.email,
                "created_at": utc_now(),
            }
        )
        work.audit(
            "centre.placement.add",
            "placement",
            placement_id,
            chain=HUB_CHAIN,
            after={
                "email": person.email,
                "from": from_partner,
                "to": to_partner,
                "starts_on": starts_on,
                "ends_on": ends_on,
                "purpose": purpose.strip(),
            },
        )
        return next(p for p in people.placements() if p.id == placement_id)


def list_placements(engine: Engine, principal: Principal) -> list[PlacementRecord]:
    """Every exchange placement, by start."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return PeopleRepository(work.connection).placements()


def add_training(
    engine: Engine,
    principal: Principal,
    *,
    email: str,
    kind: str,
    title: str,
    completed_on: date,
    expires_on: date | None,
    study: str | None = None,
) -> TrainingRecord:
    """Record a training: a GCP certificate (``gcp``) or a study's protocol training
    (``protocol``, naming the study), with the day it was completed and when it expires."""
    require(principal, Action.HUB_MANAGE, Resource())
    problems = [
        *rules.check_choice(kind, rules.TRAINING_KINDS, "kind"),
        *rules.check_text(title, "title"),
        *rules.check_dates(completed_on, expires_on, "expires_on"),
    ]
    if kind == "protocol" and not study:
        problems.append(Problem("study", "protocol training names its study"))
    if kind == "gcp" and study:
        problems.append(Problem("study", "a GCP certificate is for every study: name none"))
    refuse(problems)
    if study:
        study = check_code(study, "study")
    with writing(engine, principal) as work:
        people = PeopleRepository(work.connection)
        person = _person(people, email)
        values = {
            "person_id": person.id,
            "kind": kind,
            "study": study or None,
            "title": title.strip(),
            "completed_on": completed_on,
            "expires_on": expires_on,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        training_id = people.add_training(values)
        work.audit(
            "centre.training.add",
            "training",
            training_id,
            chain=HUB_CHAIN,
            after={**values, "email": person.email},
        )
        record = people.training(training_id)
    assert record is not None
    return record


def expiring_training(
    engine: Engine, principal: Principal, *, on: date | None = None
) -> list[TrainingRecord]:
    """Training records still valid that expire within 30 days of ``on`` (today)."""
    require(principal, Action.HUB_MANAGE, Resource())
    day = on or today()
    with reading(engine, principal) as work:
        found = [
            t
            for t in PeopleRepository(work.connection).trainings()
            if t.completed_on <= day and rules.expiring(t.expires_on, day)
        ]
    return sorted(found, key=lambda t: (t.expires_on or day + timedelta(days=9999), t.email))


def set_study_training(
    engine: Engine,
    principal: Principal,
    *,
    study: str,
    requires_gcp: bool,
    requires_protocol: bool,
) -> StudyTrainingRecord:
    """Say what granting a role at ``study`` needs: a valid GCP certificate, the study's
    protocol training, both or neither."""
    require(principal, Action.HUB_MANAGE, Resource())
    study = check_code(study, "study")
    with writing(engine, principal) as work:
        people = PeopleRepository(work.connection)
        values = {
            "study": study,
            "requires_gcp": requires_gcp,
            "requires_protocol": requires_protocol,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        before = people.set_study_training(values)
        work.audit(
            "centre.study_training.set",
            "study",
            study,
            chain=HUB_CHAIN,
            before=None if before is None else _rule(before),
            after={"requires_gcp": requires_gcp, "requires_protocol": requires_protocol},
        )
        rule = people.study_training(study)
    assert rule is not None
    return rule


def _rule(rule: StudyTrainingRecord) -> dict[str, bool]:
    return {"requires_gcp": rule.requires_gcp, "requires_protocol": rule.requires_protocol}


def list_study_training(engine: Engine, principal: Principal) -> list[StudyTrainingRecord]:
    """Each study's training rule."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return PeopleRepository(work.connection).study_trainings()
