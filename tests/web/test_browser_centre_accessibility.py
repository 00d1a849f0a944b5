"""The innovation centre's and the hub's pages as assistive technology meets them in
Chromium, in English and Chinese, with every folded form opened: named controls, landmarks,
one level-1 heading, the page's language, and WCAG AA contrast (the checks of
tests/web/accessibility_checks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from accessibility_checks import open_disclosures, page_problems
from test_browser_centre import ADMIN, node_url
from web_client import PASSWORD

from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["node_url"]  # the hub served on loopback, in place of conftest's node

PAGES = (
    "/",
    "/centre",
    "/centre/projects",
    "/centre/ideas",
    "/centre/people",
    "/hub",
    "/hub/members",
    "/hub/studies",
    "/hub/analyses",
)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_centre_and_hub_pages_name_their_controls_and_have_enough_contrast(
    page: Page, node_url: str, language: str
) -> None:
    words = CATALOGUES[language]
    page.goto(f"/login?lang={language}")
    page.get_by_label(words["login.email"]).fill(ADMIN)
    page.get_by_label(words["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    problems: list[str] = []
    for path in PAGES:
        response = page.goto(path)
        assert response is not None
        assert response.ok, (path, response.status)
        problems += page_problems(page, language)
        if open_disclosures(page):
            problems += [f"folded forms open: {p}" for p in page_problems(page, language)]
    assert not problems, "\n".join(problems)
