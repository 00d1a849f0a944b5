"""A signed but malicious lead cannot choose what a model round releases.

Every round of an iterative model is held, at the node, to what the node agreed for the
session in its levels round (stored in the node database, keyed by requester and session):
the request, the node's rows, levels with their counts, strata, and the levels of the
session's first model round. The attacks post hand-made signed tasks to the node's push
endpoint over HTTP (in-process), as a lead that skips or bends the protocol would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from consortia.federation.apps import create_node_app
from consortia.federation.coordinator import Coordinator
from consortia.federation.database_audit import DatabaseAuditSink
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import (
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    public_key_b64,
    sign_message,
)
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.storage.db import make_engine

VIP_INCOME = 987654.32  # the one VIP patient's income: must never leave the node
LEAD_KEY = generate_key()


def hospital(wards: list[str], *, seed: int = 7) -> Table:
    """One row per patient: ward, income (the VIP's is planted), age, follow-up, site."""
    rng = np.random.default_rng(seed)
    size = len(wards)
    income = np.round(rng.uniform(20_000, 90_000, size), 2)
    income[[index for index, ward in enumerate(wards) if ward == "VIP"]] = VIP_INCOME
    return Table(
        "hospital",
        {
            "ward": np.array(wards, dtype=object),
            "income": income,
            "age": rng.integers(30, 80, size).astype(float),
            "days": rng.integers(10, 900, size).astype(float),
            "died": (np.arange(size) % 2).astype(float),
            "site": np.array(["north", "south", "east"] * (size // 3) + ["north"] * (size % 3)),
        },
        {
            "ward": ColumnType.TEXT,
            "income": ColumnType.DECIMAL,
            "age": ColumnType.INTEGER,
            "days": ColumnType.INTEGER,
            "died": ColumnType.BOOLEAN,
            "site": ColumnType.TEXT,
        },
    )


WITH_VIP = ["A"] * 16 + ["B"] * 13 + ["VIP"]
WITHOUT_VIP = ["A"] * 16 + ["B"] * 14
GLM_WARD = {"kind": "glm", "table": "hospital", "outcome": "income", "covariates": ["ward"]}
COX = {
    "kind": "cox",
    "table": "hospital",
    "time": "days",
    "event": "died",
    "covariates": ["age"],
    "strata": ["site"],
}


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    yield engine
    engine.dispose()


NodeFactory = Callable[[Table], NodeRunner]


@pytest.fixture
def make_node(engine: sa.Engine) -> NodeFactory:
    """A node on the test database; each call is another process serving the same node."""

    def build(table: Table) -> NodeRunner:
        lead = Peer(name="lead", url="http://lead.test", public_key=public_key_b64(LEAD_KEY))
        return NodeRunner(
            "sgh",
            generate_key(),
            TrustStore([lead]),
            {table.name: table},
            audit=DatabaseAuditSink(engine),
            url="http://sgh.test",
        )

    return build


def task(
    request: dict[str, Any], payload: dict[str, Any], session: str, round_number: int = 1
) -> dict[str, Any]:
    body = AnalysisTask(
        task_id=new_id(),
        session=session,
        round=round_number,
        to="sgh",
        request=request,
        payload=payload,
    ).model_dump(mode="json")
    return sign_message(body, LEAD_KEY, "lead")


def post(node: NodeRunner, message: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """POST one signed task to the node's push endpoint; the verified reply and its text."""
    lead_view = Verifier(TrustStore([Peer(name=node.name, public_key=node.public_key)]))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_node_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            return await client.post("/federation/v1/analyze", json=message)

    response = asyncio.run(main())
    assert response.status_code == 200
    return lead_view.verify(response.json())[1], response.text


def audit_text(engine: sa.Engine) -> str:
    return json.dumps(DatabaseAuditSink(engine).events)


def levels_round(request: dict[str, Any], session: str) -> dict[str, Any]:
    return task(request, {"step": "levels"}, session)


def model_round(
    request: dict[str, Any], session: str, levels: dict[str, Any], beta: list[float] | None = None
) -> dict[str, Any]:
    payload = {"step": "round", "levels": levels, "beta": beta or []}
    return task(request, payload, session, 2)


def assert_refused(reply: dict[str, Any], rule: str) -> None:
    assert (reply["status"], reply["rule"], reply["aggregates"]) == ("refused", rule, None)


# --------------------------------------------------------------------------- the attack


def test_a_glm_round_with_levels_the_node_never_agreed_is_refused_and_nothing_leaks(
    make_node: NodeFactory, engine: sa.Engine
) -> None:
    """The attack: skip the levels round and send ward levels with a one-patient level.

    Before the fix the node answered X'WX diagonal [30, 13, 1] and an X'Wz whose VIP entry
    was that patient's exact income.
    """
    node = make_node(hospital(WITH_VIP))
    session = new_id()
    reply, text = post(node, model_round(GLM_WARD, session, {"ward": ["A", "B", "VIP"]}))
    assert_refused(reply, "session_not_agreed")
    assert str(VIP_INCOME) not in text
    assert str(VIP_INCOME) not in audit_text(engine)
    (event,) = DatabaseAuditSink(engine).events
    assert (event["decision"], event["rule"], event["released"]) == (
        "refused",
        "session_not_agreed",
        None,
    )


def test_the_levels_round_refuses_the_small_level_and_a_later_round_stays_refused(
    make_node: NodeFactory, engine: sa.Engine
) -> None:
    node = make_node(hospital(WITH_VIP))
    session = new_id()
    reply, _ = post(node, levels_round(GLM_WARD, session))
    assert_refused(reply, "min_cell_count")
    reply, _ = post(node, model_round(GLM_WARD, session, {"ward": ["A", "B", "VIP"]}))
    assert_refused(reply, "session_not_agreed")
    # Nor may the lead leave the small level out: the node's rows include it.
    reply, text = post(node, model_round(GLM_WARD, session, {"ward": ["A", "B"]}))
    assert_refused(reply, "session_not_agreed")
    assert str(VIP_INCOME) not in text + audit_text(engine)


def test_a_numeric_covariate_made_categorical_is_refused_at_its_level_counts(
    make_node: NodeFactory,
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    request = {**GLM_WARD, "covariates": ["ward", "age"], "categorical": ["age"]}
    reply, _ = post(node, levels_round(request, new_id()))
    assert_refused(reply, "min_cell_count")


@pytest.mark.parametrize(
    "levels",
    [
        {"ward": ["A", "B", "C"]},  # another set than the first model round's
        {"ward": ["A"]},  # one of the node's levels left out
        {"ward": ["B", "A"]},  # another reference level than the agreed order
        {"ward": ["A", "B"], "age": ["30", "31"]},  # a numeric covariate dummy-coded
        {},
    ],
)
def test_a_later_round_must_carry_the_levels_of_the_first_model_round(
    make_node: NodeFactory, levels: dict[str, Any]
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    request = {**GLM_WARD, "covariates": ["ward", "age"]}
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    first, _ = post(node, model_round(request, session, {"ward": ["A", "B"]}))
    assert first["status"] == "ok"
    reply, _ = post(node, model_round(request, session, levels, beta=[1.0, 2.0, 3.0]))
    assert_refused(reply, "session_mismatch")


def test_a_level_only_another_node_has_is_accepted_as_an_empty_column(
    make_node: NodeFactory,
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    session = new_id()
    assert post(node, levels_round(GLM_WARD, session))[0]["status"] == "ok"
    reply, _ = post(node, model_round(GLM_WARD, session, {"ward": ["A", "B", "C"]}))
    assert reply["status"] == "ok"


@pytest.mark.parametrize(
    "changed",
    [
        {"covariates": ["ward", "age"]},
        {"outcome": "age"},
        {"family": "poisson", "outcome": "age"},
    ],
)
def test_a_round_whose_request_differs_from_the_agreed_one_is_refused(
    make_node: NodeFactory, changed: dict[str, Any]
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    session = new_id()
    assert post(node, levels_round(GLM_WARD, session))[0]["status"] == "ok"
    reply, _ = post(node, model_round({**GLM_WARD, **changed}, session, {"ward": ["A", "B"]}))
    assert_refused(reply, "session_mismatch")


def test_the_agreement_is_in_the_database_so_every_process_holds_rounds_to_it(
    make_node: NodeFactory,
) -> None:
    first, second = make_node(hospital(WITHOUT_VIP)), make_node(hospital(WITHOUT_VIP))
    session = new_id()
    assert post(first, levels_round(GLM_WARD, session))[0]["status"] == "ok"
    assert post(second, model_round(GLM_WARD, session, {"ward": ["A", "B"]}))[0]["status"] == "ok"
    reply, _ = post(first, model_round(GLM_WARD, session, {"ward": ["A", "B", "C"]}))
    assert_refused(reply, "session_mismatch")
    # A process whose table lost a row since the session was agreed refuses the round.
    shrunk = make_node(hospital(WITHOUT_VIP[:-1]))
    reply, _ = post(shrunk, model_round(GLM_WARD, session, {"ward": ["A", "B"]}))
    assert_refused(reply, "session_mismatch")
    # Another requester cannot use the session: it is keyed by requester too.
    mallory = generate_key()
    second.trust.add(Peer(name="mallory", public_key=public_key_b64(mallory)))
    body = dict(model_round(GLM_WARD, session, {"ward": ["A", "B"]})["body"])
    reply, _ = post(second, sign_message(body, mallory, "mallory"))
    assert_refused(reply, "session_not_agreed")


def test_an_honest_glm_still_runs_and_its_rounds_all_pass(make_node: NodeFactory) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    trust = TrustStore([Peer(name="sgh", url=node.url, public_key=node.public_key)])
    lead = Coordinator("lead", LEAD_KEY, trust, round_timeout=10.0)
    result = asyncio.run(
        lead.run_analysis(
            {**GLM_WARD, "covariates": ["ward", "age"]},
            [NodeHandle("sgh", node.url)],
            InProcessTransport({"sgh": node}),
        )
    ).to_dict()
    assert result["complete"] is True
    assert result["rounds"] > 2


# --------------------------------------------------------------------------- cox


def test_cox_strata_with_few_rows_are_refused_and_rounds_need_the_agreement(
    make_node: NodeFactory, engine: sa.Engine
) -> None:
    table = hospital(WITHOUT_VIP)
    sites = table.column("site").copy()
    sites[:3] = "tiny"  # a stratum of three patients
    node = make_node(Table("hospital", {**table.columns, "site": sites}, table.types))
    session = new_id()
    reply, _ = post(node, levels_round(COX, session))
    assert_refused(reply, "min_cell_count")
    assert "rows per stratum" in reply["message"]
    reply, _ = post(node, model_round(COX, session, {}, beta=[0.0]))
    assert_refused(reply, "session_not_agreed")


@pytest.mark.parametrize(
    "changed",
    [{"strata": []}, {"strata": ["site", "ward"]}, {"covariates": ["age", "income"]}],
)
def test_a_cox_round_with_other_strata_or_covariates_than_agreed_is_refused(
    make_node: NodeFactory, changed: dict[str, Any]
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    session = new_id()
    assert post(node, levels_round(COX, session))[0]["status"] == "ok"
    assert post(node, model_round(COX, session, {}, beta=[0.0]))[0]["status"] == "ok"
    request = {**COX, **changed}
    beta = [0.0] * len(request["covariates"])
    reply, _ = post(node, model_round(request, session, {}, beta=beta))
    assert_refused(reply, "session_mismatch")


def test_a_cox_round_may_not_bring_levels_for_a_numeric_covariate(
    make_node: NodeFactory,
) -> None:
    node = make_node(hospital(WITHOUT_VIP))
    session = new_id()
    assert post(node, levels_round(COX, session))[0]["status"] == "ok"
    reply, _ = post(node, model_round(COX, session, {"age": ["30", "40"]}, beta=[0.0]))
    assert_refused(reply, "session_mismatch")


# --------------------------------------------------------------------------- coefficients


def _ages(table: Table) -> Table:
    """The same patients with distinct ages 30..59."""
    return Table(
        table.name, {**table.columns, "age": np.arange(30.0, 30.0 + table.n_rows)}, table.types
    )


def test_coefficients_that_isolate_one_patient_are_refused(make_node: NodeFactory) -> None:
    """beta = (-50·48, 50) gives every patient but the one aged 48 a weight of about e^-50:
    X'WX and X'Wz would be that patient's row alone."""
    node = make_node(_ages(hospital(WITHOUT_VIP)))
    request = {
        "kind": "glm",
        "family": "binomial",
        "table": "hospital",
        "outcome": "died",
        "covariates": ["age"],
    }
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    assert post(node, model_round(request, session, {}))[0]["status"] == "ok"
    honest, _ = post(node, model_round(request, session, {}, beta=[0.5, -0.01]))
    assert honest["status"] == "ok"
    reply, _ = post(node, model_round(request, session, {}, beta=[-50.0 * 48, 50.0]))
    assert_refused(reply, "weight_concentration")
    cox = {**COX, "strata": []}
    other = new_id()
    assert post(node, levels_round(cox, other))[0]["status"] == "ok"
    reply, _ = post(node, model_round(cox, other, {}, beta=[50.0]))
    assert_refused(reply, "weight_concentration")


def test_unstratified_cox_time_sums_of_few_subjects_are_refused(
    make_node: NodeFactory, engine: sa.Engine
) -> None:
    """Per-time sums of x over a 7-day bin holding one subject would be that subject's x."""
    node = make_node(hospital(WITHOUT_VIP))
    request = {**COX, "covariates": ["income"], "strata": []}
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    reply, text = post(node, model_round(request, session, {}, beta=[0.0]))
    assert_refused(reply, "min_cell_count")
    assert "rows per released time" in reply["message"]
    incomes = [f"{value:.2f}" for value in hospital(WITHOUT_VIP).column("income")]
    trail = audit_text(engine)
    assert not [value for value in incomes if value in text or value in trail]


def test_unstratified_cox_with_one_censoring_at_a_released_time_is_refused(
    make_node: NodeFactory,
) -> None:
    """Rows (6) and events (5) at a released time are each ≥ 5, and so are the risk sets
    (30, 24, 12), but rows − events is the one patient censored in that week."""
    base = hospital(WITHOUT_VIP)
    days = np.array([70.0] * 6 + [140.0] * 12 + [210.0] * 12)
    died = np.array([1.0] * 5 + [0.0] + [1.0] * 5 + [0.0] * 7 + [0.0] * 12)
    table = Table("hospital", {**base.columns, "days": days, "died": died}, dict(base.types))
    node = make_node(table)
    request = {**COX, "strata": []}
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    reply, _ = post(node, model_round(request, session, {}, beta=[0.0]))
    assert_refused(reply, "min_cell_count")
    assert "censored per released time" in reply["message"]


def test_a_glm_whose_x_t_x_holds_one_patient_with_two_levels_is_refused(
    make_node: NodeFactory,
) -> None:
    """Every level has ≥ 5 rows, but X'X's entry (ward B, sex M) is 13 of ward B's 14 rows:
    the lead subtracts it from the diagonal to find the one woman of ward B."""
    base = hospital(WITHOUT_VIP)  # 16 in ward A, 14 in ward B
    sex = np.array(["F"] * 10 + ["M"] * 6 + ["F"] + ["M"] * 13, dtype=object)
    table = Table("hospital", {**base.columns, "sex": sex}, {**base.types, "sex": ColumnType.TEXT})
    node = make_node(table)
    request = {**GLM_WARD, "covariates": ["ward", "sex"]}
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    levels = {"ward": ["A", "B"], "sex": ["F", "M"]}
    reply, _ = post(node, model_round(request, session, levels))
    assert_refused(reply, "min_cell_count")
    assert "rows per pair of levels of" in reply["message"]


def test_cox_time_sums_are_scaled_by_the_mean_not_by_one_patients_largest_value(
    make_node: NodeFactory,
) -> None:
    table = _ages(hospital(WITHOUT_VIP))
    node = make_node(table)
    request = {**COX, "strata": [], "time_bin": 1000}  # one released time: all 30 patients
    session = new_id()
    assert post(node, levels_round(request, session))[0]["status"] == "ok"
    reply, _ = post(node, model_round(request, session, {}, beta=[0.01]))
    assert reply["status"] == "ok"
    shift = reply["aggregates"]["shift"]
    assert shift == pytest.approx(0.01 * float(table.column("age").mean()), rel=1e-12)
    assert shift != pytest.approx(0.01 * float(table.column("age").max()))


def test_a_meta_analysis_s_local_fit_counts_its_levels(make_node: NodeFactory) -> None:
    """A local fit's coefficient of the VIP level would be the VIP's income minus the rest."""
    node = make_node(hospital(WITH_VIP))
    request = {
        "kind": "meta",
        "table": "hospital",
        "term": "ward[T.VIP]",
        "model": {"kind": "glm", "outcome": "income", "covariates": ["ward"]},
    }
    reply, text = post(node, task(request, {}, new_id()))
    assert_refused(reply, "min_cell_count")
    assert "rows per level of ward" in reply["message"]
    assert str(VIP_INCOME) not in text
