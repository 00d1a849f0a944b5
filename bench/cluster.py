"""Shared by the benchmarks: the machine's description and three real node processes.

:class:`NodeCluster` writes one folder per node (key, its share of every table, a migrated
SQLite database, and a consortia.toml whose [node] section declares the tables, trusts the
lead and, for the pull transport, names the lead's URL), starts ``consortia serve`` on a
free loopback port for each, waits until every node answers ``/api/v1/health``, and
terminates the processes on :meth:`NodeCluster.close`.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from consortia.commands.config import node_section_text
from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

NODE_NAMES = ("sgh", "ruijin", "nuh")
# Exact times (time_bin 1) and cells down to 1, so that results equal the pooled ones.
OPEN_POLICY = {"min_cell_count": 1, "time_bin": 1, "allow_min_max": True}


def blas_threads(count: int | None) -> dict[str, str]:
    """Environment pinning a process's BLAS/OpenMP pools to ``count`` threads (None: as is).

    Three "hospital" nodes share this machine's cores; OpenBLAS's default pool (one
    busy-waiting thread per core, in every node process) then fights over the cores, which
    separate hospital servers would not. One thread per node process is the fair analogue.
    """
    if count is None:
        return {}
    value = str(count)
    return {"OPENBLAS_NUM_THREADS": value, "OMP_NUM_THREADS": value, "MKL_NUM_THREADS": value}


def machine() -> str:
    """CPU, cores, memory, OS, Python and numpy versions in one line."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; numpy {np.__version__}"
    )


def listening_socket() -> socket.socket:
    """A loopback TCP socket on a free port chosen by the OS, already listening.

    ``IPPROTO_TCP`` is named on purpose: asyncio sets ``TCP_NODELAY`` only on sockets whose
    ``proto`` says TCP, and accepted sockets inherit it. With ``proto`` 0 a small response
    written in two pieces waits for the peer's delayed ACK (Nagle): +40 ms per long poll.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def free_port() -> int:
    """A loopback port that is free now (the node process binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(home: Path, name: str, url: str, node: NodeConfig) -> Path:
    """The node's consortia.toml: its settings, then the [node] section of ``node``."""
    settings = [
        f'node_name = "{name}"',
        f'node_url = "{url}"',
        'database_url = "sqlite:///node.db"',
        'log_level = "WARNING"',  # no access log line per request
    ]
    path = home / "consortia.toml"
    path.write_text("\n".join(settings) + "\n\n" + node_section_text(node), encoding="utf-8")
    path.chmod(0o600)
    return path


def prepare_node_folder(
    home: Path, tables: dict[str, pd.DataFrame], parts: dict[str, Any], index: int
) -> tuple[Any, dict[str, dict[str, str]]]:
    """A node's folder: its key (node.pem), part ``index`` of every table as CSV, and its
    migrated SQLite database (what `consortia db upgrade` does); (key, table specs)."""
    home.mkdir(parents=True)
    key = generate_key()
    save_key(key, home / "node.pem")
    specs = {}
    for table, frame in tables.items():
        path = home / f"{table}.csv"
        frame.iloc[parts[table][index]].to_csv(path, index=False)
        specs[table] = {"file": str(path)}
    engine = make_engine(f"sqlite:///{home / 'node.db'}")
    upgrade(engine)
    engine.dispose()
    return key, specs


def serve_node(home: Path, config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`consortia serve` on ``config`` at 127.0.0.1:``port``, its output in home/server.log."""
    command = [sys.executable, "-m", "consortia", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with (home / "server.log").open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )


def wait_until_serving(
    urls: dict[str, str],
    processes: dict[str, subprocess.Popen[bytes]],
    folders: dict[str, Path],
    *,
    timeout: float,
) -> dict[str, float]:
    """Wait until every process answers /api/v1/health; seconds each took from the call.
    A process that exits is an error with its log."""
    started = time.perf_counter()
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, url in list(pending.items()):
                if processes[name].poll() is not None:
                    log = (folders[name] / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited:\n{log}")
                try:
                    if client.get(url + "/api/v1/health").status_code == 200:
                        del pending[name]
                        ready[name] = time.perf_counter() - started
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sorted(pending)} did not start in time")
            time.sleep(0.05)
    return ready


def stop_processes(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Terminate ``processes`` (kill those that do not stop within 10 s)."""
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class NodeCluster:
    """Three node processes on loopback, each holding a third of every table."""

    def __init__(
        self,
        folder: Path,
        tables: dict[str, pd.DataFrame],
        *,
        pull_from: str | None = None,
        policy: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.lead_key = generate_key()
        self.trust = TrustStore()
        self.urls: dict[str, str] = {}
        self.folders: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        lead_public = public_key_b64(self.lead_key)
        parts = {name: np.array_split(np.arange(len(frame)), 3) for name, frame in tables.items()}
        try:
            for index, node in enumerate(NODE_NAMES):
                home = folder / node
                key, specs = prepare_node_folder(home, tables, parts, index)
                self.trust.add(Peer(name=node, public_key=public_key_b64(key)))
                port = free_port()
                self.urls[node] = f"http://127.0.0.1:{port}"
                section = NodeConfig(
                    name=node,
                    key_file=Path("node.pem"),
                    peers=[Peer(name="lead", public_key=lead_public)],
                    lead_url=pull_from,
                    tables=specs,
                    policy=policy if policy is not None else OPEN_POLICY,
                    witness_interval_seconds=0,
                    base_dir=home,
                )
                config = write_config(home, node, self.urls[node], section)
                self.processes[node] = serve_node(home, config, port, env or {})
                self.folders[node] = home
            wait_until_serving(self.urls, self.processes, self.folders, timeout=120)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Terminate the node processes (kill those that do not stop within 10 s)."""
        stop_processes(self.processes)
