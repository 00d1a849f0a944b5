"""What a series of releases reveals together, and one policy for every path.

The release ledger refuses a release whose rows (or a released group's rows) differ from
rows already released from the same study by 1 to 4 subjects (``differencing``), whoever
asked and by whichever path: the REST endpoint and a federated request alike. The node's
federation config (the [node] section of its settings) gives the policy the REST endpoint
applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from node_client import Node, SyncClient, running_node

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import build_node, node_config_from_settings
from consortia.federation.signing import (
    Peer,
    TrustStore,
    generate_key,
    public_key_b64,
    save_key,
)
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.services import analyses, data_entry, studies, subjects
from consortia.storage.audit import iter_events
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

STUDY = "CART-LBCL"
URL = f"/api/v1/studies/{STUDY}/analyses"
SEEDER = Principal(
    0,
    "seed@x",
    "seed",
    frozenset(Grant(STUDY, "*", role) for role in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
HIDDEN_AGE = 48  # the subject whose weight is missing: the attack recovers this age

Patient = tuple[str, int | None, str, float | None, str]  # site, age, sex, weight, ethnicity


@pytest.fixture(autouse=True)
def short_approval_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REST analysis under manual approval answers after 0.1 s, not 1 s: these tests are
    about what it answers, not how long it waits for the steward."""
    monkeypatch.setattr(analyses, "APPROVAL_WAIT", 0.1)


def patients() -> list[Patient]:
    """20 subjects with an age, 19 of them with a weight, and 5 with no demographics."""
    rows: list[Patient] = []
    for number in range(20):
        sex = "F" if number < 10 else "M"
        age = 55 + number if number != 12 else HIDDEN_AGE
        weight = None if number == 12 else 60.0 + number
        ethnicity = "chinese" if sex == "F" else "malay"
        rows.append(("SG01" if number % 4 else "SH01", age, sex, weight, ethnicity))
    rows[12] = (rows[12][0], HIDDEN_AGE, "M", None, "chinese")  # a man among the women
    rows += [("SG01", None, "M", None, "other")] * 5
    return rows


def seed(node: Node, rows: Sequence[Patient], *, start: int = 0, define: bool = True) -> None:
    if start == 0 and define:
        studies.load_definition(node.engine, SEEDER, template_text("cart-lbcl"))
    for number, (site, age, sex, weight, ethnicity) in enumerate(rows, start=start):
        subject_id = f"{site}-{number:03d}"
        subjects.enrol_subject(
            node.engine, SEEDER, STUDY, subjects.SubjectInput(subject_id, site, "QZX")
        )
        if age is None:
            continue
        values: dict[str, Any] = {"age": age, "sex": sex, "ethnicity": ethnicity}
        if weight is not None:
            values["weight_kg"] = weight
        if sex == "F" and age < 55:
            values["pregnant"] = False
        data_entry.save_form(
            node.engine,
            SEEDER,
            STUDY,
            subject_id,
            "screening",
            "demographics",
            data_entry.FormSave(version=0, values=values),
        )


def describe(variable: str) -> dict[str, Any]:
    return {"kind": "describe", "table": "edc", "variable": variable}


def glm(*covariates: str, outcome: str = "age") -> dict[str, Any]:
    return {"kind": "glm", "table": "edc", "outcome": outcome, "covariates": list(covariates)}


def statistician(node: Node, email: str = "stat@x.example", site: str = "*") -> SyncClient:
    return node.client(node.add_user(email, (STUDY, site, Role.STATISTICIAN)))


