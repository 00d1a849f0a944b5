"""The node's web application: ``create_app(settings)`` builds it; nothing is global.

>>> from consortia.config import Settings
>>> app = create_app(Settings(database_url="sqlite://"))
>>> app.title
'Consortia'
>>> app.state.engine.dispose()
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from consortia import __version__
from consortia.api import centre as centre_api
from consortia.api import centre_portfolio as centre_portfolio_api
from consortia.api import hub as hub_api
from consortia.api.docs import docs_router
from consortia.api.errors import install_error_handlers
from consortia.api.guard import ApiGuard, public_routes
from consortia.api.router import API_PREFIX, api_routers
from consortia.asgi import BodyLimit
from consortia.auth.hashing import PasswordWork
from consortia.children import die_with_parent
from consortia.config import Settings, load_settings
from consortia.entry.static_files import static_router
from consortia.federation.apps import MAX_MESSAGE_DEPTH, mount_node, running_node
from consortia.federation.hub import JOIN_PATH, STUDIES_PATH, STUDY_VERSION
from consortia.federation.hub_routes import (
    StudyReceiver,
    create_hub_federation_router,
    create_member_studies_router,
)
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import NodeConfig, build_node, node_config_from_settings
from consortia.federation.pull import RESULTS_PATH, TaskHandler
from consortia.federation.randomisation import RANDOMISE_PATH, create_randomisation_router
from consortia.federation.signing import sign_message_wire
from consortia.federation.witness import HeadWitness, node_witness
from consortia.services import hub as hub_service
from consortia.services import hub_studies, randomisation_hub
from consortia.services.analyses import analysis_config
from consortia.services.hub import HubIdentity
from consortia.storage.db import make_engine
from consortia.web.capture import create_capture_router
from consortia.web.centre import create_centre_pages_router
from consortia.web.hub import create_hub_pages_router
from consortia.web.pages import create_web_router
from consortia.web.review import create_review_router

__all__ = ["SERVE_CONFIG", "SERVE_PARENT", "create_app", "freeze_start_up_objects", "served_app"]

#: Environment variable naming the config file that ``served_app`` reads (set by
#: ``consortia serve --workers N`` for its worker processes; empty: the environment alone).
SERVE_CONFIG = "CONSORTIA_SERVE_CONFIG"
#: Set by ``consortia serve --workers N`` to its own process id: a worker process whose
#: supervisor is gone (killed with ``kill -9``) stops rather than serve on as an orphan.
SERVE_PARENT = "CONSORTIA_SERVE_PARENT"


def create_app(settings: Settings) -> FastAPI:
    """The node's app for ``settings``: the REST API under ``/api/v1`` (its reference at
    ``/api/v1/docs``, guarded by :class:`~consortia.api.guard.ApiGuard`) and the pages.

    With a ``[node]`` section in the settings the app also serves the node's federation
    endpoints (``/federation/v1/...``: signed analyses, identity, witnessed heads) on the
    same port, and for its lifespan long-polls the lead (``lead_url``) and hands the signed
    chain heads to its peers; its :class:`~consortia.federation.node.NodeRunner` is
    ``app.state.node``. One disclosure policy governs federated and REST analyses.

    Refuses (:class:`~consortia.exceptions.ConfigurationError`) a default or short secret
    outside development, and a bad ``[node]`` section. The database engine lives on
    ``app.state.engine`` and is disposed when the app shuts down.
    """
    settings.check_safe()
    node_config = node_config_from_settings(settings)
    # a PostgreSQL connection for each request thread, and two for the node's own work
    # (witnessing, pulling tasks) beside them: none is closed and opened again under load
    engine = make_engine(settings.database_url, pool_size=settings.server_threads + 2)
    try:
        node, witness = _federation(node_config, engine)
        hub = _hub(settings, node_config)
    except BaseException:
        engine.dispose()
        raise
    # password hashing on threads of its own (auth/hashing.py), not the request threads
    password_work = PasswordWork(settings.password_hash_workers, settings.password_hash_queue)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Request handlers run in a thread pool. Python runs one thread at a time, and a thread
        # that holds SQLite's write lock waits for the interpreter lock after every statement
        # while the others run: with more than two threads saves slow down (anyio's default
        # is 40; measurements in bench/RESULTS.md section 3). Processes scale; threads do not.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.server_threads
        try:
            if node is None or node_config is None:
                yield
            else:
                async with running_node(
                    node,
                    pull_from=node_config.pull_url(),
                    witness=witness,
                    witness_interval=node_config.witness_interval_seconds,
                    handle=_member_tasks(node, node_config, engine),
                ):
                    yield
        finally:
            if node is not None:
                node.close()
            password_work.shutdown()
            engine.dispose()

    app = FastAPI(
        title="Consortia",
        version=__version__,
        summary=f"Consortia node {settings.node_name}",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: ours loads nothing
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.password_work = password_work
    app.state.node = node
    app.state.hub_name = None if node_config is None else node_config.hub
    # One disclosure policy for every release: the node's federation config's (read once).
    app.state.analysis_config = analysis_config(node_config)
    install_error_handlers(app)
    routers = api_routers()
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(docs_router(f"{API_PREFIX}/openapi.json"), prefix=API_PREFIX)
    # security headers, credentials before a large body, body limits (consortia.api.guard)
    app.add_middleware(
        ApiGuard,
        app=app,
        prefix=f"{API_PREFIX}/",
        public=public_routes(routers, API_PREFIX),
    )
    app.include_router(create_web_router())
    app.include_router(static_router())
    app.include_router(create_capture_router())
    app.include_router(create_review_router())
    if node is not None and node_config is not None:
        mount_node(app, node, witness=witness, max_message_bytes=node_config.max_message_bytes)
        if node_config.hub is not None:
            app.include_router(
                create_member_studies_router(node, _study_receiver(node, node_config, engine))
            )
            app.add_middleware(
                BodyLimit,
                max_bytes=node_config.max_message_bytes,
                max_json_depth=MAX_MESSAGE_DEPTH,
                paths=(STUDIES_PATH,),
            )
    app.state.hub = hub
    if hub is not None and node_config is not None:
        _mount_hub(app, engine, hub, node_config, settings)
    return app


def _hub(settings: Settings, config: NodeConfig | None) -> HubIdentity | None:
    """The hub's identity, for a node whose ``[node]`` section says ``role = "hub"``."""
    if config is None or config.role != "hub":
        return None
    return hub_service.hub_identity(settings, config)


