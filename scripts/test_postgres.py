"""Install (in CI) and run a throw-away PostgreSQL server on loopback for the test suite.

    python scripts/test_postgres.py ensure   # install if CI=true and missing, init, start
    python scripts/test_postgres.py url      # print the SQLAlchemy URL the tests use
    python scripts/test_postgres.py stop

Outside CI a machine without PostgreSQL gets a message and exit 0: the PostgreSQL tests
then skip with that reason. In CI (CI=true) a PostgreSQL that cannot be installed or
started is an error.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PORT = int(os.environ.get("CONSORTIA_TEST_PG_PORT", "54329"))
DATA = Path(os.environ.get("CONSORTIA_TEST_PG_DIR", "/tmp/consortia-test-pg"))
URL = f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/postgres"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _install() -> None:
    if os.geteuid() != 0:
        raise SystemExit("PostgreSQL is missing and this is not root: cannot apt-get install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        check=True,
        env=env,
    )


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=0.5):
            return True
    except OSError:
        return False


def ensure() -> int:
    # test processes run side by side (pytest -n 2) each call ensure: one starts the server
    with open(f"{DATA}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure()


def _ensure() -> int:
    if _listening():
        print(f"postgres: already listening on 127.0.0.1:{PORT}")
        return 0
    bindir = _bin_dir()
    if bindir is None:
        if not IN_CI:
            print("postgres: not installed; PostgreSQL tests will skip (CI installs it)")
            return 0
        _install()
        bindir = _bin_dir()
        if bindir is None:
            raise SystemExit("postgres: installed but initdb not found")
    if not (DATA / "PG_VERSION").exists():
        if DATA.exists():
            shutil.rmtree(DATA)
        DATA.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(DATA, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(DATA),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    options = (
        f"-p {PORT} -k {DATA} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(DATA),
                "-l",
                str(DATA / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if _listening():
            print(f"postgres: started on 127.0.0.1:{PORT}")
            return 0
        time.sleep(0.1)
    raise SystemExit("postgres: started but not listening")


def stop() -> int:
    bindir = _bin_dir()
    if bindir is not None and (DATA / "postmaster.pid").exists():
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(DATA), "-m", "fast", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "ensure"
    if command == "ensure":
        return ensure()
    if command == "stop":
        return stop()
    if command == "url":
        print(URL)
        return 0
    raise SystemExit(f"unknown command {command!r}; use ensure, url or stop")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
