"""Three real node processes on loopback, reached by push and by pull.

Each node runs ``python -m consortia.federation.serve node.yaml --fd N`` on a socket this
test bound to port 0 (so the port is free and known before the process starts); the lead's
pull endpoints are served from this process on another port-0 socket. The fixture
always ends the processes (terminate, wait, kill), however the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortia.federation.apps import create_lead_app
from consortia.federation.audit import read_audit_log, verify_audit_log
from consortia.federation.coordinator import Coordinator
from consortia.federation.local import analyze_remote_async
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.tables import Table
from consortia.federation.transport import NodeHandle
from consortia.stats.survival import kaplan_meier
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
    folders: dict[str, Path]


def wait_until_ready(urls: dict[str, str], processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Poll each node's identity until it answers (a node that exits fails at once)."""
    for name, url in urls.items():
        wait_for_http(url + "/federation/v1/identity", process=processes[name])


@pytest.fixture
def cluster(tmp_path: Path, trial_files: dict[str, Path]) -> Iterator[Cluster]:
    lead_key = generate_key()
    lead_socket = listening_socket()
    lead_peer = {"name": "lead", "url": url_of(lead_socket), "public_key": public_key_b64(lead_key)}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    peers: list[Peer] = []
    folders: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(lead_socket.close)
        for name, trial_file in trial_files.items():
            folder = tmp_path / f"node-{name}"
            key = generate_key()
            save_key(key, folder / "node.pem")
            sock = listening_socket()
            urls[name] = url_of(sock)
            peers.append(Peer(name=name, url=urls[name], public_key=public_key_b64(key)))
            config = {
                "name": name,
                "url": urls[name],
                "key_file": "node.pem",
                "peers": [lead_peer],
                "lead_url": url_of(lead_socket),
                "tables": {"trial": {"file": str(trial_file), "identifiers": ["mrn"]}},
                "audit_log": "audit.jsonl",
            }
            (folder / "node.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
            with sock, (folder / "server.log").open("wb") as log:  # the child has its copies
                processes[name] = stack.enter_context(
                    started(
                        [
                            sys.executable,
                            "-m",
                            "consortia.federation.serve",
                            str(folder / "node.yaml"),
                            "--fd",
                            str(sock.fileno()),
                        ],
                        pass_fds=(sock.fileno(),),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            folders[name] = folder
        wait_until_ready(urls, processes)
        yield Cluster(lead_key, lead_socket, urls, TrustStore(peers), folders)


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
    for folder in cluster.folders.values():
        assert verify_audit_log(folder / "audit.jsonl") == 2
        events = [record["event"] for record in read_audit_log(folder / "audit.jsonl")]
        assert [event["decision"] for event in events] == ["released", "released"]
