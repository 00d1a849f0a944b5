"""The server-rendered pages: sign in, home, sign out, languages, errors."""

from __future__ import annotations

import re

import httpx
import pytest
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Role
from consortia.auth.sessions import SESSION_COOKIE
from consortia.services.authentication import LOGIN_REFUSED
from consortia.web.i18n import CATALOGUES, pick_language

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _sign_in(browser: Browser, password: str = PASSWORD) -> httpx.Response:
    return browser.post("/login", data={"email": EMAIL, "password": password})


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


def test_signed_out_home_redirects_to_the_login_form(site: Site) -> None:
    browser = site.browser()
    response = browser.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    form = browser.get("/login")
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert 'name="email"' in form.text
    assert 'type="password"' in form.text
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]


def test_signing_in_shows_who_you_are_and_your_grants(site: Site) -> None:
    browser = site.browser()
    response = _sign_in(browser)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("secure", "httponly", "samesite=strict", "path=/"):
        assert attribute in cookie
    assert "max-age" not in cookie
    home = browser.get("/")
    assert home.status_code == 200
    assert EMAIL in home.text
    # the name is escaped, never markup
    assert "Ana &lt;Lim&gt;" in home.text
    assert "<Lim>" not in home.text
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", home.text)
    assert rows == [("CART01", "SG01", "Coordinator"), ("ORTHO", "all", "Monitor")]
    assert home.headers["cache-control"] == "no-store"
    # a signed-in visitor of the form goes home
    assert browser.get("/login").headers["location"] == "/"


def test_the_page_session_is_the_api_session(site: Site) -> None:
    browser = site.browser()
    _sign_in(browser)
    me = browser.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == EMAIL


def test_a_failed_sign_in_shows_the_generic_message_and_sets_no_cookie(site: Site) -> None:
    browser = site.browser()
    response = _sign_in(browser, password="Hunter2-typo")
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert LOGIN_REFUSED in response.text
    assert 'aria-invalid="true"' in response.text
    assert f'value="{EMAIL}"' in response.text  # the email is kept, the password is not
    assert "Hunter2-typo" not in response.text
    unknown = browser.post("/login", data={"email": "nobody@x.example", "password": "p"})
    assert unknown.status_code == 401
    assert LOGIN_REFUSED in unknown.text
    assert browser.get("/").status_code == 303


def test_a_locked_account_gets_the_same_message_even_with_the_right_password(
    site: Site,
) -> None:
    browser = site.browser()
    for _ in range(5):  # login_max_failures: locked (the sign-in limit is 10 per account)
        _sign_in(browser, password="wrong")
    response = _sign_in(browser)
    assert response.status_code == 401
    assert LOGIN_REFUSED in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}],
)
def test_a_sign_in_posted_from_another_site_is_refused(site: Site, headers: dict[str, str]) -> None:
    browser = site.browser()
    data = {"email": EMAIL, "password": PASSWORD}
    response = browser.post("/login", data=data, headers=headers)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    same_site = {"origin": "https://node.test", "sec-fetch-site": "same-origin"}
    assert browser.post("/login", data=data, headers=same_site).status_code == 303


def test_missing_fields_are_marked_next_to_the_field(site: Site) -> None:
    browser = site.browser()
    response = browser.post("/login", data={"email": "", "password": ""})
    assert response.status_code == 400
    assert 'id="email-error"' in response.text
    assert 'id="password-error"' in response.text
    assert "set-cookie" not in response.headers


def test_signing_out_without_the_csrf_token_is_refused(site: Site) -> None:
    browser = site.browser()
    _sign_in(browser)
    for data in ({}, {"csrf_token": "0" * 64}):
        refused = browser.post("/logout", data=data)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("text/html")
        assert "expired" in refused.text
    assert browser.get("/").status_code == 200  # still signed in


