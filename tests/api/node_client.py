"""Test support: a node app served in-process (httpx ASGITransport) and seeded people.

Tests stay synchronous: an anyio blocking portal runs the app's lifespan and every
request on one event loop in a helper thread.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from sqlalchemy import Engine

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.services import tokens, users
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

BASE_URL = "https://node.test"
SECRET = "test-secret-that-is-long-enough-for-production-0123456789"


class SyncClient:
    """An ``httpx.AsyncClient`` on the app, called synchronously through the portal."""

    def __init__(
        self,
        portal: BlockingPortal,
        app: FastAPI,
        headers: dict[str, str],
        *,
        raise_app_exceptions: bool = True,
        client_address: str = "127.0.0.1",
    ) -> None:
        self.portal = portal
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=raise_app_exceptions, client=(client_address, 50000)
        )
        self.client = httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = functools.partial(self.client.request, method, url, **kwargs)
        return self.portal.call(call)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self.portal.call(self.client.aclose)


@dataclass
class Node:
    """A running node app with its database, and helpers to seed people."""

    app: FastAPI
    portal: BlockingPortal
    engine: Engine
    settings: Settings
    _clients: list[SyncClient] = field(default_factory=list)

    def client(
        self,
        token: str | None = None,
        *,
        raise_app_exceptions: bool = True,
        client_address: str = "127.0.0.1",
    ) -> SyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = SyncClient(
            self.portal,
            self.app,
            headers,
            raise_app_exceptions=raise_app_exceptions,
            client_address=client_address,
        )
        self._clients.append(client)
        return client

    def add_user(
        self,
        email: str,
        *grants: tuple[str, str, Role | str],
        password: str | None = None,
        token_studies: list[str] | None = None,
        with_token: bool = True,
    ) -> str:
        """Create a person with ``grants`` (study, site, role); return an API token."""
        operator = users.cli_operator()
        users.create_user(
            self.engine, operator, email=email, name=email.split("@")[0], password=password
        )
        for study, site, role in grants:
            users.grant_role(self.engine, operator, email=email, study=study, site=site, role=role)
        if not with_token:
            return ""
        created = tokens.create_token(
            self.engine,
            operator,
            email=email,
            name="test",
            lifetime=timedelta(days=1),
            studies=token_studies,
        )
        return created.secret

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def running_node(database_url: str, **settings: Any) -> Iterator[Node]:
    """Migrate ``database_url``, build the app, run its lifespan; dispose of it all after."""
    config = Settings(
        database_url=database_url,
        environment="test",  # type: ignore[arg-type]
        secret_key=SECRET,  # type: ignore[arg-type]
        **settings,
    )
    engine = make_engine(database_url)
    upgrade(engine)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(config)
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        node = Node(app, portal, engine, config)
        stack.callback(node.close)
        yield node
