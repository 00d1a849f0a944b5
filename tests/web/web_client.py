"""Test support for the pages: a node app served in-process (httpx ASGITransport).

Tests stay synchronous: an anyio blocking portal runs the app's lifespan and every request
on one event loop in a helper thread.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from anyio.from_thread import BlockingPortal
from fastapi import FastAPI
from sqlalchemy import Engine

from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

BASE_URL = "https://node.test"
SECRET = "test-secret-that-is-long-enough-for-production-0123456789"
PASSWORD = "a long passphrase"
EMAIL = "ana@sg.example"


class Browser:
    """An ``httpx.AsyncClient`` (with its cookie jar) called synchronously; no redirects."""

    def __init__(self, portal: BlockingPortal, app: FastAPI) -> None:
        self.portal = portal
        transport = httpx.ASGITransport(app=app)
        self.client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self.portal.call(self.client.aclose)


@dataclass
class Site:
    app: FastAPI
    portal: BlockingPortal
    engine: Engine
    browsers: list[Browser]

    def browser(self) -> Browser:
        browser = Browser(self.portal, self.app)
        self.browsers.append(browser)
        return browser


def sign_in_page(page: Page, node_url: str, email: str = EMAIL, lang: str = "en") -> None:
    """Sign in from the sign-in page in Chromium, as a person does, in ``lang``; wait for home."""
    words = CATALOGUES[lang]
    page.goto(f"/login?lang={lang}")
    page.get_by_label(words["login.email"]).fill(email)
    page.get_by_label(words["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
