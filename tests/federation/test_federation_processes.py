"""Three real node processes on loopback, reached by push and by pull.

Each node is what a hospital runs: a folder with its key and a consortia.toml whose [node]
section names its table, trusts the lead and names the lead's URL (``lead_url``: the pull
transport), served by ``consortia serve`` on a free port; the test waits until each answers
``/api/v1/health``. The first node's database is the ``database_url`` fixture's (SQLite,
then PostgreSQL), the others' SQLite files. The lead's pull endpoints are served from this
process on a port-0 socket. Every process is ended (terminate, wait, kill), however the
test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortia.federation.apps import create_lead_app
from consortia.federation.coordinator import Coordinator
from consortia.federation.database_audit import FEDERATION_CHAIN
from consortia.federation.local import analyze_remote_async
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.tables import Table
from consortia.federation.transport import NodeHandle
from consortia.stats.survival import kaplan_meier
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from nodetoml import free_port, serve_args, write_node_toml
from processes import START_SECONDS, started, wait_for_http

pytestmark = pytest.mark.slow
ROUND = 60.0  # seconds a round may take: three processes answer on a machine that may be busy
KM = {
    "kind": "kaplan_meier",
    "table": "trial",
    "time": "pfs_days",
    "event": "pfs_event",
    "group": "arm",
}


def listening_socket() -> socket.socket:
    """A loopback TCP socket on a free port chosen by the OS, already listening.

    ``IPPROTO_TCP`` is named so that asyncio sets ``TCP_NODELAY`` on accepted connections
    (it checks ``proto``): with ``proto`` 0 every long-poll answer waits ~40 ms for the
    poller's delayed ACK (Nagle).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Cluster:
    lead_key: Ed25519PrivateKey
    lead_socket: socket.socket
    nodes: dict[str, str]  # name -> url
    trust: TrustStore
    databases: dict[str, str]  # name -> database URL


@pytest.fixture
def cluster(tmp_path: Path, trial_files: dict[str, Path], database_url: str) -> Iterator[Cluster]:
    lead_key = generate_key()
    lead_socket = listening_socket()
    lead_peer = {"name": "lead", "url": url_of(lead_socket), "public_key": public_key_b64(lead_key)}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    peers: list[Peer] = []
    databases: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(lead_socket.close)
        for name, trial_file in trial_files.items():
            folder = tmp_path / f"node-{name}"
            key = generate_key()
            save_key(key, folder / "node.pem")
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            peers.append(Peer(name=name, url=urls[name], public_key=public_key_b64(key)))
            databases[name] = database_url if not databases else f"sqlite:///{folder / 'node.db'}"
            engine = make_engine(databases[name])
            upgrade(engine)  # what `consortia db upgrade` does
            engine.dispose()
            config = write_node_toml(
                folder,
                {
                    "name": name,
                    "url": urls[name],
                    "database_url": databases[name],
                    "key_file": "node.pem",
                    "peers": [lead_peer],
                    "lead_url": url_of(lead_socket),
                    "tables": {"trial": {"file": str(trial_file), "identifiers": ["mrn"]}},
                    "witness_interval_seconds": 0,
                },
            )
            with (folder / "server.log").open("wb") as log:  # the child has its copy
                processes[name] = stack.enter_context(
                    started(serve_args(config, port), stdout=log, stderr=subprocess.STDOUT)
                )
        for name, url in urls.items():  # all start at once; each is waited for
            wait_for_http(url + "/api/v1/health", process=processes[name])
        yield Cluster(lead_key, lead_socket, urls, TrustStore(peers), databases)


async def pull_analysis(cluster: Cluster, request: dict[str, Any]) -> dict[str, Any]:
    """Serve the lead's pull endpoints here and run ``request`` through them."""
    coordinator = Coordinator("lead", cluster.lead_key, cluster.trust, round_timeout=ROUND)
    config = uvicorn.Config(
        create_lead_app(coordinator), log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[cluster.lead_socket]))
    try:
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            if serving.done():  # it stopped before it served: say why
                await serving
                pytest.fail("the lead's server stopped before it started serving")
            if time.monotonic() > deadline:
                pytest.fail(f"the lead's server did not start within {START_SECONDS:g} s")
            await asyncio.sleep(0.01)
        handles = [NodeHandle(name) for name in cluster.nodes]
        return (await coordinator.run_analysis(request, handles, coordinator.broker)).to_dict()
    finally:
        coordinator.broker.close()  # ends the nodes' long polls before the server stops
        server.should_exit = True
        await serving


def test_three_node_processes_answer_over_push_and_over_pull(
    cluster: Cluster, pooled: Table
) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        pushed = (
            await analyze_remote_async(
                KM, cluster.nodes, key=cluster.lead_key, trust=cluster.trust, round_timeout=ROUND
            )
        ).to_dict()
        pulled = await pull_analysis(cluster, KM)
        return pushed, pulled

    pushed, pulled = asyncio.run(main())
    expected = kaplan_meier(
        pooled.numeric("pfs_days"), pooled.numeric("pfs_event"), pooled.column("arm"), time_bin=7
    )
    for result in (pushed, pulled):
        assert result["complete"] is True
        assert [node["name"] for node in result["nodes"]] == list(cluster.nodes)
        for group, curve in expected.groups.items():
            np.testing.assert_allclose(
                result["estimates"]["groups"][group]["survival"], curve.survival, rtol=1e-8
            )
    assert pushed["estimates"] == pulled["estimates"]
    for name, url in cluster.databases.items():  # each node audited both releases
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                assert verify_trail(connection, chain=FEDERATION_CHAIN).ok
                events = list(iter_events(connection, chain=FEDERATION_CHAIN))
        finally:
            engine.dispose()
        assert [event.action for event in events] == ["federation.released"] * 2, name
