"""One node, one app: ``create_app`` serves the pages, the API and the federation endpoints.

The lead reaches the node's ``/federation/v1/analyze`` over real HTTP (in-process ASGI),
on the same app that serves ``/api/v1`` and the pages, on SQLite and on PostgreSQL; the
federation audit goes to the node database's trail.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from consortia.app import create_app
from consortia.config import load_settings
from consortia.federation.database_audit import FEDERATION_CHAIN
from consortia.federation.local import analyze_remote_async
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.tables import Table
from consortia.stats.survival import kaplan_meier
from consortia.storage.audit import verify_trail
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

KM = {"kind": "kaplan_meier", "table": "trial", "time": "pfs_days", "event": "pfs_event"}
KM["group"] = "arm"


@pytest.fixture(autouse=True)
def _no_consortia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def node_toml(database_url: str, trial: Path, lead_key: str, *, min_cell_count: int = 5) -> str:
    return (
        'node_name = "sgh"\nnode_url = "http://sgh.test"\n'
        f'database_url = "{database_url}"\n'
        '[node]\nkey_file = "node_key.pem"\nwitness_interval_seconds = 0\n'
        f"[node.policy]\nmin_cell_count = {min_cell_count}\ntime_bin = 7\n"
        f'[[node.peers]]\nname = "lead"\nurl = "http://lead.test"\npublic_key = "{lead_key}"\n'
        f'[node.tables.trial]\nfile = "{trial}"\nidentifiers = ["mrn"]\n'
    )


def test_the_nodes_one_app_answers_a_signed_analysis_beside_its_pages_and_api(
    tmp_path: Path,
    database_url: str,
    trial_files: dict[str, Path],
    trial_tables: dict[str, Table],
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    lead_key = generate_key()
    node_key = generate_key()
    save_key(node_key, tmp_path / "node_key.pem")
    config = tmp_path / "consortia.toml"
    config.write_text(
        node_toml(database_url, trial_files["sgh"], public_key_b64(lead_key), min_cell_count=4),
        encoding="utf-8",
    )
    app = create_app(load_settings(config))
    trust = TrustStore(
        [Peer(name="sgh", url="http://sgh.test", public_key=public_key_b64(node_key))]
    )

    async def main() -> tuple[dict[str, Any], httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            result = (
                await analyze_remote_async(
                    KM, {"sgh": "http://sgh.test"}, key=lead_key, trust=trust, client=client
                )
            ).to_dict()
            identity = await client.get("/federation/v1/identity")
            health = await client.get("/api/v1/health")
            page = await client.get("/login")
        return result, identity, health, page

    try:
        result, identity, health, page = asyncio.run(main())
        assert identity.json()["public_key"] == public_key_b64(node_key)
        assert health.status_code == 200
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert result["complete"] is True
        table = trial_tables["sgh"]
        expected = kaplan_meier(
            table.numeric("pfs_days"), table.numeric("pfs_event"), table.column("arm"), time_bin=7
        )
        for group, curve in expected.groups.items():  # tolerance: rtol 1e-8
            np.testing.assert_allclose(
                result["estimates"]["groups"][group]["survival"], curve.survival, rtol=1e-8
            )
        # the REST analyses and the federation apply the one policy of the section
        assert app.state.analysis_config.policy.min_cell_count == 4
        assert app.state.node.policy.min_cell_count == 4
        with app.state.engine.connect() as connection:
            report = verify_trail(connection, chain=FEDERATION_CHAIN)
        assert report.ok
        assert report.events >= 1
    finally:
        app.state.node.close()
        app.state.engine.dispose()


def test_a_node_without_a_section_serves_no_federation_endpoint(
    tmp_path: Path, database_url: str
) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text(f'database_url = "{database_url}"\n', encoding="utf-8")
    app = create_app(load_settings(config))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            return await client.get("/federation/v1/identity")

    try:
        assert app.state.node is None
        assert asyncio.run(main()).status_code == 404
    finally:
        app.state.engine.dispose()


def test_a_bad_node_section_stops_the_app_before_it_opens_the_database(tmp_path: Path) -> None:
    from consortia.exceptions import ConfigurationError

    config = tmp_path / "consortia.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "node.db"}"\n[node]\nkey_file = 3\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=f"{config}:3: node.key_file: "):
        create_app(load_settings(config))
    assert not (tmp_path / "node.db").exists()


def test_the_nodes_one_app_long_polls_its_lead_for_its_lifespan(
    tmp_path: Path, trial_files: dict[str, Path]
) -> None:
    import socket

    import uvicorn

    from consortia.federation.apps import create_lead_app
    from consortia.federation.coordinator import Coordinator
    from consortia.federation.transport import NodeHandle

    database_url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    lead_key, node_key = generate_key(), generate_key()
    save_key(node_key, tmp_path / "node_key.pem")
    lead_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    lead_socket.bind(("127.0.0.1", 0))
    lead_socket.listen(16)
    try:  # the socket is closed however the test ends
        lead_url = f"http://127.0.0.1:{lead_socket.getsockname()[1]}"
        config = tmp_path / "consortia.toml"
        config.write_text(
            node_toml(database_url, trial_files["sgh"], public_key_b64(lead_key)).replace(
                "[node]\n", f'[node]\nlead_url = "{lead_url}"\n', 1
            ),
            encoding="utf-8",
        )
        app = create_app(load_settings(config))
        trust = TrustStore(
            [Peer(name="sgh", url="http://sgh.test", public_key=public_key_b64(node_key))]
        )
        coordinator = Coordinator("lead", lead_key, trust, round_timeout=20)

        async def main() -> dict[str, Any]:
            server = uvicorn.Server(
                uvicorn.Config(create_lead_app(coordinator), log_level="warning")
            )
            serving = asyncio.create_task(server.serve(sockets=[lead_socket]))
            try:
                while not server.started:
                    assert not serving.done(), "the lead's server stopped before it served"
                    await asyncio.sleep(0.01)
                async with app.router.lifespan_context(app):
                    try:
                        return (
                            await coordinator.run_analysis(
                                KM, [NodeHandle("sgh")], coordinator.broker
                            )
                        ).to_dict()
                    finally:
                        coordinator.broker.close()  # ends the node's long poll
            finally:
                server.should_exit = True
                await serving

        result = asyncio.run(main())
    finally:
        lead_socket.close()
    assert result["complete"] is True
    assert [node["name"] for node in result["nodes"]] == ["sgh"]
