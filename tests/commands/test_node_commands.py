"""``consortia init | db | user | token | serve``: set up and administer a node from a shell.

The commands are registered here exactly as cli.py registers them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from argon2 import PasswordHasher
from typer.testing import CliRunner

from consortia.auth.principal import Grant, Role
from consortia.commands.db import db_app
from consortia.commands.init import init_node
from consortia.commands.serve import serve_node_app
from consortia.commands.token import token_app
from consortia.commands.user import user_app
from consortia.config import load_settings
from consortia.exceptions import AuthenticationError
from consortia.services import authentication
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.migrations import current_revision, head_revision

app = typer.Typer(pretty_exceptions_enable=False)
app.command("init")(init_node)
app.command("serve")(serve_node_app)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

runner = CliRunner()
PASSWORD = "a long passphrase"


@pytest.fixture(autouse=True)
def no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: these tests are about the commands, not hashing cost."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password.txt"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    return path


def _init(directory: Path, password_file: Path) -> None:
    result = runner.invoke(
        app,
        [
            "init",
            str(directory),
            "--admin-email",
            "Admin@SG.example",
            "--admin-name",
            "Ada Admin",
            "--admin-password-file",
            str(password_file),
        ],
    )
    assert result.exit_code == 0, result.output


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_a_private_config_key_database_and_administrator(
    tmp_path: Path, password_file: Path
) -> None:
    node_dir = tmp_path / "node"
    _init(node_dir, password_file)
    config = node_dir / "consortia.toml"
    assert _mode(config) == 0o600
    assert _mode(node_dir / "node_key.pem") == 0o600
    assert _mode(node_dir / "consortia.db") == 0o600
    settings = load_settings(config)
    settings.check_safe()
    assert settings.environment.value == "production"
    engine = make_engine(settings.database_url)
    try:
        assert current_revision(engine) == head_revision()
        login = authentication.login(engine, settings, "admin@sg.example", PASSWORD)
        assert login.principal.grants == {Grant("*", "*", Role.NODE_ADMIN)}
        with engine.connect() as connection:
            assert verify_trail(connection).ok
            actions = [e.action for e in iter_events(connection, chain="node")]
        assert actions == ["user.create", "grant.add", "login"]
    finally:
        engine.dispose()


def test_init_refuses_to_overwrite_an_existing_node(tmp_path: Path, password_file: Path) -> None:
    _init(tmp_path, password_file)
    config_before = (tmp_path / "consortia.toml").read_bytes()
    result = runner.invoke(
        app,
        ["init", str(tmp_path), "--admin-email", "x@sg.example", "--admin-name", "X",
         "--admin-password-file", str(password_file)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "already holds a node" in result.output
    assert (tmp_path / "consortia.toml").read_bytes() == config_before


def test_init_with_a_weak_password_writes_nothing(tmp_path: Path) -> None:
    weak = tmp_path / "weak.txt"
    weak.write_text("short\n", encoding="utf-8")
    node_dir = tmp_path / "node"
    result = runner.invoke(
        app,
        ["init", str(node_dir), "--admin-email", "a@sg.example", "--admin-name", "A",
         "--admin-password-file", str(weak)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "at least 12" in result.output
    assert not node_dir.exists() or list(node_dir.iterdir()) == []
    assert "Traceback" not in result.output


def test_init_migrates_the_database_named_by_the_environment(
    tmp_path: Path, password_file: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", database_url)
    _init(tmp_path, password_file)
    assert not (tmp_path / "consortia.db").exists()
    written = tomllib.loads((tmp_path / "consortia.toml").read_text(encoding="utf-8"))
    assert "database_url" not in written
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_db_upgrade_migrates_an_empty_database_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", database_url)
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"from empty to revision {head_revision()}" in first.output
    again = runner.invoke(app, ["db", "upgrade"])
    assert "already at revision" in again.output
    assert runner.invoke(app, ["db", "current"]).exit_code == 0


def test_people_roles_and_tokens_are_managed_from_the_shell(
    tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _init(tmp_path, password_file)
    monkeypatch.chdir(tmp_path)  # ./consortia.toml is found without --config

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    run("user", "add", "ana@sg.example", "--name", "Ana Lim", "--password-file", str(password_file))
    run(
        "user",
        "grant",
        "ana@sg.example",
        "--study",
        "CART01",
        "--site",
        "SG01",
        "--role",
        "coordinator",
    )
    run(
        "user",
        "grant",
        "ana@sg.example",
        "--study",
        "CART01",
        "--site",
        "SH01",
        "--role",
        "monitor",
    )
    listing = run("user", "list")
    assert "coordinator at CART01/SG01" in listing
    assert "monitor at CART01/SH01" in listing
    run(
        "user",
        "revoke",
        "ana@sg.example",
        "--study",
        "CART01",
        "--site",
        "SH01",
        "--role",
        "monitor",
    )
    assert "monitor" not in run("user", "list")
    token = run(
        "token",
        "create",
        "ana@sg.example",
        "--name",
        "etl",
        "--expires",
        "30d",
        "--study",
        "CART01",
    ).strip()
    settings = load_settings(tmp_path / "consortia.toml")
    engine = make_engine(settings.database_url)
    try:
        principal = authentication.principal_from_token(engine, token)
        assert principal.grants == {Grant("CART01", "SG01", Role.COORDINATOR)}
        assert "etl" in run("token", "list", "ana@sg.example")
        run("token", "revoke", "ana@sg.example", "1")
        with pytest.raises(AuthenticationError, match="revoked"):
            authentication.principal_from_token(engine, token)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "user",
                "grant",
                "nobody@sg.example",
                "--study",
                "S",
                "--site",
                "X",
                "--role",
                "monitor",
            ],
            "not found",
        ),
        (
            ["user", "grant", "admin@sg.example", "--study", "S", "--site", "X", "--role", "boss"],
            "not a role",
        ),
        (
            [
                "token",
                "create",
                "admin@sg.example",
                "--name",
                "t",
                "--expires",
                "forever",
                "--all-studies",
            ],
            "not a lifetime",
        ),
        (["token", "create", "admin@sg.example", "--name", "t"], "--all-studies"),
        (["token", "revoke", "admin@sg.example", "99"], "not found"),
    ],
)
def test_mistakes_are_one_line_messages_not_tracebacks(
    tmp_path: Path, password_file: Path, args: list[str], message: str
) -> None:
    _init(tmp_path, password_file)
    result = runner.invoke(app, [*args, "--config", str(tmp_path / "consortia.toml")])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_database_that_is_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert "consortia db upgrade" in result.output


def test_serve_refuses_the_default_secret_outside_development(
    tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _init(tmp_path, password_file)
    monkeypatch.setenv("CONSORTIA_SECRET_KEY", "change-me-development-only")
    result = runner.invoke(app, ["serve", "--config", str(tmp_path / "consortia.toml")])
    assert result.exit_code == 1
    assert "CONSORTIA_SECRET_KEY" in result.output


def test_init_asks_for_the_administrators_details_when_not_given(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["init", str(tmp_path)],
        input=f"ana@sg.example\nAna Lim\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "ana@sg.example is the node administrator" in result.output
    # the rule is said before the password is typed, not after it is typed twice
    assert "Administrator password (at least 12 characters): " in result.output


def test_a_password_asked_for_says_the_nodes_shortest_length_first(
    tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _init(tmp_path, password_file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONSORTIA_MIN_PASSWORD_LENGTH", "20")
    long_enough = "a passphrase of twenty-odd characters"
    added = runner.invoke(
        app,
        ["user", "add", "ana@sg.example", "--name", "Ana Lim"],
        input=f"{long_enough}\n{long_enough}\n",
    )
    assert added.exit_code == 0, added.output
    assert added.output.startswith("Password (at least 20 characters): ")
    short = runner.invoke(
        app, ["user", "password", "ana@sg.example"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert short.exit_code == 1
    assert short.output.startswith("New password (at least 20 characters): ")
    assert "use at least 20" in short.output


def test_a_served_worker_leaves_its_start_up_objects_out_of_garbage_collection(
    tmp_path: Path,
) -> None:
    # in a child process: freezing is for the server, not for this test session
    script = (
        "import gc; from consortia.app import served_app; app = served_app(); "
        "print(gc.get_freeze_count()); app.state.engine.dispose()"
    )
    env = dict(
        os.environ,
        CONSORTIA_DATABASE_URL=f"sqlite:///{tmp_path / 'n.db'}",
        CONSORTIA_SERVE_CONFIG="",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 50_000  # the modules' and the app's objects


def test_an_account_is_deactivated_and_activated_from_the_shell(
    tmp_path: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _init(tmp_path, password_file)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    run("user", "add", "ana@sg.example", "--name", "Ana Lim", "--password-file", str(password_file))
    token = run("token", "create", "ana@sg.example", "--name", "etl", "--all-studies")
    token = token.splitlines()[0].strip()
    settings = load_settings(tmp_path / "consortia.toml")
    engine = make_engine(settings.database_url)
    try:
        session = authentication.login(engine, settings, "ana@sg.example", PASSWORD)
        assert "sessions ended, tokens revoked" in run("user", "deactivate", "ana@sg.example")
        with pytest.raises(AuthenticationError):
            authentication.principal_from_token(engine, token)
        with pytest.raises(AuthenticationError):
            authentication.principal_from_session(engine, settings, session.cookie_value)
        with pytest.raises(AuthenticationError):
            authentication.login(engine, settings, "ana@sg.example", PASSWORD)
        assert "(inactive)" in run("user", "list")
        assert "already inactive" in run("user", "deactivate", "ana@sg.example", code=1)
        run("user", "activate", "ana@sg.example")
        authentication.login(engine, settings, "ana@sg.example", PASSWORD)
        with pytest.raises(AuthenticationError, match="revoked"):
            authentication.principal_from_token(engine, token)
        with engine.connect() as connection:
            actions = [e.action for e in iter_events(connection, chain="node")]
        deactivated = actions.index("user.deactivate")
        assert actions[deactivated : deactivated + 3] == [
            "user.deactivate",
            "session.end_all",
            "token.revoke",
        ]
        assert "user.activate" in actions
    finally:
        engine.dispose()