def test_signing_out_with_the_csrf_token_ends_the_session(site: Site) -> None:
    browser = site.browser()
    _sign_in(browser)
    old_cookie = browser.client.cookies[SESSION_COOKIE]
    token = _csrf(browser.get("/"))
    response = browser.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert browser.get("/").status_code == 303
    # the server forgot the session: replaying the old cookie does not work
    replay = site.browser()
    replay.client.cookies.set(SESSION_COOKIE, old_cookie)
    assert replay.get("/").status_code == 303
    assert replay.get("/api/v1/me").status_code == 401


def test_the_chinese_pages(site: Site) -> None:
    browser = site.browser()
    form = browser.get("/login?lang=zh")
    assert '<html lang="zh-Hans">' in form.text
    assert "电子邮箱" in form.text
    assert "密码" in form.text
    assert "lang=zh" in form.headers["set-cookie"]
    # the language is remembered in a cookie
    refused = _sign_in(browser, password="wrong")
    assert CATALOGUES["zh"]["login.refused"] in refused.text
    _sign_in(browser)
    home = browser.get("/")
    assert "退出登录" in home.text
    assert "研究协调员" in home.text
    assert "Sign out" not in home.text


def test_accept_language_chooses_chinese(site: Site) -> None:
    browser = site.browser()
    form = browser.get("/login", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "登录" in form.text
    english = browser.get("/login?lang=en", headers={"accept-language": "zh-CN"})
    assert "Sign in" in english.text


@pytest.mark.parametrize(
    ("query", "cookie", "header", "expected"),
    [
        (None, None, None, "en"),
        ("zh", "en", "en", "zh"),
        ("xx", "zh", None, "zh"),
        (None, None, "fr, zh-Hans;q=0.5, en;q=0.4", "zh"),
        (None, None, "zh-TW, en;q=0.5", "en"),
        (None, None, "en;q=0.1, zh;q=0.9", "zh"),
        (None, None, "zh;q=0, en", "en"),
        (None, None, "garbage;q=x", "en"),
    ],
)
def test_language_choice(
    query: str | None, cookie: str | None, header: str | None, expected: str
) -> None:
    assert pick_language(query=query, cookie=cookie, accept_language=header) == expected


def test_every_string_exists_in_every_language() -> None:
    keys = {language: set(catalogue) for language, catalogue in CATALOGUES.items()}
    assert set(keys) == {"en", "zh"}
    assert keys["en"] == keys["zh"]
    for catalogue in CATALOGUES.values():
        assert all(value.strip() for value in catalogue.values())
        assert {f"role.{role.value}" for role in Role} <= set(catalogue)


def test_errors_are_friendly_pages(site: Site) -> None:
    browser = site.browser()
    wrong_type = browser.post(
        "/login", content=b'{"email": 1}', headers={"content-type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"].startswith("text/html")
    assert "Traceback" not in wrong_type.text
    too_big = browser.post("/login", content=b"email=" + b"a" * 20_000, headers=FORM)
    assert too_big.status_code == 413
    assert "too large" in too_big.text
    bad_bytes = browser.post("/login", content=b"email=%ff%fe&password=x", headers=FORM)
    assert bad_bytes.status_code in (400, 401)
    assert "Traceback" not in bad_bytes.text


def test_an_unexpected_error_is_a_friendly_500(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("consortia.services.authentication.finish_login", explode)
    response = _sign_in(site.browser())
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert "internal error" in response.text


@pytest.mark.parametrize("language", ["en", "zh"])
def test_too_many_failed_sign_ins_get_a_429_page_saying_when_to_try_again(
    site: Site, language: str
) -> None:
    browser = site.browser()
    for _ in range(10):  # login_failures_per_account
        assert _sign_in(browser, password="wrong").status_code == 401
    response = browser.post(f"/login?lang={language}", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 15 * 60
    assert CATALOGUES[language]["login.throttled"] in response.text
    assert (
        "set-cookie" not in response.headers or SESSION_COOKIE not in response.headers["set-cookie"]
    )
