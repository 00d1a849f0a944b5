"""``consortia serve``: run the node's web application (REST API) with uvicorn.

One process by default. ``--workers N`` runs uvicorn's own process manager: it binds the
port, starts N worker processes that each build the app from ``consortia.app:served_app``
(the same configuration file, named to them in ``CONSORTIA_SERVE_CONFIG``), restarts one
that dies after it started, stops the whole server if one fails while starting, and on
SIGINT or SIGTERM asks every worker to finish its requests and waits for them. Several
processes need PostgreSQL: a SQLite node is served by one process (docs/production.md).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.config import CONFIG_FILE_NAME
from consortia.exceptions import ConfigurationError
from consortia.services.database import is_sqlite_url, require_current_schema

__all__ = ["serve_node_app"]


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, with a message saying so (uvicorn would
    log only the operating system's error)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None


def serve_node_app(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes, run by uvicorn's process manager (PostgreSQL only; one "
            "per CPU core is a good start; each runs `server_threads` threads).",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the node: the pages, the REST API under /api/v1 (docs at /api/v1/docs) and,
    with a [node] section, the federation endpoints under /federation/v1."""
    import uvicorn

    from consortia.app import SERVE_CONFIG, SERVE_PARENT, create_app, freeze_start_up_objects

    with reporting():
        settings = node_settings(config)
        if workers > 1 and is_sqlite_url(settings.database_url):
            raise ConfigurationError(
                f"--workers {workers}: a SQLite node is served by one process (SQLite "
                "writes one transaction at a time); for several processes move the node "
                "to PostgreSQL (docs/production.md, 'Several worker processes')"
            )
        with open_engine(settings) as engine:
            require_current_schema(engine)
        _check_port_free(host, port)
        app = create_app(settings)
    federation = " and /federation/v1" if app.state.node is not None else ""
    typer.echo(
        f"serving node {settings.node_name} on http://{host}:{port}/api/v1{federation} "
        f"({workers} process{'es' if workers > 1 else ''})",
        err=True,
    )
    log_level = settings.log_level.lower()
    if workers == 1:
        freeze_start_up_objects()
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    app.state.engine.dispose()  # each worker process builds its own app and engine
    if config is None and Path(CONFIG_FILE_NAME).is_file():
        config = Path(CONFIG_FILE_NAME)
    os.environ[SERVE_CONFIG] = str(config.resolve()) if config is not None else ""
    os.environ[SERVE_PARENT] = str(os.getpid())
    uvicorn.run(
        "consortia.app:served_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
    )
