"""Central randomisation across a hub and two members, as real apps over in-process HTTP,
with the hub on SQLite and on PostgreSQL: a subject is randomised once its gates hold,
never twice, by a signed request carrying only study, site, subject and factor levels;
parallel requests from two members never share an allocation nor break minimisation's
order; an unreachable hub leaves nothing half-done; the sealed list is read and exported
only by the unblinded statistician, with an audited reason."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from consortia.auth.principal import Role
from consortia.domain.randomization import PriorAllocation, randomiser_for, stratum_text
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import (
    ConflictError,
    NodeUnavailableError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.federation.protocol import canonical_json
from consortia.federation.randomisation import RANDOMISE_PATH, randomise_body
from consortia.federation.signing import generate_key, sign_message
from consortia.services import randomisation, randomisation_hub
from consortia.services.common import cli_operator
from consortia.storage.randomisation import hub_allocation, subject_randomisation
from randomisation_network import (
    SEED,
    SOURCE,
    STUDY,
    Network,
    audit_actions,
    network,
    ready_subject,
    staff,
)

COORDINATOR_SG = staff("SG01", Role.COORDINATOR, email="coord@sg.example")
COORDINATOR_SH = staff("SH01", Role.COORDINATOR, email="coord@sh.example")
UNBLINDED = cli_operator(Role.UNBLINDED_STATISTICIAN)


@pytest.fixture
def net(
    migrated_database_url: str, migrated_sqlite: Callable[[Path], str], tmp_path: Path
) -> Iterator[Network]:
    with network(migrated_database_url, migrated_sqlite, tmp_path) as built:
        yield built


def hub_rows(net: Network) -> list[Any]:
    with net.hub.engine.connect() as connection:
        return list(connection.execute(sa.select(hub_allocation).order_by(hub_allocation.c.number)))


def member_rows(net: Network, member: str) -> list[Any]:
    with net.members[member].engine.connect() as connection:
        return list(connection.execute(sa.select(subject_randomisation)))


def test_a_subject_is_randomised_once_its_gates_hold_never_twice_and_both_sides_audit_it(
    net: Network,
) -> None:
    _gates_must_hold(net)
    _first_allocation(net)
    _never_twice(net)


def _first_allocation(net: Network) -> None:
    sgh = net.members["sgh"]
    ready_subject(sgh, "SG01-001", "SG01", status="early_relapse")
    view = randomisation.randomise_subject(
        sgh.engine, COORDINATOR_SG, STUDY, "SG01-001", net.link("sgh")
    )
    # the coordinator is blind: the allocation code, not the arm
    assert view.arm is None
    assert view.code in ("A", "B")
    assert view.number == 1
    [row] = hub_rows(net)
    assert (row.subject, row.site, row.member, row.number, row.position) == (
        "SG01-001",
        "SG01",
        "sgh",
        1,
        1,
    )
    stratum = stratum_text((("site", "SG01"), ("eligibility.disease_status", "early_relapse")))
    assert row.stratum == stratum
    assert json.loads(row.levels) == {
        "eligibility.disease_status": "early_relapse",
        "site": "SG01",
    }
    # the first entry of the stratum's sealed list, as the seed derives it
    randomiser = randomiser_for(load_study_text(SOURCE), SEED)
    expected = randomiser.next_allocation(
        {"site": "SG01", "eligibility.disease_status": "early_relapse"}, []
    )
    assert row.arm == expected.arm
    [kept] = member_rows(net, "sgh")
    assert (kept.arm, kept.number, kept.hub) == (expected.arm, 1, "hub")
    assert json.loads(kept.hub_answer)["envelope"]["sender"] == "hub"
    assert view.code == {"car_t": "A", "soc": "B"}[expected.arm]
    # audited at both ends, by number and code, never by arm
    hub_events = audit_actions(net.hub.engine, "hub")
    assert ("hub.randomisation.allocate", f"{STUDY}/SG01-001", None) in hub_events
    node_events = audit_actions(sgh.engine, STUDY)
    assert ("subject.randomise", f"{STUDY}/SG01-001", None) in node_events
    # the unblinded statistician at the node sees the arm
    unblinded = staff("*", Role.UNBLINDED_STATISTICIAN)
    assert randomisation.get_allocation(sgh.engine, unblinded, STUDY, "SG01-001").arm == (
        expected.arm
    )


def test_the_request_carries_only_study_site_subject_and_levels() -> None:
    body = randomise_body("S", "SG01", "SG01-001", {"site": "SG01", "e.d": "x"})
    assert set(body) == {"type", "study", "site", "subject", "levels"}


def _gates_must_hold(net: Network) -> None:
    sgh = net.members["sgh"]
    ready_subject(sgh, "SG01-002", "SG01", consent=False, eligible=None)
    with pytest.raises(ValidationError) as refused:
        randomisation.randomise_subject(
            sgh.engine, COORDINATOR_SG, STUDY, "SG01-002", net.link("sgh")
        )
    assert {p.path for p in refused.value.problems} == {
        "consent.consent_given",
        "eligibility.eligible",
    }
    assert hub_rows(net) == []
    assert member_rows(net, "sgh") == []


def _never_twice(net: Network) -> None:
    sgh = net.members["sgh"]
    ready_subject(sgh, "SG01-003", "SG01")
    view = randomisation.randomise_subject(
        sgh.engine, COORDINATOR_SG, STUDY, "SG01-003", net.link("sgh")
    )
    with pytest.raises(ConflictError, match="randomised already"):
        randomisation.randomise_subject(
            sgh.engine, COORDINATOR_SG, STUDY, "SG01-003", net.link("sgh")
        )
    # a retry straight to the hub (an answer lost on the way) gets the same allocation
    before = hub_rows(net)
    [first] = [row for row in before if row.subject == "SG01-003"]
    answer = signed_request(net, "sgh", randomise_body(STUDY, "SG01", "SG01-003", LEVELS_SG))
    assert answer.status_code == 200
    body = answer.json()["body"]
    assert body["repeat"] is True
    assert body["number"] == view.number == first.number
    assert body["arm"] == first.arm
    assert len(hub_rows(net)) == len(before)


LEVELS_SG = {"site": "SG01", "eligibility.disease_status": "primary_refractory"}


def signed_request(
    net: Network, sender: str, body: dict[str, Any], key: Any = None
) -> httpx.Response:
    key = key or net.members[sender].app.state.node.key
    message = sign_message(body, key, sender)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=net.hub.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            return await client.post(RANDOMISE_PATH, content=canonical_json(message))

    return asyncio.run(run())


def test_nothing_is_half_done_when_the_hub_refuses_or_cannot_be_reached(net: Network) -> None:
    _the_hub_refuses_an_unsigned_foreign_or_misdirected_request(net)
    _an_unreachable_hub_gives_a_clear_error_and_nothing_is_recorded(net)


def _the_hub_refuses_an_unsigned_foreign_or_misdirected_request(net: Network) -> None:
    body = randomise_body(STUDY, "SG01", "SG01-009", LEVELS_SG)
    forged = signed_request(net, "sgh", body, key=generate_key())
    assert forged.status_code == 401
    # shh may not randomise at sgh's site
    wrong_site = signed_request(net, "shh", body)
    assert wrong_site.status_code == 404
    assert "not hosted by shh" in wrong_site.json()["detail"]
    extra = {**body, "birth_date": "1970-01-01"}  # no other patient data is taken
    assert signed_request(net, "sgh", extra).status_code == 401
    assert hub_rows(net) == []


class Unreachable(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


def _an_unreachable_hub_gives_a_clear_error_and_nothing_is_recorded(net: Network) -> None:
    sgh = net.members["sgh"]
    ready_subject(sgh, "SG01-004", "SG01")
    before = audit_actions(sgh.engine, STUDY)
    link = net.link("sgh")
    down = randomisation.HubLink(
        link.node, link.key, link.hub, link.url, link.verifier, Unreachable()
    )
    with pytest.raises(NodeUnavailableError, match=r"cannot be reached.*nothing was recorded"):
        randomisation.randomise_subject(sgh.engine, COORDINATOR_SG, STUDY, "SG01-004", down)
    assert member_rows(net, "sgh") == []
    assert hub_rows(net) == []
    assert audit_actions(sgh.engine, STUDY) == before
    # when the hub is back, the subject is randomised normally
    randomisation.randomise_subject(sgh.engine, COORDINATOR_SG, STUDY, "SG01-004", net.link("sgh"))
    assert len(member_rows(net, "sgh")) == 1


def _randomise_in_parallel(net: Network, per_member: int) -> list[BaseException]:
    people = {
        "sgh": [(f"SG01-{i:03d}", "SG01", COORDINATOR_SG) for i in range(per_member)],
        "shh": [(f"SH01-{i:03d}", "SH01", COORDINATOR_SH) for i in range(per_member)],
    }
    for member, subjects in people.items():
        for index, (subject_id, site, _) in enumerate(subjects):
            status = ("primary_refractory", "early_relapse")[index % 2]
            ready_subject(net.members[member], subject_id, site, status=status)
    errors: list[BaseException] = []
    start = threading.Barrier(2 * per_member)

    def one(member: str, subject_id: str, who: Any) -> None:
        try:
            link = net.link(member)
            start.wait()
            randomisation.randomise_subject(
                net.members[member].engine, who, STUDY, subject_id, link
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=one, args=(member, subject_id, who))
        for member, subjects in people.items()
        for subject_id, _, who in subjects
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_parallel_requests_from_two_members_never_share_an_allocation(net: Network) -> None:
    per_member = 8
    assert _randomise_in_parallel(net, per_member) == []
    rows = hub_rows(net)
    assert [row.number for row in rows] == list(range(1, 2 * per_member + 1))
    assert len({row.subject for row in rows}) == 2 * per_member
    # each stratum's entries are handed out once, in order, and the arm is the list's
    sealed = randomisation_hub.read_list(net.hub.engine, UNBLINDED, STUDY)
    listed = {(e.stratum, e.position): e.arm for e in sealed.entries}
    by_stratum: dict[str, list[int]] = {}
    for row in rows:
        by_stratum.setdefault(row.stratum, []).append(row.position)
        assert listed[(row.stratum, row.position)] == row.arm
    for positions in by_stratum.values():
        assert positions == list(range(1, len(positions) + 1))
    # both members recorded exactly what the hub allocated
    kept = {r.subject_id: (r.number, r.arm) for m in ("sgh", "shh") for r in member_rows(net, m)}
    assert kept == {row.subject: (row.number, row.arm) for row in rows}


MINIMISATION = SOURCE.replace(
    """  method: permuted_blocks
  block_sizes: [4, 6]
  strata: [site, eligibility.disease_status]
  blocks_per_stratum: 30
