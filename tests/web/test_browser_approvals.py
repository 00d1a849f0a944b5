"""The approvals page in a real browser: a data steward decides queued analysis requests.

The node (uvicorn on loopback, from conftest's ``node_url``) keeps its queue in its
database; the requests are queued the way the federation node queues them, with
``DatabaseApprovals(engine).find_or_submit`` from this (another) process, and the decisions
are read back from the database, as the federation node reads them. No approvals file is
written. Expected words come from the i18n catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from web_client import EMAIL, PASSWORD

from consortia.auth.principal import Role
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals
from consortia.services import approvals, users
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

EN = CATALOGUES["en"]
STEWARD = "steward@node.example"
SURVIVAL = {"kind": "kaplan_meier", "table": "cart_efficacy", "time": "pfs_days", "event": "pd"}
REGRESSION = {
    "kind": "glm",
    "family": "binomial",
    "table": "cart_efficacy",
    "outcome": "response",
    "covariates": ["age", "ecog"],
}


@pytest.fixture
def engine(node_url: str, tmp_path: Path) -> Iterator[Any]:
    """This process's engine on the running node's database (the node runs in another)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def node_url(node_url: str, tmp_path: Path) -> str:
    """conftest's running node, with a node administrator."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        operator = users.cli_operator()
        users.create_user(engine, operator, email=STEWARD, name="Stew Ard", password=PASSWORD)
        users.grant_role(engine, operator, email=STEWARD, study="*", site="*", role=Role.NODE_ADMIN)
    finally:
        engine.dispose()
    return node_url


def _stored(engine: Any) -> list[Any]:
    return approvals.list_approvals(engine, users.cli_operator())


def _sign_in_and_open_the_queue(page: Page, node_url: str) -> None:
    page.goto("/login")
    page.get_by_label(EN["login.email"]).fill(STEWARD)
    page.get_by_label(EN["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=EN["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=EN["home.approvals_link"]).click()
    page.wait_for_url(f"{node_url}/approvals")
    assert page.locator("h1").inner_text() == EN["approvals.title"]


def test_a_steward_sees_a_queued_request_and_approves_it(
    page: Page, node_url: str, engine: Any, tmp_path: Path
) -> None:
    entry = DatabaseApprovals(engine).find_or_submit(REGRESSION, "lead-node")
    _sign_in_and_open_the_queue(page, node_url)
    request = page.locator(f"#approval-{entry.id}")
    assert request.locator("dd.requester").inner_text() == "lead-node"
    assert request.locator("dd.kind").inner_text() == "glm"
    assert request.locator("dd.table").inner_text() == "cart_efficacy"
    moment = entry.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert request.locator("time").get_attribute("datetime") == moment
    fields = request.locator("dl.fields")
    assert fields.locator("dt").all_inner_texts() == ["covariates", "family", "outcome"]
    assert fields.locator("dd").all_inner_texts() == ["age, ecog", "binomial", "response"]

    request.get_by_label(EN["approvals.reason_optional"]).fill("ethics approval E-2025-7")
    request.get_by_role("button", name=EN["approvals.approve"]).click()
    page.wait_for_url(f"{node_url}/approvals")
    page.locator(f"#decided-{entry.id}").wait_for()

    (stored,) = _stored(engine)
    assert stored.status is ApprovalStatus.APPROVED
    assert (stored.decided_by, stored.reason) == (STEWARD, "ethics approval E-2025-7")
    assert page.locator("#none-pending").inner_text() == EN["approvals.none_pending"]
    row = page.locator(f"#decided-{entry.id} td").all_inner_texts()
    assert EN["approval_status.approved"] in row
    assert STEWARD in row
    assert not list(tmp_path.rglob("*approval*"))  # the queue is the database, no file


def test_a_steward_denies_a_request_with_a_reason(page: Page, node_url: str, engine: Any) -> None:
    queue = DatabaseApprovals(engine)
    kept = queue.find_or_submit(SURVIVAL, "lead-node")
    refused = queue.find_or_submit(REGRESSION, "lead-node")
    _sign_in_and_open_the_queue(page, node_url)
    request = page.locator(f"#approval-{refused.id}")
    # the browser itself insists on a reason before sending a denial
    reason = request.get_by_label(EN["approvals.deny_reason"])
    request.get_by_role("button", name=EN["approvals.deny"]).click()
    assert reason.evaluate("field => field.validity.valueMissing") is True
    assert reason.evaluate("field => field === document.activeElement") is True
    request.get_by_label(EN["approvals.deny_reason"]).fill("covariates identify patients")
    request.get_by_role("button", name=EN["approvals.deny"]).click()
    page.wait_for_url(f"{node_url}/approvals")
    page.locator(f"#decided-{refused.id}").wait_for()

    statuses = {entry.id: entry for entry in _stored(engine)}
    assert statuses[refused.id].status is ApprovalStatus.DENIED
    assert statuses[refused.id].reason == "covariates identify patients"
    assert statuses[kept.id].status is ApprovalStatus.PENDING
    # the other request still waits, with its own forms
    assert page.locator(f"#approval-{kept.id}").is_visible()
    assert page.locator(f"#approval-{refused.id}").count() == 0
    row = page.locator(f"#decided-{refused.id} td").all_inner_texts()
    assert EN["approval_status.denied"] in row
    assert "covariates identify patients" in row


def test_a_person_without_the_action_sees_no_link_and_is_refused(page: Page, node_url: str) -> None:
    # Ana, conftest's coordinator of CART01 at SG01
    page.goto("/login")
    page.get_by_label(EN["login.email"]).fill(EMAIL)
    page.get_by_label(EN["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=EN["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    assert page.get_by_role("link", name=EN["home.approvals_link"]).count() == 0
    response = page.goto("/approvals")
    assert response is not None
    assert response.status == 403
    assert page.get_by_role("alert").inner_text() == EN["error.403"]
