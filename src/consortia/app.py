"""The node's web application: ``create_app(settings)`` builds it; nothing is global.

>>> from consortia.config import Settings
>>> app = create_app(Settings(database_url="sqlite://"))
>>> app.title
'Consortia'
>>> app.state.engine.dispose()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from consortia import __version__
from consortia.api.errors import install_error_handlers
from consortia.api.router import API_PREFIX, create_api_router
from consortia.config import Settings
from consortia.storage.db import make_engine
from consortia.web.pages import create_web_router

__all__ = ["create_app"]


def create_app(settings: Settings) -> FastAPI:
    """The node's app for ``settings``: the REST API under ``/api/v1``.

    Refuses (:class:`~consortia.exceptions.ConfigurationError`) a default or short secret
    outside development. The database engine lives on ``app.state.engine`` and is
    disposed when the app shuts down.
    """
    settings.check_safe()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="Consortia",
        version=__version__,
        summary=f"Consortia node {settings.node_name}",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(create_api_router())
    app.include_router(create_web_router())
    return app