""",
    """  method: minimisation
  factors:
    - {factor: site, weight: 1}
    - {factor: eligibility.disease_status, weight: 2}
""",
)


@pytest.fixture
def minimisation_net(
    migrated_database_url: str,
    migrated_sqlite: Callable[[Path], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Network]:
    assert MINIMISATION != SOURCE
    import randomisation_network

    monkeypatch.setattr(randomisation_network, "SOURCE", MINIMISATION)
    with network(migrated_database_url, migrated_sqlite, tmp_path) as built:
        yield built


def test_parallel_minimisation_reads_every_earlier_allocation_across_sites(
    minimisation_net: Network,
) -> None:
    net = minimisation_net
    per_member = 6
    assert _randomise_in_parallel(net, per_member) == []
    rows = hub_rows(net)
    assert [row.number for row in rows] == list(range(1, 2 * per_member + 1))
    # replaying the allocations in their order through the seeded algorithm gives the same
    # arms: each one was chosen from every allocation before it, whichever site made it
    randomiser = randomiser_for(load_study_text(MINIMISATION), SEED)
    history: list[PriorAllocation] = []
    for row in rows:
        levels = json.loads(row.levels)
        assert randomiser.next_allocation(levels, history).arm == row.arm
        history.append(PriorAllocation(levels, row.arm))
    assert Counter(row.arm for row in rows).keys() <= {"car_t", "soc"}


def test_only_the_unblinded_statistician_reads_or_exports_the_list_generated_once(
    net: Network,
) -> None:
    _generated_once_and_reproducible(net)
    for role in (Role.COORDINATOR, Role.STATISTICIAN, Role.INVESTIGATOR, Role.STUDY_ADMIN):
        with pytest.raises(PermissionDeniedError):
            randomisation_hub.read_list(net.hub.engine, staff("*", role), STUDY)
        with pytest.raises(PermissionDeniedError):
            randomisation_hub.export_list(net.hub.engine, staff("*", role), STUDY, "TMF filing")
    with pytest.raises(ValidationError, match="state why"):
        randomisation_hub.export_list(net.hub.engine, UNBLINDED, STUDY, " ")
    text = randomisation_hub.export_list(net.hub.engine, UNBLINDED, STUDY, "TMF filing at lock")
    lines = text.splitlines()
    assert lines[0] == f"# study,{STUDY},method,permuted_blocks,seed,{SEED}"
    assert len(lines) == 3 + len(
        randomisation_hub.read_list(net.hub.engine, UNBLINDED, STUDY).entries
    )
    events = audit_actions(net.hub.engine, "hub")
    assert ("hub.randomisation.export", STUDY, "TMF filing at lock") in events
    # the seed never enters the audit trail (only its hash)
    with net.hub.engine.connect() as connection:
        trail = " ".join(
            str(v) for row in connection.execute(sa.text("SELECT * FROM audit_event")) for v in row
        )
    assert str(SEED) not in trail


def _generated_once_and_reproducible(net: Network) -> None:
    with pytest.raises(ConflictError, match="never generated again"):
        randomisation_hub.generate(net.hub.engine, UNBLINDED, STUDY, SEED + 1)
    sealed = randomisation_hub.read_list(net.hub.engine, UNBLINDED, STUDY)
    randomiser = randomiser_for(load_study_text(SOURCE), SEED)
    assert len({e.stratum for e in sealed.entries}) == 4
    for stratum_key in {e.stratum for e in sealed.entries}:
        stratum = tuple(tuple(pair) for pair in json.loads(stratum_key))
        expected = [a.arm for a in randomiser.stratum_list(stratum)]  # type: ignore[attr-defined]
        assert [e.arm for e in sealed.entries if e.stratum == stratum_key] == expected
