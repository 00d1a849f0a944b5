"""``kill -9`` of a large ``consortia data import`` while its worker processes check forms:
the workers die with it, and the next command on the node runs at once, finds nothing of
the import and a chain that verifies.

(Before, the workers lived on as orphans holding their copy of the SQLite writer lock, and
every later command waited for someone to kill them by hand.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import consortia
from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.services import imports, studies
from consortia.storage.audit import verify_trail
from consortia.storage.db import make_engine
from consortia.storage.tables import app_user, form_instance, item_value, subject

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc"),
]

STUDY = "CART-LBCL"
SOURCE = str(Path(consortia.__file__).resolve().parent.parent)
ADMIN = Principal(7, "dm@sg.example", "DM", frozenset([Grant(STUDY, "*", Role.STUDY_ADMIN)]))
#: the next command must start and finish within this (it takes seconds on a loaded machine)
DEADLINE = 90.0


def _parent_of(pid: int) -> int | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat_line.rsplit(")", 1)[1].split()[1])


def _children(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _parent_of(int(p.name)) == pid
    ]


def _gone(pid: int) -> bool:
    """Exited (possibly a zombie waiting for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file large enough to be checked by workers (1,000 subjects), written once."""
    folder = tmp_path_factory.mktemp("records")
    return synthesize("cart-lbcl", subjects=1000, site="SG01", seed=3).write_csv(
        folder / "records.csv"
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """A migrated SQLite file with the study loaded, once (copy it, never open it)."""
    path = tmp_path_factory.mktemp("loaded") / "node.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    engine.dispose()
    assert not Path(f"{path}-wal").exists()  # checkpointed: one file to copy
    return path


@pytest.fixture
def node(tmp_path: Path, loaded: Path, records: Path) -> tuple[str, Path]:
    """A SQLite node of its own with the study loaded, and the file to import."""
    shutil.copyfile(loaded, tmp_path / "node.db")
    return f"sqlite:///{tmp_path / 'node.db'}", records


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A ``consortia`` command that must finish within :data:`DEADLINE` (no waiting on a lock)."""
    return subprocess.run(
        [sys.executable, "-m", "consortia", *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.parametrize("moment", ["checking", "writing"])
def test_killing_an_import_kills_its_workers_and_blocks_no_later_command(
    node: tuple[str, Path], tmp_path: Path, moment: str
) -> None:
    url, path = node
    assert imports.PARALLEL_FORMS <= 20_086  # the file's forms: checked by worker processes
    env = {
        **os.environ,
        # the code under test, wherever the commands run from
        "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")]),
        "CONSORTIA_DATABASE_URL": url,
        "CONSORTIA_ENVIRONMENT": "development",
    }
    wal = tmp_path / "node.db-wal"
    written_before = wal.stat().st_size if wal.exists() else 0
    importer = subprocess.Popen(
        [sys.executable, "-m", "consortia", "data", "import", STUDY, str(path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the finally below reaps it all
    )
    workers: list[int] = []
    try:

        def at_the_moment() -> bool:
            assert importer.poll() is None, "the import ended before it could be killed"
            workers[:] = _children(importer.pid)
            if not workers:
                return False  # still reading the file and looking subjects up
            if moment == "checking":
                return True
            # forms that passed their checks are being written in the open transaction
            return wal.exists() and wal.stat().st_size > written_before + 1_000_000

        _wait_until(at_the_moment, 300, f"the import is {moment}")
        importer.send_signal(signal.SIGKILL)
        importer.wait(timeout=30)
        _wait_until(lambda: all(_gone(w) for w in workers), 10, "its workers are gone")

        added = _run(
            ["user", "add", "ana@sg.example", "--name", "Ana", "--no-password"], env, tmp_path
        )
        assert added.returncode == 0, added.stderr
        verified = _run(["audit", "verify"], env, tmp_path)
        assert verified.returncode == 0, verified.stderr
        assert "intact" in verified.stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(importer.pid, signal.SIGKILL)
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        importer.wait(timeout=30)
    engine = make_engine(url)
    try:
        assert _count(engine, subject) == 0
        assert _count(engine, form_instance) == 0
        assert _count(engine, item_value) == 0
        assert _count(engine, app_user) == 1
        with engine.connect() as connection:
            report = verify_trail(connection)
        assert report.ok
        assert report.events == 2  # the study.load of the set-up and the user.create
    finally:
        engine.dispose()
