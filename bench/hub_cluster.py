"""A hub and N member node processes on loopback, for the scale benchmark.

:class:`HubCluster` creates the hub with the project's own command (``consortia init DIR
--hub``), serves it with ``consortia serve``, writes one folder per member (key, its share of
every table, a migrated SQLite database, a consortia.toml whose [node] section trusts the
hub and, for the pull transport, names the hub's URL), records each member in the hub's
database as ``consortia init --join`` would (active, its key and transport), and starts
``consortia serve`` for each member. The bench process then coordinates analyses exactly as
``consortia analyze --study ... --plan ...`` at the hub does: a
:class:`~consortia.federation.coordinator.Coordinator` signing as the hub, trusting the
hub's active members, pushing to a member's URL or queueing its task in the hub's database
for it to take.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from cluster import (
    OPEN_POLICY,
    free_port,
    prepare_node_folder,
    serve_node,
    stop_processes,
    wait_until_serving,
    write_config,
)

from consortia.federation.hub import fingerprint
from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.signing import Peer, load_key, public_key_b64
from consortia.storage.db import make_engine
from consortia.storage.hub import HubRepository, MemberRecord

HUB = "hub"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HubCluster:
    """The hub process and ``count`` member processes, each with its share of every table."""

    def __init__(
        self,
        folder: Path,
        count: int,
        tables: dict[str, pd.DataFrame],
        *,
        transport: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.names = [f"m{index:02d}" for index in range(count)]
        self.urls: dict[str, str] = {}
        self.folders: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_seconds: dict[str, float] = {}
        env = env or {}
        hub_home = folder / HUB
        hub_port = free_port()
        self.hub_url = f"http://127.0.0.1:{hub_port}"
        password = folder / "password.txt"
        password.write_text("bench-password-1234567\n", encoding="utf-8")
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "consortia",
                    "init",
                    str(hub_home),
                    "--hub",
                    "--name",
                    "Bench consortium",
                    "--node-name",
                    HUB,
                    "--node-url",
                    self.hub_url,
                    "--admin-email",
                    "admin@hub.example",
                    "--admin-name",
                    "Admin",
                    "--admin-password-file",
                    str(password),
                    "--environment",
                    "development",
                ],
                check=True,
                capture_output=True,
            )
            config = hub_home / "consortia.toml"
            text = config.read_text(encoding="utf-8")
            config.write_text(
                re.sub(r"(?m)^(node_name = .*)$", r'\1\nlog_level = "WARNING"', text, count=1),
                encoding="utf-8",
            )
            self.hub_key = load_key(hub_home / "node_key.pem")
            self.hub_engine = make_engine(f"sqlite:///{hub_home / 'consortia.db'}")
            hub_peer = Peer(name=HUB, public_key=public_key_b64(self.hub_key))
            parts = {
                name: np.array_split(np.arange(len(frame)), count) for name, frame in tables.items()
            }
            now = datetime.now(UTC)
            started = time.perf_counter()
            self.processes[HUB] = serve_node(hub_home, config, hub_port, env)
            self.folders[HUB] = hub_home
            self.urls[HUB] = self.hub_url
            for index, node in enumerate(self.names):
                home = folder / node
                key, specs = prepare_node_folder(home, tables, parts, index)
                port = free_port()
                self.urls[node] = f"http://127.0.0.1:{port}"
                section = NodeConfig(
                    name=node,
                    key_file=Path("node.pem"),
                    peers=[hub_peer],
                    lead_url=self.hub_url if transport == "pull" else None,
                    tables=specs,
                    policy=OPEN_POLICY,
                    witness_interval_seconds=0,
                    base_dir=home,
                )
                node_config = write_config(home, node, self.urls[node], section)
                with self.hub_engine.begin() as connection:
                    public = public_key_b64(key)
                    HubRepository(connection).add_member(
                        MemberRecord(
                            name=node,
                            institution=f"Hospital {node}",
                            country="SG",
                            url=self.urls[node] if transport == "push" else "",
                            transport=transport,
                            public_key=public,
                            fingerprint=fingerprint(public),
                            status="active",
                            software_version="bench",
                            protocol_version="1",
                            joined_at=now,
                            last_seen_at=None,
                            removed_at=None,
                        )
                    )
                self.processes[node] = serve_node(home, node_config, port, env)
                self.folders[node] = home
            before = time.perf_counter() - started  # the hub and members' start so far
            ready = wait_until_serving(self.urls, self.processes, self.folders, timeout=300)
            self.started_seconds = {name: before + seconds for name, seconds in ready.items()}
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Terminate every process (kill those that do not stop within 10 s)."""
        stop_processes(self.processes)
        engine = getattr(self, "hub_engine", None)
        if engine is not None:
            engine.dispose()
