"""The innovation centre's pages in a real browser, in English and in Chinese: the hub's
administrator finds each page from the home page and uses each of its actions (partners,
agreements and their renewal, programmes; people, affiliations, training, placements, a
study's training rule; committees, projects, gate decisions, links; ideas from submission
to a project or a decline; patents), and sees a skipped gate refused with its reason.

The hub (uvicorn on loopback, in a thread) keeps everything in its SQLite database; what
the pages did is read back from there through the services. Expected words come from the
i18n catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from web_client import PASSWORD, SECRET

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.federation.signing import generate_key, save_key
from consortia.services import centre, centre_ideas, centre_people, centre_projects, users
from consortia.services.common import cli_operator, utc_now
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES
from processes import served_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ADMIN = "director@centre.example"
TODAY = utc_now().date()


@pytest.fixture
def node_url(tmp_path: Path, migrated_sqlite: Callable[[Path], str]) -> Iterator[str]:
    """A hub served by uvicorn on a free loopback port, with its administrator."""
    database_url = migrated_sqlite(tmp_path / "hub.db")
    engine = make_engine(database_url)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=ADMIN, name="Director", password=PASSWORD)
    users.grant_role(engine, operator, email=ADMIN, study="*", site="*", role=Role.NODE_ADMIN)
    engine.dispose()
    save_key(generate_key(), tmp_path / "hub.pem")
    settings = Settings(
        database_url=database_url,
        environment="test",
        secret_key=SECRET,
        node_name="hub",
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "Innovation consortium"},
    )
    with served_in_thread(create_app(settings), what="the hub") as url:
        yield url


@pytest.fixture
def hub_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """This process's engine on the running hub's database."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    yield engine
    engine.dispose()


def _open(page: Page, words: dict[str, str], summary: str, form_id: str) -> Locator:
    page.locator("summary", has_text=words[summary]).first.click()
    return page.locator(f"#{form_id}")


def _fill(form: Locator, words: dict[str, str], values: dict[str, str]) -> None:
    for key, value in values.items():
        field = form.get_by_label(words[key], exact=True)
        if field.evaluate("f => f.tagName") == "SELECT":
            field.select_option(label=value)
        else:
            field.fill(value)


