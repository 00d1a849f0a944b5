"""``consortia serve``: run the node's web application (REST API) with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.commands.workers import handing_available, serve_workers
from consortia.config import CONFIG_FILE_NAME
from consortia.services.database import require_current_schema

__all__ = ["serve_node_app"]


def serve_node_app(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes (one per CPU core is a good start; each runs "
            "`server_threads` threads).",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the node: the pages, the REST API under /api/v1 (docs at /api/v1/docs) and,
    with a [node] section, the federation endpoints under /federation/v1."""
    import uvicorn

    from consortia.app import SERVE_CONFIG, create_app, freeze_start_up_objects

    with reporting():
        settings = node_settings(config)
        with open_engine(settings) as engine:
            require_current_schema(engine)
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
    if handing_available():  # one listener deals connections to the least busy process
        with reporting():
            serve_workers(host, port, workers, log_level)
        return
    uvicorn.run(
        "consortia.app:served_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
    )
