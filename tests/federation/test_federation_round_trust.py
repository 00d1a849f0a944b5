"""The lead reads its members' keys once per round, not once per reply (a hub reads them
from its database): on SQLite and PostgreSQL, a GLM fit over three members looks the
members up once per round; a member removed at the hub between two rounds has its next
reply refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.exceptions import SignatureError
from consortia.federation.coordinator import Coordinator
from consortia.federation.hub import MemberTrust, fingerprint
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.storage.db import make_engine
from consortia.storage.hub import HubRepository, MemberRecord
from consortia.storage.migrations import upgrade

GLM = {
    "kind": "glm",
    "family": "binomial",
    "table": "trial",
    "outcome": "response",
    "covariates": ["age", "arm"],
}


@pytest.fixture
def hub_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def hub_lead(federation: Any, engine: sa.Engine) -> Coordinator:
    """The federation's lead, trusting the members the hub's database lists."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for name, runner in federation.runners.items():
            HubRepository(connection).add_member(
                MemberRecord(
                    name=name,
                    institution=name,
                    country="SG",
                    url="",
                    transport="push",
                    public_key=runner.public_key,
                    fingerprint=fingerprint(runner.public_key),
                    status="active",
                    software_version="test",
                    protocol_version="1",
                    joined_at=now,
                    last_seen_at=None,
                    removed_at=None,
                )
            )
    return Coordinator("lead", federation.coordinator.key, MemberTrust(engine))


def test_the_members_keys_are_read_once_per_round(
    make_federation: Any, hub_engine: sa.Engine
) -> None:
    federation = make_federation()
    lead = hub_lead(federation, hub_engine)
    lookups: list[str] = []

    @sa.event.listens_for(hub_engine, "before_cursor_execute")
    def _count(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM hub_member" in statement:
            lookups.append(statement)

    handles = [NodeHandle(name) for name in federation.runners]
    result = asyncio.run(lead.run_analysis(GLM, handles, InProcessTransport(federation.runners)))
    assert result.complete
    assert len(federation.runners) == 3
    assert result.rounds >= 3
    assert len(lookups) == result.rounds  # not rounds x members


class RemoveAfterFirstRound(InProcessTransport):
    """Removes ``member`` at the hub once every member has answered the first round."""

    def __init__(self, runners: Mapping[str, Any], engine: sa.Engine, member: str) -> None:
        super().__init__(runners)
        self.engine = engine
        self.member = member
        self.answers = 0

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        reply = await super().send(node, message)
        self.answers += 1
        if self.answers == len(self.runners):
            with self.engine.begin() as connection:
                HubRepository(connection).remove_member(self.member, datetime.now(UTC))
        return reply


def test_a_member_removed_between_rounds_is_refused_from_the_next_round(
    make_federation: Any, hub_engine: sa.Engine
) -> None:
    federation = make_federation()
    lead = hub_lead(federation, hub_engine)
    handles = [NodeHandle(name) for name in federation.runners]
    transport = RemoveAfterFirstRound(federation.runners, hub_engine, "nuh")
    with pytest.raises(SignatureError, match="sender 'nuh' is revoked"):
        asyncio.run(lead.run_analysis(GLM, handles, transport))
    assert transport.answers > len(federation.runners)  # it came to the second round
