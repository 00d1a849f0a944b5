"""The approvals page: the node's data steward decides queued analysis requests."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Role
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals
from consortia.services import approvals, users
from consortia.storage.audit import iter_events
from consortia.web.i18n import CATALOGUES

EN = CATALOGUES["en"]
ZH = CATALOGUES["zh"]
STEWARD = "steward@node.example"
REQUEST: dict[str, Any] = {
    "kind": "glm",
    "family": "binomial",
    "table": "cart_efficacy",
    "outcome": "response",
    "covariates": ["age", "ecog"],
}


@pytest.fixture
def site(site: Site) -> Site:
    """conftest's node (with Ana, a coordinator), with a steward."""
    operator = users.cli_operator()
    users.create_user(site.engine, operator, email=STEWARD, name="Stew Ard", password=PASSWORD)
    users.grant_role(
        site.engine, operator, email=STEWARD, study="*", site="*", role=Role.NODE_ADMIN
    )
    return site


def _submit(site: Site, request: dict[str, Any] = REQUEST, requester: str = "lead-node") -> Any:
    """Queue a request in the node database, as the federation node does."""
    return DatabaseApprovals(site.engine).find_or_submit(request, requester)


def _stored(site: Site) -> list[Any]:
    return approvals.list_approvals(site.engine, users.cli_operator())


def _signed_in(site: Site, email: str = STEWARD) -> Browser:
    browser = site.browser()
    response = browser.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 303
    return browser


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


def _decisions(site: Site) -> list[tuple[str, str, str | None]]:
    with site.engine.connect() as connection:
        return [
            (e.action, e.entity_id, e.reason)
            for e in iter_events(connection, chain="node")
            if e.entity_type == "approval"
        ]


def test_home_links_to_the_queue_only_for_the_steward(site: Site) -> None:
    assert 'href="/approvals"' in _signed_in(site).get("/").text
    assert 'href="/approvals"' not in _signed_in(site, EMAIL).get("/").text


def test_the_queue_page_is_for_signed_in_stewards_only(site: Site) -> None:
    assert site.browser().get("/approvals").headers["location"] == "/login"
    refused = _signed_in(site, EMAIL).get("/approvals")
    assert refused.status_code == 403
    assert EN["error.403"] in refused.text


def test_a_pending_request_is_shown_readably(site: Site) -> None:
    entry = _submit(site)
    page = _signed_in(site).get("/approvals")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert f'id="approval-{entry.id}"' in page.text
    assert '<dd class="requester">lead-node</dd>' in page.text
    assert '<dd class="kind">glm</dd>' in page.text
    assert '<dd class="table">cart_efficacy</dd>' in page.text
    moment = entry.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'<time datetime="{moment}">{moment}</time>' in page.text
    fields = dict(re.findall(r"<dt><code>(.*?)</code></dt><dd>(.*?)</dd>", page.text))
    assert fields == {"covariates": "age, ecog", "family": "binomial", "outcome": "response"}
    assert f'action="/approvals/{entry.id}/approve"' in page.text
    assert f'action="/approvals/{entry.id}/deny"' in page.text
    assert EN["approvals.none_decided"] in page.text
    chinese = _signed_in(site).get("/approvals?lang=zh")
    for key in ("approvals.title", "approvals.requester", "approvals.approve", "approvals.deny"):
        assert ZH[key] in chinese.text


def test_request_values_are_escaped_never_markup(site: Site) -> None:
    _submit(site, {**REQUEST, "outcome": "<b>x</b>"}, "<i>lead</i>")
    page = _signed_in(site).get("/approvals")
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert "&lt;i&gt;lead&lt;/i&gt;" in page.text
    assert "<b>x</b>" not in page.text


def test_approving_without_the_csrf_token_is_refused(site: Site) -> None:
    entry = _submit(site)
    browser = _signed_in(site)
    response = browser.post(f"/approvals/{entry.id}/approve", data={"reason": ""})
    assert response.status_code == 403
    assert _stored(site)[0].status is ApprovalStatus.PENDING
    assert _decisions(site) == []


def test_approving_decides_audits_and_moves_the_request_down(site: Site) -> None:
    entry = _submit(site)
    browser = _signed_in(site)
    token = _csrf(browser.get("/approvals"))
    response = browser.post(
        f"/approvals/{entry.id}/approve", data={"csrf_token": token, "reason": "IRB ok"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/approvals"
    (stored,) = _stored(site)
    assert (stored.status, stored.decided_by, stored.reason) == (
        ApprovalStatus.APPROVED,
        STEWARD,
        "IRB ok",
    )
    assert _decisions(site) == [("approval.approve", entry.id, "IRB ok")]
    page = browser.get("/approvals")
    assert EN["approvals.none_pending"] in page.text
    row = re.search(rf'<tr id="decided-{entry.id}">(.*?)</tr>', page.text)
    assert row is not None
    assert EN["approval_status.approved"] in row.group(1)
    assert STEWARD in row.group(1)
    # deciding again (a second tab, say) is a conflict, and changes nothing
    again = browser.post(
        f"/approvals/{entry.id}/deny", data={"csrf_token": token, "reason": "second thoughts"}
    )
    assert again.status_code == 409
    assert _stored(site)[0].status is ApprovalStatus.APPROVED


def test_a_denial_without_a_reason_is_marked_at_the_field(site: Site) -> None:
    entry = _submit(site)
    browser = _signed_in(site)
    token = _csrf(browser.get("/approvals"))
    refused = browser.post(f"/approvals/{entry.id}/deny", data={"csrf_token": token, "reason": " "})
    assert refused.status_code == 422
    assert EN["approvals.reason_required"] in refused.text
    assert f'id="deny-reason-{entry.id}" name="reason"' in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert _stored(site)[0].status is ApprovalStatus.PENDING
    denied = browser.post(
        f"/approvals/{entry.id}/deny", data={"csrf_token": token, "reason": "identifiable"}
    )
    assert denied.status_code == 303
    (stored,) = _stored(site)
    assert (stored.status, stored.reason) == (ApprovalStatus.DENIED, "identifiable")
    assert _decisions(site) == [("approval.deny", entry.id, "identifiable")]


def test_an_unknown_request_is_a_404_page(site: Site) -> None:
    browser = _signed_in(site)
    token = _csrf(browser.get("/"))  # the sign-out form's; the empty queue page has no form
    response = browser.post("/approvals/0123456789abcdef/approve", data={"csrf_token": token})
    assert response.status_code == 404
    assert EN["error.404"] in response.text


def test_someone_else_cannot_decide_even_with_a_valid_form(site: Site) -> None:
    entry = _submit(site)
    ana = _signed_in(site, EMAIL)
    token = _csrf(ana.get("/"))
    response = ana.post(f"/approvals/{entry.id}/approve", data={"csrf_token": token})
    assert response.status_code == 403
    assert _stored(site)[0].status is ApprovalStatus.PENDING
