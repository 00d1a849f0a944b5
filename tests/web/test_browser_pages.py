"""The pages in a real browser: Chromium against the node served by uvicorn on loopback.

test_pages.py checks the HTML and headers the app sends; these check what a person gets:
the browser follows the redirects, keeps (or refuses) the cookies by their attributes,
sends its own ``Origin`` and ``Sec-Fetch-Site`` on form posts, and applies the pages'
Content-Security-Policy. Expected words come from the i18n catalogue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from web_client import EMAIL, PASSWORD

from consortia.auth.sessions import SESSION_COOKIE
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Cookie, Page

EN = CATALOGUES["en"]
ZH = CATALOGUES["zh"]


def _sign_in(page: Page, password: str = PASSWORD) -> None:
    page.get_by_label(EN["login.email"]).fill(EMAIL)
    page.get_by_label(EN["login.password"]).fill(password)
    page.get_by_role("button", name=EN["login.submit"]).click()


def _session_cookie(context: BrowserContext) -> Cookie | None:
    """The session cookie the browser holds for the node, if any."""
    found = [cookie for cookie in context.cookies() if cookie.get("name") == SESSION_COOKIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def _grant_rows(page: Page) -> list[list[str]]:
    rows = page.locator("table tbody tr")
    return [
        [cell.strip() for cell in rows.nth(index).locator("td").all_inner_texts()]
        for index in range(rows.count())
    ]


def test_signing_in_lands_on_home_with_your_studies_sites_and_roles(
    page: Page, browser_context: BrowserContext, node_url: str
) -> None:
    page.goto("/")
    assert page.url == f"{node_url}/login"
    assert page.locator("h1").inner_text() == EN["login.title"]
    _sign_in(page)
    page.wait_for_url(f"{node_url}/")
    assert page.locator("h1").inner_text() == EN["home.title"]
    # the name is shown as typed, markup characters and all, never interpreted
    assert page.locator("main strong").inner_text() == "Ana <Lim>"
    assert EMAIL in page.locator("main p").first.inner_text()
    assert page.locator("table thead th").all_inner_texts() == [
        EN["home.study"],
        EN["home.site"],
        EN["home.role"],
    ]
    assert _grant_rows(page) == [
        ["CART01", "SG01", EN["role.coordinator"]],
        ["ORTHO", EN["home.everywhere"], EN["role.monitor"]],
    ]
    # the Secure cookie was kept on http://127.0.0.1 and is sent back: a reload stays home
    assert _session_cookie(browser_context) is not None
    page.reload()
    assert page.url == f"{node_url}/"
    assert page.locator("h1").inner_text() == EN["home.title"]


def test_a_wrong_password_shows_the_error_in_the_form_and_sets_no_session_cookie(
    page: Page, browser_context: BrowserContext, node_url: str
) -> None:
    page.goto("/login")
    _sign_in(page, password="Hunter2-typo")
    error = page.locator("form #login-error")
    error.wait_for()
    assert error.is_visible()
    assert error.inner_text() == EN["login.refused"]
    assert error.get_attribute("role") == "alert"
    email = page.get_by_label(EN["login.email"])
    assert email.get_attribute("aria-invalid") == "true"
    assert email.get_attribute("aria-describedby") == "login-error"
    assert email.input_value() == EMAIL
    assert page.get_by_label(EN["login.password"]).input_value() == ""
    assert page.url == f"{node_url}/login"
    assert _session_cookie(browser_context) is None
    page.goto("/")
    assert page.url == f"{node_url}/login"


def test_switching_to_chinese_shows_chinese_labels_and_is_remembered(
    page: Page, node_url: str
) -> None:
    page.goto("/login")
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("link", name=EN["lang.switch"]).click()
    page.wait_for_url(f"{node_url}/login?lang={EN['lang.switch_to']}")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.locator("h1").inner_text() == ZH["login.title"]
    assert page.locator("label").all_inner_texts() == [ZH["login.email"], ZH["login.password"]]
    assert page.get_by_role("link", name=ZH["lang.switch"]).is_visible()
    page.get_by_label(ZH["login.email"]).fill(EMAIL)
    page.get_by_label(ZH["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=ZH["login.submit"]).click()
    # home has no ?lang=: the choice was kept in the lang cookie
    page.wait_for_url(f"{node_url}/")
    assert page.locator("h1").inner_text() == ZH["home.title"]
    assert page.locator("table thead th").all_inner_texts() == [
        ZH["home.study"],
        ZH["home.site"],
        ZH["home.role"],
    ]
    assert _grant_rows(page) == [
        ["CART01", "SG01", ZH["role.coordinator"]],
        ["ORTHO", ZH["home.everywhere"], ZH["role.monitor"]],
    ]
    # signing out is in the user's menu, under the user's name
    page.locator("#user-menu summary", has_text="Ana <Lim>").click()
    assert page.get_by_role("button", name=ZH["logout.submit"]).is_visible()
    assert EN["logout.submit"] not in page.locator("body").inner_text()


def test_signing_out_returns_to_sign_in_and_home_is_no_longer_reachable(
    page: Page, browser_context: BrowserContext, node_url: str
) -> None:
    page.goto("/login")
    _sign_in(page)
    page.wait_for_url(f"{node_url}/")
    old_cookie = _session_cookie(browser_context)
    assert old_cookie is not None
    # the form posts the CSRF token from its hidden field
    token = page.locator('form[action="/logout"] input[name="csrf_token"]')
    assert len(token.input_value()) == 64
    page.locator("#user-menu summary").click()
    page.get_by_role("button", name=EN["logout.submit"]).click()
    page.wait_for_url(f"{node_url}/login")
    assert page.locator("h1").inner_text() == EN["login.title"]
    assert _session_cookie(browser_context) is None
    page.goto("/")
    assert page.url == f"{node_url}/login"
    # the node forgot the session: putting the old cookie back does not get home either
    browser_context.add_cookies([old_cookie])
    page.goto("/")
    assert page.url == f"{node_url}/login"


def test_the_session_cookie_is_http_only_and_same_site_strict(
    page: Page, browser_context: BrowserContext, node_url: str
) -> None:
    page.goto("/login")
    _sign_in(page)
    page.wait_for_url(f"{node_url}/")
    cookie = _session_cookie(browser_context)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is True
    assert cookie["domain"] == "127.0.0.1"
    assert cookie["path"] == "/"
    assert cookie["expires"] == -1  # a browser-session cookie, as the API sets it
    assert SESSION_COOKIE not in page.evaluate("document.cookie")
    assert cookie["value"] not in page.content()
