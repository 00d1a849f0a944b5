"""Test support: a hub and member nodes as real apps (in-process ASGI), joined by
invitation, with the cart-lbcl study published at the hub, loaded at the members, and its
randomisation sealed at the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from consortia.app import create_app
from consortia.auth.principal import Grant, Principal, Role
from consortia.config import Settings
from consortia.domain.templates import template_text
from consortia.federation.hub import join_hub
from consortia.federation.signing import generate_key, save_key
from consortia.services import data_entry, hub_studies, randomisation, randomisation_hub, studies
from consortia.services import hub as hub_service
from consortia.services import subjects as subject_service
from consortia.services.common import cli_operator
from consortia.services.hub import HubIdentity
from consortia.services.unit_of_work import writing
from consortia.storage.audit import audit_event
from consortia.storage.db import make_engine
from consortia.storage.randomisation import SubjectRandomisationRepository
from consortia.storage.tables import subject

STUDY = "CART-LBCL"
SOURCE = template_text("cart-lbcl")
HUB_URL = "http://hub.test"
SEED = 20261207
SECRET = "test-secret-that-is-long-enough-for-production-0123456789"
SITES = {"sgh": "SG01", "shh": "SH01"}


@dataclass
class App:
    name: str
    app: FastAPI
    engine: sa.Engine


@dataclass
class Network:
    hub: App
    identity: HubIdentity
    members: dict[str, App] = field(default_factory=dict)

    def link(self, member: str) -> randomisation.HubLink:
        app = self.members[member].app
        link = randomisation.hub_link(app.state.node, "hub", httpx.ASGITransport(app=self.hub.app))
        assert link is not None
        return link

    def connect(self, member: str) -> None:
        """Let the member's API reach the hub's app in-process."""
        self.members[member].app.state.hub_transport = httpx.ASGITransport(app=self.hub.app)


def staff(site: str, *roles: Role, email: str = "staff@example.org") -> Principal:
    return Principal(
        9, email, email.split("@")[0], frozenset(Grant(STUDY, site, role) for role in roles)
    )


def _settings(url: str, name: str, directory: Path, node: dict[str, Any]) -> Settings:
    return Settings(
        database_url=url,
        node_name=name,
        node_url=f"http://{name}.test",
        node_dir=directory,
        environment="test",  # type: ignore[arg-type]
        secret_key=SECRET,  # type: ignore[arg-type]
        node=node,
    )


@contextmanager
def network(
    hub_url: str,
    member_url: Any,
    tmp_path: Path,
    *,
    seal: bool = True,
    members: tuple[str, ...] = tuple(SITES),
) -> Iterator[Network]:
    """A hub on ``hub_url`` and the members ``sgh`` and ``shh`` on ``member_url(path)``
    (migrated databases), joined, the study published and loaded, its lists sealed."""
    with ExitStack() as stack:
        hub_dir = tmp_path / "hub"
        hub_dir.mkdir()
        key = generate_key()
        save_key(key, hub_dir / "hub.pem")
        hub_app = create_app(
            _settings(hub_url, "hub", hub_dir, {"key_file": "hub.pem", "role": "hub"})
        )
        stack.callback(hub_app.state.engine.dispose)
        hub_engine = make_engine(hub_url)
        stack.callback(hub_engine.dispose)
        identity = HubIdentity("hub", HUB_URL, key)
        net = Network(App("hub", hub_app, hub_engine), identity)
        for name in members:
            directory = tmp_path / name
            directory.mkdir()
            member_key = generate_key()
            save_key(member_key, directory / f"{name}.pem")
            invitation, _ = hub_service.create_invitation(
                hub_engine, cli_operator(), identity, name
            )

            async def join(
                invitation: Any = invitation, member_key: Any = member_key, name: str = name
            ) -> Any:
                transport = httpx.ASGITransport(app=hub_app)
                async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
                    return await join_hub(
                        invitation,
                        member_key,
                        {
                            "name": name,
                            "url": f"http://{name}.test",
                            "institution": name,
                            "country": "SG",
                            "transport": "push",
                            "software_version": "test",
                            "protocol_version": "1",
                        },
                        client=client,
                    )

            # on a thread of its own: the caller may be running an event loop (Playwright)
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(asyncio.run, join()).result()
            url = member_url(directory / f"{name}.db")
            app = create_app(
                _settings(
                    url,
                    name,
                    directory,
                    {
                        "key_file": f"{name}.pem",
                        "hub": "hub",
                        "peers": [{"name": "hub", "url": HUB_URL, "public_key": answer.public_key}],
                    },
                )
            )
            stack.callback(app.state.engine.dispose)
            net.members[name] = App(name, app, app.state.engine)
        hub_studies.publish_study(
            hub_engine, cli_operator(), identity, SOURCE, {SITES[name]: name for name in members}
        )
        for member in net.members.values():
            studies.load_definition(member.engine, cli_operator(Role.STUDY_ADMIN), SOURCE)
        if seal:
            randomisation_hub.generate(
                hub_engine, cli_operator(Role.UNBLINDED_STATISTICIAN), STUDY, SEED
            )
        yield net


def ready_subject(
    member: App,
    subject_id: str,
    site: str,
    *,
    status: str = "primary_refractory",
    consent: bool = True,
    eligible: bool | None = True,
) -> None:
    """Enrol a subject and record consent and eligibility (the gates) and the factor."""
    who = staff(site, Role.COORDINATOR, Role.INVESTIGATOR)
    subject_service.enrol_subject(
        member.engine, who, STUDY, subject_service.SubjectInput(subject_id, site, None)
    )
    data_entry.save_form(
        member.engine,
        who,
        STUDY,
        subject_id,
        "screening",
        "consent",
        data_entry.FormSave(version=0, values={"consent_given": consent}),
    )
    values: dict[str, object] = {"disease_status": status}
    if eligible is not None:
        values["eligible"] = eligible
    data_entry.save_form(
        member.engine,
        who,
        STUDY,
        subject_id,
        "screening",
        "eligibility",
        data_entry.FormSave(version=0, values=values),
    )


def audit_actions(engine: sa.Engine, chain: str) -> list[tuple[str, str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_event.c.action, audit_event.c.entity_id, audit_event.c.reason)
            .where(audit_event.c.chain == chain)
            .order_by(audit_event.c.seq)
        )
        return [(row.action, row.entity_id, row.reason) for row in rows]


#: cart-lbcl's allocation codes of its arms
ARM_CODES = {"car_t": "A", "soc": "B"}


def record_allocations(engine: sa.Engine, allocations: dict[str, str]) -> None:
    """Record subjects' allocations (subject id -> arm) as :func:`randomisation.
    randomise_subject` does with its hub's answer, for a node without a hub: each row with
    its audit event, in one transaction."""
    operator = cli_operator(Role.COORDINATOR)
    with writing(engine, operator) as work:
        repository = SubjectRandomisationRepository(work.connection, operator)
        for number, (subject_id, arm) in enumerate(sorted(allocations.items()), 1):
            found = work.connection.execute(
                sa.select(subject.c.id, subject.c.site).where(
                    subject.c.study == STUDY, subject.c.subject_id == subject_id
                )
            ).one()
            code = ARM_CODES[arm]
            repository.add(
                {
                    "subject_pk": found.id,
                    "study": STUDY,
                    "site": found.site,
                    "subject_id": subject_id,
                    "number": number,
                    "arm": arm,
                    "code": code,
                    "levels": {"site": found.site},
                    "hub": "hub",
                    "hub_answer": "{}",
                    "randomised_at": datetime(2025, 2, 3, tzinfo=UTC),
                    "randomised_by": operator.email,
                }
            )
            work.audit(
                "subject.randomise",
                "subject",
                f"{STUDY}/{subject_id}",
                chain=STUDY,
                site=found.site,
                after={"number": number, "code": code},
            )
