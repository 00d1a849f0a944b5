"""``/health`` latency with and without concurrent sign-in clients, against a real server.

Creates a node (``consortia init`` in a temporary folder, SQLite, real argon2id parameters),
starts ``consortia serve`` on a free loopback port (one process, the default
``server_threads``), and measures, for ``--seconds`` per run:

* ``idle``: ``GET /api/v1/health`` in a loop from one client (keep-alive), nothing else;
* ``logins``: the same while ``--clients`` threads (8) post wrong passwords to
  ``POST /api/v1/session`` as fast as they are answered (unauthenticated clients); the
  sign-in limits are raised out of reach (``CONSORTIA_LOGIN_FAILURES_PER_*``), so every
  attempt hashes a password: this measures where the hashing runs;
* ``logins-limited``: the same with the node's default limits, measured once the clients
  are refused (429: the first ~30 failures from the address are hashed, then none).

Each scenario runs ``--runs`` times on a fresh server; the report gives each run's median
and p95 ``/health`` latency and the sign-in answers by status, then the median of the runs'
medians. ``--src PATH`` serves the code under ``PATH`` (a ``src`` folder: e.g. an older
revision unpacked with ``git archive``) instead of the current one, to compare.

    PYTHONPATH=src .venv/bin/python bench/bench_login_load.py --runs 3 --seconds 8
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cluster import machine  # noqa: E402

ADMIN = "admin@bench.example"
PASSWORD = "bench password 0123456789"
NO_LIMITS = {
    "CONSORTIA_LOGIN_FAILURES_PER_ADDRESS": "100000000",
    "CONSORTIA_LOGIN_FAILURES_PER_ACCOUNT": "100000000",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(src: Path | None, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    env.update(extra)
    return env


def _make_node(directory: Path, src: Path | None) -> Path:
    password_file = directory / "password.txt"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    node = directory / "node"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "consortia",
            "init",
            str(node),
            "--admin-email",
            ADMIN,
            "--admin-name",
            "Bench Admin",
            "--admin-password-file",
            str(password_file),
        ],
        check=True,
        env=_environment(src, {}),
        capture_output=True,
    )
    return node / "consortia.toml"


class Server:
    """``consortia serve`` on a free loopback port, until :meth:`stop`."""

    def __init__(self, config: Path, src: Path | None, extra: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consortia",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.port),
            ],
            env=_environment(src, {"CONSORTIA_LOG_LEVEL": "WARNING", **extra}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)  # not listening yet
        raise RuntimeError("the server did not answer /health in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _sign_in_loop(url: str, stop: threading.Event, statuses: Counter[int], index: int) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            body = {"email": f"nobody{index}-{attempt}@bench.example", "password": "wrong"}
            if attempt % 2:
                body["email"] = ADMIN  # half at a real account (locked soon: still hashed)
            try:
                statuses[client.post("/api/v1/session", json=body).status_code] += 1
            except httpx.TransportError:
                statuses[0] += 1


def _measure(
    url: str, seconds: float, clients: int, warm_up_to_429: bool
) -> tuple[list[float], Counter[int]]:
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    threads = [
        threading.Thread(target=_sign_in_loop, args=(url, stop, statuses, i), daemon=True)
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        if clients:  # let the sign-in clients get going
            time.sleep(1.0)
        deadline = time.monotonic() + 120
        while warm_up_to_429 and not statuses[429] and time.monotonic() < deadline:
            time.sleep(0.5)  # until the limits refuse the clients
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            response = client.get("/api/v1/health")
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--src", type=Path, default=None, help="serve the code under PATH")
    parser.add_argument("--scenarios", default="idle,logins,logins-limited", help="comma-separated")
    args = parser.parse_args()
    src = args.src.resolve() if args.src else None
    print(f"# machine: {machine()}")
    print(f"# code: {src or 'this worktree (PYTHONPATH)'}; {args.clients} sign-in clients")
    scenarios = {
        "idle": (0, NO_LIMITS),
        "logins": (args.clients, NO_LIMITS),
        "logins-limited": (args.clients, {}),
    }
    for name in args.scenarios.split(","):
        clients, extra = scenarios[name]
        medians = []
        with tempfile.TemporaryDirectory(prefix="bench-login-") as folder:
            config = _make_node(Path(folder), src)  # a fresh node: no counts from before
            for run in range(1, args.runs + 1):
                server = Server(config, src, extra)
                try:
                    latencies, statuses = _measure(
                        server.url, args.seconds, clients, name == "logins-limited"
                    )
                finally:
                    server.stop()
                latencies.sort()
                median = statistics.median(latencies)
                p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]
                medians.append(median)
                answers = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())) or "-"
                load = os.getloadavg()[0]
                print(
                    f"{name:15s} run {run}: /health median {median * 1000:8.1f} ms, "
                    f"p95 {p95 * 1000:8.1f} ms, {len(latencies):5d} requests; "
                    f"sign-ins {answers}; load {load:.1f}",
                    flush=True,
                )
            print(
                f"{name:15s} median of {args.runs} run medians: "
                f"{statistics.median(medians) * 1000:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
