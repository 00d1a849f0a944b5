"""The innovation centre's REST API at a hub, in-process over HTTP, on SQLite and
PostgreSQL: partners, agreements with a document (kept and served with its SHA-256),
expiring agreements, a project through its gates (a skipped gate is a 422 naming the
next gate), ideas, IP portfolio, people and training; only the hub's administrators."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.federation.signing import generate_key, save_key
from consortia.services import tokens, users
from consortia.services.common import utc_now
from consortia.storage.db import make_engine

HUB_URL = "http://hub.test"
PDF = b"%PDF-1.4\n%%EOF\n"
TODAY = utc_now().date()


@dataclass
class Hub:
    app: FastAPI
    engine: sa.Engine
    admin: str
    statistician: str


@pytest.fixture
def hub(migrated_database_url: str, tmp_path: Path) -> Iterator[Hub]:
    engine = make_engine(migrated_database_url)
    save_key(generate_key(), tmp_path / "hub.pem")
    settings = Settings(
        database_url=migrated_database_url,
        node_name="hub",
        node_url=HUB_URL,
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "Test consortium"},
    )
    operator = users.cli_operator()
    secrets = []
    for email, study, role in (
        ("admin@hub.example", "*", Role.NODE_ADMIN),
        ("stats@hub.example", "CART", Role.STATISTICIAN),
    ):
        users.create_user(engine, operator, email=email, name=email, password=None)
        users.grant_role(engine, operator, email=email, study=study, site="*", role=role)
        created = tokens.create_token(
            engine, operator, email=email, name="t", lifetime=timedelta(hours=1), studies=None
        )
        secrets.append(created.secret)
    app = create_app(settings)
    try:
        yield Hub(app, engine, *secrets)
    finally:
        app.state.engine.dispose()
        engine.dispose()


def call(hub: Hub, method: str, path: str, secret: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=hub.app)
        headers = {"Authorization": f"Bearer {secret}", **kwargs.pop("headers", {})}
        async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
            return await client.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    return asyncio.run(run())


def test_partners_agreements_and_documents_through_the_api(hub: Hub) -> None:
    admin = hub.admin
    for code, kind in (("SGH", "hospital"), ("IMG", "company")):
        body = {"code": code, "name": code, "kind": kind, "country": "SG"}
        assert call(hub, "POST", "/centre/partners", admin, json=body).status_code == 201
    bad = call(hub, "POST", "/centre/partners", admin,
               json={"code": "X", "name": "X", "kind": "pharmacy", "country": "SG"})  # fmt: skip
    assert bad.status_code == 422
    assert "'pharmacy' is not one of: hospital" in bad.text
    agreement = {
        "code": "CTA-1",
        "title": "Imaging AI collaboration",
        "kind": "collaboration",
        "starts_on": str(TODAY - timedelta(days=30)),
        "ends_on": str(TODAY + timedelta(days=10)),
        "parties": ["SGH", "IMG"],
    }
    created = call(hub, "POST", "/centre/agreements", admin, json=agreement)
    assert created.status_code == 201, created.text
    assert (created.json()["state"], created.json()["expiring"]) == ("in_force", True)
    [expiring] = call(hub, "GET", "/centre/agreements/expiring", admin).json()
    assert expiring["code"] == "CTA-1"
    uploaded = call(
        hub, "PUT", "/centre/agreements/CTA-1/documents/signed.pdf", admin, content=PDF,
        headers={"Content-Type": "application/pdf"},
    )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["sha256"] == hashlib.sha256(PDF).hexdigest()
    refused = call(hub, "PUT", "/centre/agreements/CTA-1/documents/x.pdf", admin, content=b"MZ")
    assert refused.status_code == 422
    assert "the content is not a .pdf file" in refused.text
    served = call(hub, "GET", f"/centre/documents/{uploaded.json()['id']}", admin)
    assert served.content == PDF
    assert served.headers["content-disposition"] == "attachment; filename*=UTF-8''signed.pdf"
    minutes = "会议纪要.txt".encode()
    named = call(hub, "PUT", "/centre/agreements/CTA-1/documents/%E4%BC%9A%E8%AE%AE%E7%BA%AA%E8%A6%81.txt",
                 admin, content=minutes)  # fmt: skip
    assert named.status_code == 201, named.text
    by_name = call(hub, "GET", f"/centre/documents/{named.json()['id']}", admin)
    assert by_name.headers["content-disposition"].endswith(
        "%E4%BC%9A%E8%AE%AE%E7%BA%AA%E8%A6%81.txt"
    )
    assert served.headers["x-content-sha256"] == hashlib.sha256(PDF).hexdigest()
    renewed = call(hub, "PATCH", "/centre/agreements/CTA-1", admin,
                   json={"ends_on": str(TODAY + timedelta(days=400))})  # fmt: skip
    assert renewed.json()["expiring"] is False
    assert call(hub, "GET", "/centre/agreements/expiring", admin).json() == []


def test_a_project_through_its_gates_ideas_ip_and_people_through_the_api(hub: Hub) -> None:
    admin = hub.admin
    members = ["a@centre.example", "b@centre.example"]
    for email in members:
        assert call(hub, "POST", "/centre/people", admin,
                    json={"email": email, "name": email}).status_code == 201  # fmt: skip
    committee = {"code": "SC", "name": "Steering", "quorum": 2, "members": members}
    assert call(hub, "POST", "/centre/committees", admin, json=committee).status_code == 201
    project = {"code": "AI-CXR", "title": "Chest X-ray AI", "committee": "SC"}
    assert call(hub, "POST", "/centre/projects", admin, json=project).status_code == 201
    skip = {"to_stage": "clinical_study", "decision": "go", "rationale": "r", "present": members}
    skipped = call(hub, "POST", "/centre/projects/AI-CXR/gates", admin, json=skip)
    assert skipped.status_code == 422
    assert "from idea the next gate is proof_of_concept, not clinical_study" in skipped.text
    alone = {**skip, "to_stage": "proof_of_concept", "present": members[:1]}
    no_quorum = call(hub, "POST", "/centre/projects/AI-CXR/gates", admin, json=alone)
    assert no_quorum.status_code == 422
    assert "quorum not met: 1 of 2 committee members present" in no_quorum.text
    go = {**skip, "to_stage": "proof_of_concept", "documents": ["Reader study"]}
    moved = call(hub, "POST", "/centre/projects/AI-CXR/gates", admin, json=go)
    assert moved.status_code == 201
    assert (moved.json()["stage"], moved.json()["next_stage"]) == ("proof_of_concept", "prototype")
    idea = {"title": "Triage bot", "problem": "p", "solution": "s", "patients": "all", "needs": "n"}
    submitted = call(hub, "POST", "/centre/ideas", hub.statistician, json=idea)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["clinician"] == "stats@hub.example"
    idea_id = submitted.json()["id"]
    declined = call(hub, "POST", f"/centre/ideas/{idea_id}/decline", admin,
                    json={"reason": "Not now"})  # fmt: skip
    assert (declined.json()["status"], declined.json()["reason"]) == ("declined", "Not now")
    patent = {
        "kind": "patent", "title": "CXR model", "inventors": ["A"], "status": "filed",
        "application_number": "SG1", "jurisdiction": "SG", "filed_on": str(TODAY),
        "project": "AI-CXR",
    }  # fmt: skip
    assert call(hub, "POST", "/centre/ip", admin, json=patent).status_code == 201
    counts = call(hub, "GET", "/centre/ip/portfolio", admin).json()
    assert counts == {"total": 1, "by_status": {"filed": 1}, "by_jurisdiction": {"SG": 1}}
    training = {"email": members[0], "kind": "gcp", "title": "GCP",
                "completed_on": str(TODAY), "expires_on": str(TODAY + timedelta(days=5))}  # fmt: skip
    assert call(hub, "POST", "/centre/training", admin, json=training).status_code == 201
    [soon] = call(hub, "GET", "/centre/training/expiring", admin).json()
    assert soon["email"] == members[0]
    rule = call(hub, "PUT", "/centre/studies/CART/training", admin,
                json={"requires_gcp": True, "requires_protocol": False})  # fmt: skip
    assert rule.json()["requires_gcp"] is True


def test_the_centre_api_is_for_the_hubs_administrators(hub: Hub) -> None:
    for path in ("/centre/partners", "/centre/agreements", "/centre/projects", "/centre/people"):
        assert call(hub, "GET", path, hub.statistician).status_code == 403
        assert call(hub, "GET", path, hub.admin).status_code == 200
    body = {"code": "X", "name": "X", "kind": "hospital", "country": "SG"}
    assert call(hub, "POST", "/centre/partners", hub.statistician, json=body).status_code == 403


def test_a_grant_through_the_api_needs_the_training_the_study_asks_for(hub: Hub) -> None:
    admin = hub.admin
    operator = users.cli_operator()
    users.grant_role(hub.engine, operator, email="admin@hub.example", study="CART", site="*",
                     role=Role.STUDY_ADMIN)  # fmt: skip
    users.create_user(hub.engine, operator, email="dr.lee@hub.example", name="Lee", password=None)
    rule = {"requires_gcp": True, "requires_protocol": True}
    assert call(hub, "PUT", "/centre/studies/CART/training", admin, json=rule).status_code == 200
    grant = {"email": "dr.lee@hub.example", "study": "CART", "site": "SG01", "role": "statistician"}
    refused = call(hub, "POST", "/grants", admin, json=grant)
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "a role at study CART needs a valid GCP certificate and the protocol training for "
        "study CART: dr.lee@hub.example has no such record valid today at the centre (record "
        "it with `consortia centre training add`)"
    )
    assert call(hub, "POST", "/centre/people", admin,
                json={"email": "dr.lee@hub.example", "name": "Lee"}).status_code == 201  # fmt: skip
    for kind, study in (("gcp", None), ("protocol", "CART")):
        record = {"email": "dr.lee@hub.example", "kind": kind, "title": kind, "study": study,
                  "completed_on": str(TODAY - timedelta(days=1))}  # fmt: skip
        assert call(hub, "POST", "/centre/training", admin, json=record).status_code == 201
    granted = call(hub, "POST", "/grants", admin, json=grant)
    assert granted.status_code == 201, granted.text