def _mount_hub(
    app: FastAPI, engine: Engine, hub: HubIdentity, config: NodeConfig, settings: Settings
) -> None:
    """The hub's federation endpoints (joining, the pull queue) and its API."""
    app.include_router(
        create_hub_federation_router(
            engine,
            hub,
            lambda message, wire: hub_service.admit_member(engine, hub, message, wire=wire),
            clock_skew_seconds=settings.clock_skew_seconds,
            consortium=config.consortium,
        )
    )
    app.include_router(
        create_randomisation_router(
            engine,
            hub,
            lambda member, request: randomisation_hub.allocate(engine, member, request),
            clock_skew_seconds=settings.clock_skew_seconds,
        )
    )
    app.include_router(hub_api.router, prefix=API_PREFIX)
    app.include_router(create_hub_pages_router(config.consortium))
    # the innovation centre lives at the hub: its API and pages
    app.include_router(centre_api.router, prefix=API_PREFIX)
    app.include_router(centre_portfolio_api.router, prefix=API_PREFIX)
    app.include_router(create_centre_pages_router())
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_message_bytes,
        max_json_depth=MAX_MESSAGE_DEPTH,
        paths=(JOIN_PATH, RESULTS_PATH, RANDOMISE_PATH),
    )


def _study_receiver(node: NodeRunner, config: NodeConfig, engine: Engine) -> StudyReceiver:
    """A member's answer to a study version from its hub, kept as an offer (or accepted
    at once, by its policy): :func:`consortia.services.hub_studies.answer_study`."""

    def receive(message: Any, wire: bytes) -> dict[str, Any]:
        return hub_studies.answer_study(
            engine,
            node,
            config.hub,
            message,
            wire=wire,
            auto_accept=config.accept_studies == "auto",
        )

    return receive


def _member_tasks(node: NodeRunner, config: NodeConfig, engine: Engine) -> TaskHandler | None:
    """What a member that polls its hub does with a task: a study version goes to its
    offers, anything else to the analysis runner."""
    if config.hub is None:
        return None
    receive = _study_receiver(node, config, engine)

    async def handle(message: Any, wire: bytes, source: str) -> bytes:
        body = message.get("body") if isinstance(message, dict) else None
        if isinstance(body, dict) and body.get("type") == STUDY_VERSION:
            reply = await run_in_threadpool(receive, message, wire)
            return sign_message_wire(reply, node.key, node.name)
        return await node.handle_wire(message, wire=wire, source=source)

    return handle


def _federation(
    config: NodeConfig | None, engine: Engine
) -> tuple[NodeRunner | None, HeadWitness | None]:
    """The node's federation runner on the app's database, for a ``[node]`` section (none
    at a hub, which holds no records)."""
    if config is None or config.role == "hub":
        return None, None
    node = build_node(config, engine=engine)
    return node, node_witness(node)


def freeze_start_up_objects() -> None:
    """Leave the objects that exist now out of every later garbage collection.

    A served process's modules and app are ~200,000 objects that live as long as it does;
    a full collection walks them all (~150 ms here, every thread stopped). Called once, just
    before a server process starts serving (not in tests, which build many apps).
    """
    gc.collect()
    gc.freeze()


def served_app() -> FastAPI:
    """The app of one server worker process (``uvicorn --factory consortia.app:served_app``).

    Settings come from the file named in ``CONSORTIA_SERVE_CONFIG`` (if any) and the
    ``CONSORTIA_*`` environment, as ``consortia serve`` read them. Under ``consortia serve
    --workers N`` (``CONSORTIA_SERVE_PARENT``) the process ends when the supervisor does.
    """
    parent = os.environ.get(SERVE_PARENT)
    if parent:
        die_with_parent(int(parent))
    config = os.environ.get(SERVE_CONFIG)
    app = create_app(load_settings(Path(config) if config else None))
    freeze_start_up_objects()
    return app
