"""A fresh node is ``consortia init`` + ``consortia serve``: a signed federated analysis
reaches it on the same port as its pages (the server a real process on loopback; ``init``
and ``config check`` run in this process, as the same commands)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.local import analyze_remote
from consortia.federation.signing import (
    Peer,
    TrustStore,
    generate_key,
    load_key,
    public_key_b64,
)
from processes import started, wait_for_http

pytestmark = pytest.mark.slow
ROWS = [f"{i},{10 + 7 * i},{i % 2},{'a' if i % 3 else 'b'}" for i in range(60)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("CONSORTIA_")}


@pytest.fixture(autouse=True)
def _no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def test_a_fresh_node_answers_a_federated_analysis_on_the_port_of_its_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_dir = tmp_path / "node"
    password = tmp_path / "password.txt"
    password.write_text("a long passphrase\n", encoding="utf-8")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    made = CliRunner().invoke(
        app,
        [
            "init",
            str(node_dir),
            "--admin-email",
            "ana@sg.example",
            "--admin-name",
            "Ana",
            "--admin-password-file",
            str(password),
            "--node-name",
            "sgh",
            "--node-url",
            url,
        ],
    )
    assert made.exit_code == 0, made.output
    # the hospital trusts the lead and shares one table: two edits of consortia.toml
    lead_key = generate_key()
    data = tmp_path / "trial.csv"
    data.write_text("mrn,pfs_days,pfs_event,arm\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    with (node_dir / "consortia.toml").open("a", encoding="utf-8") as config:
        config.write(
            f'\n[[node.peers]]\nname = "lead"\nurl = "http://lead.invalid"\n'
            f'public_key = "{public_key_b64(lead_key)}"\n'
            f'\n[node.tables.trial]\nfile = "{data}"\nidentifiers = ["mrn"]\n'
        )
    monkeypatch.chdir(node_dir)  # the node's own folder, where its consortia.toml is
    checked = CliRunner().invoke(app, ["config", "check"])
    assert checked.exit_code == 0, checked.output
    consortia = [sys.executable, "-m", "consortia"]
    with (
        (tmp_path / "serve.log").open("wb") as log,  # the child has its copy
        started(
            [*consortia, "serve", "--port", str(port)],
            cwd=node_dir,
            env=_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        wait_for_http(f"{url}/api/v1/health", process=server)
        node_key = load_key(node_dir / "node_key.pem")
        trust = TrustStore([Peer(name="sgh", url=url, public_key=public_key_b64(node_key))])
        request = {"kind": "describe", "table": "trial", "variable": "pfs_days"}
        result = analyze_remote(request, {"sgh": url}, key=lead_key, trust=trust).to_dict()
        assert result["complete"] is True, result
        assert [node["name"] for node in result["nodes"]] == ["sgh"]
        page = httpx.get(f"{url}/login", timeout=5)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        # a task signed by a key the node does not trust is refused on the same port
        with pytest.raises(AnalysisRefused, match=r"signature\.bad_signature"):
            analyze_remote(request, {"sgh": url}, key=generate_key(), trust=trust)