def _submit(page: Page, form: Locator, words: dict[str, str], button: str, url: str) -> None:
    form.get_by_role("button", name=words[button]).click()
    page.wait_for_url(url)
    page.wait_for_load_state()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_centre_director_uses_every_action_of_the_centre_pages(
    page: Page, node_url: str, hub_engine: Engine, lang: str
) -> None:
    w = dict(CATALOGUES[lang])
    page.goto(f"/login?lang={lang}")
    page.get_by_label(w["login.email"]).fill(ADMIN)
    page.get_by_label(w["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=w["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=w["home.centre_link"]).click()
    page.wait_for_url(f"{node_url}/centre")
    assert page.locator("h1").inner_text() == w["centre.title"]
    overview = f"{node_url}/centre"

    # partners, an agreement (and its renewal), a programme
    for code, name, kind in (
        ("SGH", "Singapore General", "hospital"),
        ("IMG", "Imaging Co", "company"),
    ):
        form = _open(page, w, "centre.add_partner", "add-partner")
        _fill(form, w, {"centre.code": code, "centre.name": name, "centre.country": "SG",
                        "centre.kind": w[f"centre.partner_kind.{kind}"]})  # fmt: skip
        _submit(page, form, w, "centre.add_partner", overview)
    assert page.locator("#partner-IMG td").nth(2).inner_text() == w["centre.partner_kind.company"]
    form = _open(page, w, "centre.add_agreement", "add-agreement")
    _fill(form, w, {
        "centre.code": "CTA-1", "centre.agreement_title": "AI imaging collaboration",
        "centre.kind": w["centre.agreement_kind.collaboration"],
        "centre.starts_on": str(TODAY - timedelta(days=100)),
        "centre.ends_on": str(TODAY + timedelta(days=20)), "centre.parties": "SGH, IMG",
    })  # fmt: skip
    _submit(page, form, w, "centre.add_agreement", overview)
    row = page.locator("#agreement-CTA-1")
    assert row.locator("td.state").inner_text() == w["centre.state.in_force"]
    assert "CTA-1" in page.locator("#expiring-agreements").inner_text()
    form = _open(page, w, "centre.change_agreement", "change-agreement")
    _fill(form, w, {"centre.new_ends_on": str(TODAY + timedelta(days=400))})
    _submit(page, form, w, "centre.save_change", overview)
    assert page.locator("#none-expiring").is_visible()
    form = _open(page, w, "centre.add_programme", "add-programme")
    _fill(form, w, {"centre.code": "DIGI", "centre.name": "Digital medicine",
                    "centre.studies": "AI-CXR"})  # fmt: skip
    _submit(page, form, w, "centre.add_programme", overview)
    assert page.locator("#programme-DIGI").is_visible()

    # people: two staff, an affiliation, training, a placement, a study's rule
    page.get_by_role("link", name=w["centre.nav_people"]).click()
    people = f"{node_url}/centre/people"
    page.wait_for_url(people)
    for email in ("chair@centre.example", "dean@centre.example"):
        form = _open(page, w, "centre.add_person", "add-person")
        _fill(form, w, {"centre.email": email, "centre.name": email.split("@")[0]})
        _submit(page, form, w, "centre.add_person", people)
    form = _open(page, w, "centre.affiliate", "add-affiliation")
    _fill(form, w, {"centre.person": "chair@centre.example", "centre.partner": "SGH",
                    "centre.role_title": "Consultant"})  # fmt: skip
    _submit(page, form, w, "centre.affiliate", people)
    form = _open(page, w, "centre.add_training", "add-training")
    _fill(form, w, {"centre.person": "chair@centre.example", "centre.training_title": "ICH GCP",
                    "centre.kind": w["centre.training_kind.gcp"],
                    "centre.completed_on": str(TODAY),
                    "centre.expires_on": str(TODAY + timedelta(days=10))})  # fmt: skip
    _submit(page, form, w, "centre.add_training", people)
    assert "chair@centre.example" in page.locator("#expiring-training").inner_text()
    form = _open(page, w, "centre.add_placement", "add-placement")
    _fill(form, w, {"centre.person": "dean@centre.example", "centre.from_partner": "SGH",
                    "centre.to_partner": "IMG", "centre.starts_on": str(TODAY),
                    "centre.ends_on": str(TODAY + timedelta(days=90)),
                    "centre.purpose": "Imaging AI research"})  # fmt: skip
    _submit(page, form, w, "centre.add_placement", people)
    assert "Imaging AI research" in page.locator("#placements").inner_text()
    form = _open(page, w, "centre.set_rule", "set-rule")
    _fill(form, w, {"centre.rule_study": "AI-CXR"})
    form.locator("#rule-gcp").check()
    _submit(page, form, w, "centre.set_rule", people)
    assert page.locator("#rule-AI-CXR td").nth(1).inner_text() == w["centre.yes"]

    # a committee, a project, a skipped gate refused, a gate passed, a link
    page.get_by_role("link", name=w["centre.nav_projects"]).click()
    projects = f"{node_url}/centre/projects"
    page.wait_for_url(projects)
    form = _open(page, w, "centre.add_committee", "add-committee")
    _fill(form, w, {"centre.code": "SC", "centre.name": "Steering committee",
                    "centre.quorum": "2",
                    "centre.members": "chair@centre.example, dean@centre.example"})  # fmt: skip
    _submit(page, form, w, "centre.add_committee", projects)
    form = _open(page, w, "centre.add_project", "add-project")
    _fill(form, w, {"centre.code": "AI-CXR", "centre.agreement_title": "Chest X-ray AI",
                    "centre.committee": "SC", "centre.programme": "DIGI"})  # fmt: skip
    _submit(page, form, w, "centre.add_project", projects)
    assert page.locator("#project-AI-CXR td.stage").inner_text() == w["centre.stage.idea"]
    gate = page.locator("#record-gate")
    both = "chair@centre.example, dean@centre.example"
    _fill(gate, w, {"centre.to_stage": w["centre.stage.prototype"],
                    "centre.decision": w["centre.decision.go"],
                    "centre.rationale": "Looks good", "centre.present": both})  # fmt: skip
    _submit(page, gate, w, "centre.record_gate", f"{projects}/actions/gates")
    refusal = page.locator("#refusals").inner_text()
    assert w["centre.refused"] in refusal
    assert "from idea the next gate is proof_of_concept, not prototype" in refusal
    gate = page.locator("#record-gate")
    _fill(gate, w, {"centre.to_stage": w["centre.stage.proof_of_concept"],
                    "centre.decision": w["centre.decision.go"],
                    "centre.rationale": "Reader study passed", "centre.present": both,
                    "centre.reviewed": "Reader study report"})  # fmt: skip
    _submit(page, gate, w, "centre.record_gate", projects)
    stage = page.locator("#project-AI-CXR td.stage").inner_text()
    assert stage == w["centre.stage.proof_of_concept"]
    assert "Reader study report" in page.locator("#decisions").inner_text()
    form = _open(page, w, "centre.add_link", "add-link")
    _fill(form, w, {"centre.link_kind": w["centre.link_kind.partner"],
                    "centre.link_target": "IMG"})  # fmt: skip
    _submit(page, form, w, "centre.add_link", projects)
    assert "IMG" in page.locator("#project-AI-CXR").inner_text()

    # ideas: one becomes a project, one is declined; a patent filing
    page.get_by_role("link", name=w["centre.nav_ideas"]).click()
    ideas = f"{node_url}/centre/ideas"
    page.wait_for_url(ideas)
    for title in ("Sepsis alert", "Robot porter"):
        form = _open(page, w, "centre.submit_idea", "submit-idea")
        _fill(form, w, {"centre.idea_title": title, "centre.problem": "Late recognition",
                        "centre.solution": "An alert", "centre.patients": "Inpatients",
                        "centre.needs": "Data engineers"})  # fmt: skip
        _submit(page, form, w, "centre.submit_idea", ideas)
    operator = cli_operator()
    first, second = sorted(i.idea.id for i in centre_ideas.list_ideas(hub_engine, operator))
    triage = page.locator("#triage-idea")
    _fill(triage, w, {"centre.idea_title": f"{first}: Sepsis alert", "centre.programme": "DIGI",
                      "centre.matched": "IMG"})  # fmt: skip
    _submit(page, triage, w, "centre.triage", ideas)
    form = _open(page, w, "centre.accept", "accept-idea")
    _fill(form, w, {"centre.idea_title": f"{first}: Sepsis alert",
                    "centre.project_code": "SEPSIS", "centre.committee": "SC"})  # fmt: skip
    _submit(page, form, w, "centre.accept", ideas)
    assert page.locator(f"#idea-{first} td.status").inner_text() == w["centre.idea_status.accepted"]
    form = _open(page, w, "centre.decline", "decline-idea")
    _fill(form, w, {"centre.idea_title": f"{second}: Robot porter",
                    "centre.reason": "Outside our programmes"})  # fmt: skip
    _submit(page, form, w, "centre.decline", ideas)
    assert "Outside our programmes" in page.locator(f"#idea-{second}").inner_text()
    form = _open(page, w, "centre.add_ip", "add-ip")
    _fill(form, w, {"centre.kind": w["centre.ip_kind.patent"], "centre.ip_title": "CXR model",
                    "centre.inventors": "Chair, Dean", "centre.status": w["centre.ip_status.filed"],
                    "centre.application_number": "SG10202600001", "centre.jurisdiction": "SG",
                    "centre.filed_on": str(TODAY), "centre.ip_project": "AI-CXR"})  # fmt: skip
    _submit(page, form, w, "centre.add_ip", ideas)
    assert page.locator("#portfolio-total").inner_text() == f"{w['centre.total']}: 1"

    # what the pages did, read back through the services
    [agreement] = centre.list_agreements(hub_engine, operator)
    assert agreement.agreement.ends_on == TODAY + timedelta(days=400)
    found = {v.project.code: v for v in centre_projects.list_projects(hub_engine, operator)}
    assert found["AI-CXR"].project.stage == "proof_of_concept"
    assert found["SEPSIS"].links == {"partner": ["IMG"]}
    [rule] = centre_people.list_study_training(hub_engine, operator)
    assert (rule.requires_gcp, rule.requires_protocol) == (True, False)
    assert centre_ideas.portfolio(hub_engine, operator).by_jurisdiction == {"SG": 1}
