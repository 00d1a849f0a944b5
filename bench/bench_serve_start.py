"""Start-up of one member node process: ``consortia serve`` until ``/api/v1/health`` answers.

    .venv/bin/python bench/bench_serve_start.py [--repeats 5] [--src PATH ...]

Writes a member node's folder as bench/cluster.py does (key, a table, a migrated SQLite
database, a consortia.toml with a [node] section trusting a lead), then starts ``consortia
serve`` on it ``--repeats`` times, one at a time, and records the wall time from launch to
the first healthy answer and the process's resident memory then. With several ``--src``
(source trees, e.g. an exported older commit's ``src``) the trees are measured alternately,
each with ``PYTHONPATH`` set to it. Also prints a calibration: the CPU time of 1,000 Ed25519
signatures in this process (~50 ms on an idle core), to compare runs on a busy host.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from bench_rounds import small_glm
from cluster import OPEN_POLICY, free_port, machine, write_config
from hub_cluster import rss_mib

from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.signing import Peer, generate_key, public_key_b64, save_key
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade


def calibration_ms() -> float:
    """CPU milliseconds of 1,000 Ed25519 signatures of a small message."""
    key = generate_key()
    start = time.process_time()
    for _ in range(1000):
        key.sign(b"x" * 200)
    return (time.process_time() - start) * 1000


def member_folder(home: Path) -> Path:
    home.mkdir(parents=True)
    save_key(generate_key(), home / "node.pem")
    path = home / "small.csv"
    small_glm(300, np.random.default_rng(1)).to_csv(path, index=False)
    engine = make_engine(f"sqlite:///{home / 'node.db'}")
    upgrade(engine)
    engine.dispose()
    section = NodeConfig(
        name="m00",
        key_file=Path("node.pem"),
        peers=[Peer(name="lead", public_key=public_key_b64(generate_key()))],
        tables={"small": {"file": str(path)}},
        policy=OPEN_POLICY,
        witness_interval_seconds=0,
        base_dir=home,
    )
    return write_config(home, "m00", "http://127.0.0.1:1", section)


def start_once(config: Path, src: str) -> tuple[float, float]:
    port = free_port()
    command = [sys.executable, "-m", "consortia", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": src}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"consortia serve exited with {process.returncode}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        return time.perf_counter() - started, rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", action="append", help="source tree(s) to measure")
    args = parser.parse_args()
    sources = args.src or [str(Path(__file__).resolve().parent.parent / "src")]
    print(f"Machine: {machine()}", flush=True)
    found: dict[str, list[tuple[float, float]]] = {src: [] for src in sources}
    with tempfile.TemporaryDirectory() as folder:
        config = member_folder(Path(folder) / "m00")
        for repeat in range(args.repeats):
            for src in sources:
                seconds, rss = start_once(config, src)
                found[src].append((seconds, rss))
                print(
                    f"run {repeat + 1} {src}: {seconds:.2f} s, {rss:.0f} MiB "
                    f"(load {os.getloadavg()[0]:.1f}, 1,000 signatures "
                    f"{calibration_ms():.0f} ms CPU)",
                    flush=True,
                )
    for src, values in found.items():
        seconds = statistics.median(value[0] for value in values)
        rss = statistics.median(value[1] for value in values)
        print(f"| {src} | {seconds:.2f} | {rss:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
