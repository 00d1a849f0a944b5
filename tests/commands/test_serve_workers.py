"""``consortia serve --workers N``: uvicorn's own process manager, on PostgreSQL only.

Real processes on loopback: the supervisor starts N worker processes that each read the
node's configuration, SIGTERM or SIGINT stops every one of them (no orphan is left), a
worker whose supervisor is killed stops too, and a SQLite node refuses several processes
with a message that points to PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consortia.cli import app
from processes import READ_SECONDS, STOP_SECONDS, started, wait_for_http, wait_until

pytestmark = pytest.mark.slow
runner = CliRunner()
PASSWORD = "a long passphrase"


@pytest.fixture(autouse=True)
def _no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def postgres_node(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, str]]:
    """One node on a fresh PostgreSQL database for the module's servers (each test starts and
    stops its own): its consortia.toml, database URL and an API token of its administrator."""
    name = f"t_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
        config = _init(tmp_path_factory.mktemp("postgres-node"), url)
        yield config, url, _token(config, url)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def sqlite_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One node on SQLite (the default) for the module's refusals: its consortia.toml."""
    return _init(tmp_path_factory.mktemp("sqlite-node"))


def _init(directory: Path, database_url: str | None = None) -> Path:
    """``consortia init`` (cheap password hashing is not needed: one account)."""
    password = directory / "password.txt"
    directory.mkdir(parents=True, exist_ok=True)
    password.write_text(PASSWORD + "\n", encoding="utf-8")
    env: dict[str, str | None] = {n: None for n in os.environ if n.startswith("CONSORTIA_")}
    env |= {"CONSORTIA_DATABASE_URL": database_url} if database_url else {}
    result = runner.invoke(
        app,
        [
            *("init", str(directory / "node"), "--admin-email", "ada@sg.example"),
            *("--admin-name", "Ada", "--admin-password-file", str(password)),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return directory / "node" / "consortia.toml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _workers(server: subprocess.Popen[Any]) -> list[int]:
    """The server's worker processes (multiprocessing's spawned children)."""
    return [p for p in _children(server.pid) if "spawn" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:  # it has just exited
        return ""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, waiting for its parent (or init) to reap it


def _token(config: Path, database_url: str) -> str:
    made = runner.invoke(
        app,
        [
            *("token", "create", "ada@sg.example", "--name", "t", "--all-studies"),
            *("--config", str(config)),
        ],
        env={name: None for name in os.environ if name.startswith("CONSORTIA_")}
        | {"CONSORTIA_DATABASE_URL": database_url},
    )
    assert made.exit_code == 0, made.output
    secret = re.search(r"cst_\S+", made.stdout)
    assert secret is not None
    return secret.group(0)


def _environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}
    return env | {"CONSORTIA_DATABASE_URL": database_url}


@pytest.mark.postgres
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_workers_serve_the_nodes_config_and_all_stop_on_a_signal(
    tmp_path: Path, postgres_node: tuple[Path, str, str], stop: signal.Signals
) -> None:
    config, postgres_url, secret = postgres_node
    port = _free_port()
    log = tmp_path / "serve.log"  # a file, not a pipe nobody reads while the server runs
    command = [sys.executable, "-m", "consortia", "serve", "--config", str(config)]
    with (
        log.open("wb") as err,
        started(
            [*command, "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=_environment(postgres_url),
            stderr=err,
            group=True,  # whatever happens here, no process of it outlives the test
        ) as server,
    ):
        base = f"http://127.0.0.1:{port}/api/v1"
        wait_for_http(f"{base}/health", process=server)
        workers: list[int] = []

        def both_started() -> bool:
            workers[:] = _workers(server)
            return len(workers) == 2

        wait_until(both_started, what="two worker processes", process=server)
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(headers=headers, timeout=READ_SECONDS) as client:
            answers = [client.get(f"{base}/me") for _ in range(10)]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["email"] for a in answers} == {"ada@sg.example"}
        server.send_signal(stop)
        server.wait(STOP_SECONDS)
        assert server.returncode == 0
        # every worker has ended with it: none is left running as an orphan
        wait_until(
            lambda: all(_gone(w) for w in workers), what="the workers to stop", seconds=STOP_SECONDS
        )
    written = log.read_text(encoding="utf-8", errors="replace")
    assert "(2 processes)" in written
    assert "Traceback" not in written


@pytest.mark.postgres
def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, postgres_node: tuple[Path, str, str]
) -> None:
    # with nobody left to manage them, workers must not serve on for ever
    config, postgres_url, _ = postgres_node
    port = _free_port()
    command = [sys.executable, "-m", "consortia", "serve", "--config", str(config)]
    with started(
        [*command, "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=_environment(postgres_url),
        stderr=subprocess.DEVNULL,
        group=True,
    ) as server:
        workers: list[int] = []

        def both_started() -> bool:
            workers[:] = _workers(server)
            return len(workers) == 2

        wait_until(both_started, what="two worker processes", process=server)
        wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", process=server)
        server.kill()
        server.wait(STOP_SECONDS)
        wait_until(lambda: all(_gone(w) for w in workers), what="the workers to stop")


def test_a_sqlite_node_refuses_several_processes_and_points_to_postgresql(
    tmp_path: Path, sqlite_node: Path
) -> None:
    config = sqlite_node
    port = _free_port()
    command = [sys.executable, "-m", "consortia", "serve", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).is_success
        except httpx.TransportError:
            return False

    with started(
        [*command, "--port", str(port), "--workers", "4"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        group=True,
    ) as server:
        # it must stop with its refusal, not start serving
        wait_until(lambda: server.poll() is not None or serving(), what="serve to answer")
        assert server.poll() is not None, "a SQLite node started several server processes"
        assert server.stderr is not None
        written = server.stderr.read().decode()
    assert server.returncode == 1
    assert "--workers 4: a SQLite node is served by one process" in written
    assert "PostgreSQL" in written
    assert "Traceback" not in written


def test_serve_refuses_a_port_already_in_use(sqlite_node: Path) -> None:
    config = sqlite_node
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--config", str(config), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
