"""``consortia backup`` and ``consortia restore`` from a shell, as cli.py registers them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from consortia.cli import app
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONSORTIA_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


def test_backup_and_restore_a_node_from_the_shell(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("a long passphrase\n", encoding="utf-8")
    source = tmp_path / "node"
    done = runner.invoke(
        app,
        [
            *("init", str(source), "--admin-email", "ada@sg.example", "--admin-name", "Ada"),
            *("--admin-password-file", str(password)),
        ],
    )
    assert done.exit_code == 0, done.output
    config = str(source / "consortia.toml")

    done = runner.invoke(app, ["backup", str(tmp_path / "b"), "--config", config])
    assert done.exit_code == 0, done.output
    assert "manifest sha256 " in done.output
    assert "holds the node's secrets" in done.output

    done = runner.invoke(app, ["restore", str(tmp_path / "b"), str(tmp_path / "copy")])
    assert done.exit_code == 0, done.output
    engine = make_engine(f"sqlite:///{tmp_path / 'copy' / 'consortia.db'}")
    try:
        with engine.connect() as connection:
            assert verify_trail(connection).ok
            actions = [event.action for event in iter_events(connection, chain="node")]
        assert actions[-1] == "restore"
        assert "user.create" in actions
    finally:
        engine.dispose()
    done = runner.invoke(app, ["db", "current", "--config", str(tmp_path / "copy/consortia.toml")])
    assert done.exit_code == 0, done.output

    # the source's trail records the backup, after the snapshot
    engine = make_engine(f"sqlite:///{source / 'consortia.db'}")
    try:
        with engine.connect() as connection:
            assert [e.action for e in iter_events(connection, chain="node")][-1] == "backup"
    finally:
        engine.dispose()

    # refused: one line, exit 1, no traceback
    done = runner.invoke(app, ["restore", str(tmp_path / "b"), str(tmp_path / "copy")])
    assert done.exit_code == 1
    last = done.output.splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'copy'}: not an empty node, it holds ")
    done = runner.invoke(app, ["backup", str(tmp_path / "b"), "--config", config])
    assert done.exit_code == 1
    assert done.output == (
        f"error: {tmp_path / 'b'}: exists and is not an empty folder; choose a new one\n"
    )
