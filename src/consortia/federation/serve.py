"""Run a member node's federation app: ``python -m consortia.federation.serve CONFIG``.

::

    python -m consortia.federation.serve node.yaml --host 127.0.0.1 --port 8101
    python -m consortia.federation.serve node.yaml --fd 3            # an inherited socket
    python -m consortia.federation.serve node.yaml --pull https://lead.example/

With ``--pull`` (or ``lead_url`` in the config) the node long-polls the lead for tasks
(outbound connections only); the push endpoint is served either way. A config with
``database_url`` is served only on a database at the newest schema revision.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from consortia.exceptions import ConsortiaError
from consortia.federation.apps import create_node_app
from consortia.federation.nodeconfig import build_node, load_node_config
from consortia.federation.witness import node_witness

__all__ = ["main", "serve_node"]


def serve_node(
    config_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    fd: int | None = None,
    pull_from: str | None = None,
    log_level: str = "warning",
) -> None:
    """Load the node config and serve its federation app until interrupted."""
    config = load_node_config(config_path)
    node = build_node(config)
    try:
        app = create_node_app(
            node,
            pull_from=pull_from or config.lead_url,
            witness=node_witness(node),
            witness_interval=config.witness_interval_seconds,
            max_message_bytes=config.max_message_bytes,
        )
        if fd is None:
            uvicorn.run(app, host=host, port=port, log_level=log_level)
            return
        # socket.socket(fileno=…) detects the family (uvicorn's own --fd assumes AF_UNIX).
        sock = socket.socket(fileno=fd)
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
        server.run(sockets=[sock])
    finally:
        node.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints ``error: …`` and returns 1 on a bad config."""
    parser = argparse.ArgumentParser(prog="python -m consortia.federation.serve")
    parser.add_argument("config", type=Path, help="the node's federation config (YAML)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, default=None, help="serve an inherited socket")
    parser.add_argument("--pull", default=None, help="long-poll this lead URL for tasks")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        serve_node(
            args.config,
            host=args.host,
            port=args.port,
            fd=args.fd,
            pull_from=args.pull,
            log_level=args.log_level,
        )
    except ConsortiaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
