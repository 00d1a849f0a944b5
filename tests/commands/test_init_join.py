"""A failed ``consortia init DIR --join INVITATION`` leaves nothing behind, at the hub or
on disk.

The hub is its real app served by uvicorn on a loopback port (a thread), on SQLite and
PostgreSQL; the node is made by the real command. A node whose folder cannot be written,
or whose local part fails (its database holds another node's users), is never registered
at the hub, its invitation stays unused (the same invitation then works), and no folder or
file made for it is left. A join the hub refuses removes the node that was built for it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from typer.testing import CliRunner

from consortia.app import create_app
from consortia.cli import app as cli
from consortia.config import Settings
from consortia.federation.signing import generate_key, save_key
from consortia.services import hub as hub_service
from consortia.services import users
from consortia.services.common import cli_operator
from consortia.services.hub import HubIdentity
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.tables import hub_invitation
from processes import stop_thread, wait_until

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Hub:
    engine: sa.Engine
    identity: HubIdentity

    def invite(self, name: str = "sgh") -> tuple[str, str]:
        invitation, record = hub_service.create_invitation(
            self.engine, cli_operator(), self.identity, name
        )
        return invitation.encode(), record.id

    def members(self) -> list[str]:
        return [m.name for m in hub_service.list_members(self.engine, cli_operator())]

    def used(self, invitation_id: str) -> bool:
        with self.engine.connect() as connection:
            used_at = connection.execute(
                sa.select(hub_invitation.c.used_at).where(hub_invitation.c.id == invitation_id)
            ).scalar_one()
        return used_at is not None


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    engine = make_engine(database_url)
    upgrade(engine)
    key = generate_key()
    (tmp_path / "hub").mkdir()
    save_key(key, tmp_path / "hub" / "hub.pem")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=database_url,
        environment="test",
        secret_key="a test secret of at least thirty-two characters",
        node_name="hub",
        node_url=url,
        node_dir=tmp_path / "hub",
        node={"key_file": "hub.pem", "role": "hub", "consortium": "Test consortium"},
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to serve the hub")
        yield Hub(engine, HubIdentity("hub", url, key))
    finally:
        try:
            stop_thread(thread, lambda: setattr(server, "should_exit", True), what="the hub")
        finally:
            app.state.engine.dispose()
            engine.dispose()


def init_join(folder: Path, invitation: str, tmp_path: Path, name: str = "sgh") -> object:
    (tmp_path / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    return CliRunner().invoke(
        cli,
        [
            *("init", str(folder), "--join", invitation, "--node-name", name),
            *("--node-url", "http://127.0.0.1:9", "--institution", "Merlion General"),
            *("--country", "SG", "--admin-email", "admin@sgh.example"),
            *("--admin-name", "Admin", "--admin-password-file", str(tmp_path / "password")),
            *("--environment", "development"),
        ],
    )


def test_a_node_whose_folder_cannot_be_written_is_not_registered_at_the_hub(
    hub: Hub, tmp_path: Path
) -> None:
    invitation, invitation_id = hub.invite()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the node's parent folder would be")
    result = init_join(blocker / "sgh", invitation, tmp_path)
    assert result.exit_code != 0  # type: ignore[attr-defined]
    assert hub.members() == []
    assert not hub.used(invitation_id)
    assert blocker.read_text() == "a file where the node's parent folder would be"
    # the invitation was not spent: the hospital fixes its folder and joins with it
    good = init_join(tmp_path / "sgh", invitation, tmp_path)
    assert good.exit_code == 0, good.output  # type: ignore[attr-defined]
    assert hub.members() == ["sgh"]


def test_a_node_whose_local_part_fails_is_not_registered_and_leaves_no_folder(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = f"sqlite:///{tmp_path / 'taken.db'}"
    engine = make_engine(taken)
    upgrade(engine)
    users.create_user(
        engine, users.cli_operator(), email="x@other.example", name="X", password=PASSWORD
    )
    engine.dispose()
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", taken)
    invitation, invitation_id = hub.invite()
    folder = tmp_path / "new" / "sgh"
    result = init_join(folder, invitation, tmp_path)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "already holds a node's users" in result.output  # type: ignore[attr-defined]
    assert hub.members() == []
    assert not hub.used(invitation_id)
    assert not (tmp_path / "new").exists()  # every folder it made is gone


def test_a_join_the_hub_refuses_removes_the_node_built_for_it(hub: Hub, tmp_path: Path) -> None:
    invitation, _ = hub.invite("sgh")
    folder = tmp_path / "other"
    result = init_join(folder, invitation, tmp_path, name="other")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "the invitation is for 'sgh', not 'other'" in result.output  # type: ignore[attr-defined]
    assert hub.members() == []
    assert not folder.exists()
