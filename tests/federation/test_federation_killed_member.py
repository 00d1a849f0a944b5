"""A member node process killed in the middle of an analysis, pushed to over real loopback
HTTP: the analysis names it and is never reported complete. Without ``allow_partial`` it
fails naming the member; with it, the fit restarts without the member, says
``complete: false`` and lists it in ``missing_nodes``, and the estimates are those of the
members that answered (equal to the pooled fit of their rows)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortia.exceptions import NodeUnavailableError
from consortia.federation.coordinator import Coordinator
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.tables import Table, concat_tables
from consortia.federation.transport import NodeHandle, PushTransport
from consortia.stats.glm import fit_glm
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from nodetoml import free_port, serve_args, write_node_toml
from processes import started, wait_for_http

pytestmark = pytest.mark.slow
GLM = {
    "kind": "glm",
    "family": "binomial",
    "table": "trial",
    "outcome": "response",
    "covariates": ["age", "arm"],
    "timeout": 60.0,
}
VICTIM = "nuh"


class KillAfter:
    """Push, and kill ``victim``'s process once it has answered ``answers`` tasks."""

    def __init__(self, push: PushTransport, process: subprocess.Popen[bytes], answers: int):
        self.push = push
        self.process = process
        self.left = answers

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        reply = await self.push.send(node, message)
        if node.name == VICTIM:
            self.left -= 1
            if self.left == 0:
                self.process.kill()
                self.process.wait()
        return reply


@pytest.fixture
def members(
    tmp_path: Path, trial_files: dict[str, Path]
) -> Iterator[tuple[Any, dict[str, str], dict[str, subprocess.Popen[bytes]]]]:
    lead_key = generate_key()
    lead_peer = {"name": "lead", "url": "", "public_key": public_key_b64(lead_key)}
    urls: dict[str, str] = {}
    peers: list[Peer] = []
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with contextlib.ExitStack() as stack:
        for name, trial_file in trial_files.items():
            folder = tmp_path / f"node-{name}"
            key = generate_key()
            save_key(key, folder / "node.pem")
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            peers.append(Peer(name=name, url=urls[name], public_key=public_key_b64(key)))
            database = f"sqlite:///{folder / 'node.db'}"
            engine = make_engine(database)
            upgrade(engine)
            engine.dispose()
            config = write_node_toml(
                folder,
                {
                    "name": name,
                    "url": urls[name],
                    "database_url": database,
                    "key_file": "node.pem",
                    "peers": [lead_peer],
                    "tables": {"trial": {"file": str(trial_file), "identifiers": ["mrn"]}},
                    "witness_interval_seconds": 0,
                },
            )
            with (folder / "server.log").open("wb") as log:
                processes[name] = stack.enter_context(
                    started(serve_args(config, port), stdout=log, stderr=subprocess.STDOUT)
                )
        for name, url in urls.items():
            wait_for_http(url + "/api/v1/health", process=processes[name])
        coordinator = Coordinator("lead", lead_key, TrustStore(peers), round_timeout=60)
        yield coordinator, urls, processes


def run(coordinator: Coordinator, urls: dict[str, str], transport: Any, request: Any) -> Any:
    handles = [NodeHandle(name, url) for name, url in urls.items()]
    return coordinator.run_analysis(request, handles, transport)


def test_a_member_killed_mid_analysis_is_named_and_nothing_partial_is_complete(
    members: tuple[Any, dict[str, str], dict[str, subprocess.Popen[bytes]]],
    trial_tables: dict[str, Table],
) -> None:
    coordinator, urls, processes = members

    async def partial() -> Any:
        async with PushTransport() as push:
            # the victim answers the design round and one Newton round, then dies
            killer = KillAfter(push, processes[VICTIM], answers=2)
            return await run(coordinator, urls, killer, {**GLM, "allow_partial": True})

    result = asyncio.run(partial()).to_dict()
    assert processes[VICTIM].returncode is not None  # it really died mid-fit
    assert result["complete"] is False
    assert result["missing_nodes"] == [VICTIM]
    assert [node["name"] for node in result["nodes"]] == ["sgh", "ruijin"]
    kept = concat_tables([trial_tables["sgh"], trial_tables["ruijin"]])
    expected = fit_glm(
        kept.numeric("response"),
        {"age": kept.numeric("age"), "arm": kept.column("arm")},
        ["age", "arm"],
        family="binomial",
    )
    coef = [result["estimates"]["coef"][name] for name in expected.covariates]
    np.testing.assert_allclose(coef, expected.coef, rtol=1e-8)

    async def strict() -> Any:
        async with PushTransport() as push:
            return await run(coordinator, urls, push, GLM)

    with pytest.raises(NodeUnavailableError) as failed:
        asyncio.run(strict())
    assert f"node {VICTIM!r}" in str(failed.value)
    assert failed.value.node == VICTIM
