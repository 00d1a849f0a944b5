"""``consortia serve``: run the node's web application (REST API) with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.exceptions import ConfigurationError
from consortia.storage.migrations import current_revision, head_revision

__all__ = ["serve_node_app"]


def serve_node_app(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the node: the REST API under /api/v1 (docs at /api/v1/docs)."""
    import uvicorn

    from consortia.app import create_app

    with reporting():
        settings = node_settings(config)
        with open_engine(settings) as engine:
            current = current_revision(engine)
        if current != head_revision():
            raise ConfigurationError(
                f"the database is at revision {current or 'empty'}, the code needs "
                f"{head_revision()}: run `consortia db upgrade` first"
            )
        app = create_app(settings)
    typer.echo(f"serving node {settings.node_name} on http://{host}:{port}/api/v1", err=True)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