def assert_differencing(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert "differencing" in response.json()["detail"]
    assert str(HIDDEN_AGE) not in response.text


@pytest.fixture
def seeded(node: Node) -> Node:
    seed(node, patients())
    return node


# --------------------------------------------------------------------------- differencing


def test_three_releases_that_would_give_one_subjects_age_are_stopped_at_the_second(
    seeded: Node,
) -> None:
    """describe age (n=20), describe weight_kg (n=19) and glm age ~ weight_kg give the
    hidden subject's age as sum(age over 20) - sum(age over the 19): each count is >= 5."""
    client = statistician(seeded)
    ages = client.post(URL, json=describe("age"))
    assert ages.status_code == 200, ages.text
    assert ages.json()["estimates"]["n"] == 20
    assert_differencing(client.post(URL, json=describe("weight_kg")))
    assert_differencing(client.post(URL, json=glm("weight_kg")))
    with seeded.engine.connect() as connection:
        events = list(iter_events(connection, chain=STUDY))
    refused = [e for e in events if e.action == "federation.refused"]
    assert [e.after["rule"] for e in refused] == ["differencing", "differencing"]
    assert all(e.actor == "stat@x.example" for e in refused)
    assert all(e.after["released"] is None for e in refused)
    assert all(str(HIDDEN_AGE) not in e.after["message"] for e in refused)


def test_the_ledger_also_refuses_the_other_order_and_another_requester(seeded: Node) -> None:
    first = statistician(seeded)
    assert first.post(URL, json=glm("weight_kg")).status_code == 200
    second = statistician(seeded, "other@x.example")
    assert_differencing(second.post(URL, json=describe("age")))


def test_re_runs_of_one_analysis_and_its_model_rounds_pass(seeded: Node) -> None:
    client = statistician(seeded)
    for _ in range(2):
        assert client.post(URL, json=describe("age")).status_code == 200
    model = client.post(URL, json=glm("sex"))
    assert model.status_code == 200, model.text
    assert model.json()["rounds"] > 2  # every Newton round drew on the same rows


def test_a_group_that_differs_from_another_by_one_subject_is_refused(seeded: Node) -> None:
    """Women (10) and the Chinese (the 10 women and one man) differ by that man: the sums
    of age per level of sex and of ethnicity would give his age."""
    client = statistician(seeded)
    assert client.post(URL, json=glm("sex")).status_code == 200
    assert_differencing(client.post(URL, json=glm("ethnicity")))


def test_a_site_filter_that_leaves_out_a_few_subjects_is_refused(node: Node) -> None:
    rows = [("SG01", 40 + number, "M", 70.0, "malay") for number in range(20)]
    rows += [("SH01", 70 + number, "M", 70.0, "malay") for number in range(3)]
    seed(node, rows)
    everywhere = statistician(node)
    assert everywhere.post(URL, json=describe("age")).status_code == 200
    singapore = statistician(node, "sg@x.example", "SG01")
    assert_differencing(singapore.post(URL, json=describe("age")))


def test_subjects_captured_later_are_released_only_once_there_are_enough_of_them(
    seeded: Node,
) -> None:
    client = statistician(seeded)
    assert client.post(URL, json=describe("age")).status_code == 200
    newcomer: list[Patient] = [("SG01", 61, "M", 80.0, "malay")]
    seed(seeded, newcomer, start=100)
    assert_differencing(client.post(URL, json=describe("age")))  # one new subject
    seed(seeded, newcomer * 4, start=101)
    later = client.post(URL, json=describe("age"))  # five new subjects: not one person
    assert later.status_code == 200, later.text
    assert later.json()["estimates"]["n"] == 25


# --------------------------------------------------------------------------- one policy


def _node_settings(folder: Path, lead_key: Any, policy: dict[str, Any]) -> dict[str, Any]:
    """The settings of node sgh with a [node] section declaring the study's table; the study
    is defined first (a node checks its EDC tables when it starts)."""
    save_key(generate_key(), folder / "node.pem")
    section = {
        "key_file": "node.pem",
        "peers": [{"name": "lead", "public_key": public_key_b64(lead_key)}],
        "tables": {"edc": {"edc": STUDY}},
        "policy": policy,
        "witness_interval_seconds": 0,
    }
    return {"node_name": "sgh", "node_url": "http://sgh.test", "node_dir": folder, "node": section}


def _define_study(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        studies.load_definition(engine, SEEDER, template_text("cart-lbcl"))
    finally:
        engine.dispose()


def _federated(node: NodeRunner, lead_key: Any, request: dict[str, Any]) -> dict[str, Any]:
    trust = TrustStore([Peer(name=node.name, url=node.url, public_key=node.public_key)])
    lead = Coordinator("lead", lead_key, trust, round_timeout=10.0)
    return asyncio.run(
        lead.run_analysis(
            request, [NodeHandle(node.name, node.url)], InProcessTransport({node.name: node})
        )
    ).to_dict()


@contextmanager
def configured_node(
    database_url: str, folder: Path, policy: dict[str, Any]
) -> Iterator[tuple[Node, NodeRunner, Any]]:
    lead_key = generate_key()
    settings = _node_settings(folder, lead_key, policy)
    _define_study(database_url)
    with running_node(database_url, **settings) as node:
        seed(node, patients(), define=False)
        config = node_config_from_settings(node.settings)
        assert config is not None
        federation = build_node(config)  # another process of the node
        try:
            yield node, federation, lead_key
        finally:
            federation.close()


def test_a_stricter_node_policy_refuses_on_rest_and_federation_alike(
    database_url: str, tmp_path: Path
) -> None:
    with configured_node(database_url, tmp_path, {"min_model_rows": 50}) as (node, fed, key):
        response = statistician(node).post(URL, json=glm("sex"))
        assert response.status_code == 400, response.text
        assert "min_model_rows" in response.json()["detail"]
        with pytest.raises(AnalysisRefused) as refused:
            _federated(fed, key, glm("sex"))
        assert refused.value.rule == "min_model_rows"


def test_the_node_policy_s_columns_and_identifiers_bind_the_rest_endpoint(
    database_url: str, tmp_path: Path
) -> None:
    policy = {"tables": {"edc": {"columns": ["age", "sex"]}}, "identifier_columns": ["sex"]}
    with configured_node(database_url, tmp_path, policy) as (node, _, _key):
        client = statistician(node)
        weight = client.post(URL, json=describe("weight_kg"))
        assert weight.status_code == 400
        assert "column_not_allowed" in weight.json()["detail"]
        other = client.post(URL, json={**describe("age"), "table": "anything"})
        assert other.status_code == 400
        assert "table_not_allowed" in other.json()["detail"]
        identifier = client.post(URL, json=glm("sex"))
        assert identifier.status_code == 400
        assert "identifier_column" in identifier.json()["detail"]
        assert client.post(URL, json=describe("age")).status_code == 200


def test_rest_and_federated_releases_share_one_ledger(database_url: str, tmp_path: Path) -> None:
    with configured_node(database_url, tmp_path, {}) as (node, federation, key):
        assert statistician(node).post(URL, json=describe("age")).status_code == 200
        with pytest.raises(AnalysisRefused) as refused:
            _federated(federation, key, describe("weight_kg"))
        assert refused.value.rule == "differencing"
        assert str(HIDDEN_AGE) not in str(refused.value.refusals)


def test_manual_approval_in_the_node_policy_holds_rest_analyses_for_the_steward(
    database_url: str, tmp_path: Path
) -> None:
    settings = _node_settings(tmp_path, generate_key(), {"manual_approval": True})
    _define_study(database_url)
    # two processes of the node on one database: the person asks one, the steward another
    with (
        running_node(database_url, **settings) as node,
        running_node(database_url, **settings) as other_process,
    ):
        seed(node, patients(), define=False)
        client = statistician(node)
        waiting = client.post(URL, json=describe("age"))
        assert waiting.status_code != 200
        assert "approval" in waiting.json()["detail"]
        steward = other_process.client(
            other_process.add_user("steward@x.example", ("*", "*", Role.NODE_ADMIN))
        )
        (entry,) = steward.get("/api/v1/approvals").json()
        assert entry["requester"] == "user:stat@x.example"
        decided = steward.post(f"/api/v1/approvals/{entry['id']}/approve")
        assert decided.status_code == 200, decided.text
        approved = client.post(URL, json=describe("age"))
        assert approved.status_code == 200, approved.text
        other = statistician(node, "other@x.example").post(URL, json=describe("age"))
        assert other.status_code != 200  # approved for the person who asked, not for all
        assert "approval" in other.json()["detail"]


def test_a_federated_request_under_manual_approval_waits_in_the_database_and_no_file_is_written(
    database_url: str, tmp_path: Path
) -> None:
    from consortia.exceptions import NodeUnavailableError

    before = set(tmp_path.iterdir())
    request = {**describe("age"), "timeout": 0.5}  # the timeout is part of what is approved
    with configured_node(database_url, tmp_path, {"manual_approval": True}) as (node, fed, key):
        with pytest.raises(NodeUnavailableError, match="approval"):
            _federated(fed, key, request)
        steward = node.client(node.add_user("steward@x.example", ("*", "*", Role.NODE_ADMIN)))
        (entry,) = steward.get("/api/v1/approvals", params={"status": "pending"}).json()
        assert entry["requester"] == "lead"
        assert steward.post(f"/api/v1/approvals/{entry['id']}/approve").status_code == 200
        # the federation node (its own engine) reads the decision from the database
        result = _federated(fed, key, request)
        assert result["complete"] is True
    written = {path.name for path in set(tmp_path.iterdir()) - before}
    assert not {name for name in written if "approval" in name or name.endswith(".json")}, written
    assert not list(tmp_path.rglob("*approval*"))
