"""Per-round latency of the federation transports, 3 nodes on loopback (target < 20 ms).

    .venv/bin/python bench/bench_rounds.py [--rounds 200] [--repeats 3] [--quick]

One iterative analysis round is: the lead signs one task per node, sends them at once, each
node verifies the task, checks its policy, computes its aggregates from the session it keeps
in memory, appends the release to its hash-chained audit trail, signs its reply, and
the lead verifies every reply and decodes the aggregates. The model is a small logistic GLM
(300 rows, 3 covariates per node), so the arithmetic is negligible and what is measured is
the federation's overhead. Timed, side by side in one run (alternating, ``--repeats`` times):

- ``direct``: the three nodes' round work called in this process, one after another
  (``GlmKind.node_round`` on a prepared session: the arithmetic and the aggregates dict);
- ``in-process``: the whole signed protocol through ``InProcessTransport`` (nodes in this
  process, same code path as the network but no HTTP);
- ``push``: three real node processes (``consortia serve`` on a consortia.toml with a
  [node] section; each node's audit trail, nonces and sessions are in its SQLite database),
  the lead POSTs each task (httpx, keep-alive);
- ``pull``: the same processes, whose [node] section names the lead (``lead_url``): they
  long-poll the lead's app (uvicorn, served on loopback from this process's event loop) and
  post their results.

The in-process nodes audit to fsynced JSON-lines files.

Each run is one analysis session of ``--warmup`` + ``--rounds`` rounds with the same
``beta`` (the lead side of ``glm`` is replaced, in this process only, by one that times each
``exchange.round``); the warm-up rounds are not counted. Reported per path: median, p90, p99
and mean milliseconds per round over all counted rounds, and bytes exchanged per round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import uvicorn
from cluster import (
    NODE_NAMES,
    OPEN_POLICY,
    NodeCluster,
    blas_threads,
    listening_socket,
    machine,
    url_of,
)

from consortia.federation.apps import create_lead_app
from consortia.federation.audit import JsonlAuditSink
from consortia.federation.coordinator import Coordinator
from consortia.federation.kinds import Exchange, register_kind
from consortia.federation.kinds.glm import GlmKind, GlmRequest
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64
from consortia.federation.tables import read_table
from consortia.federation.transport import InProcessTransport, NodeHandle, PushTransport

HERE = Path(__file__).resolve().parent
COVARIATES = ["z0", "z1", "z2"]
REQUEST: dict[str, Any] = {
    "kind": "glm",
    "family": "binomial",
    "table": "small",
    "outcome": "y",
    "covariates": COVARIATES,
}
BETA = [-0.4, 0.1, -0.2, 0.3]  # Intercept + 3 covariates
ROUND: dict[str, Any] = {"step": "round", "levels": {}, "beta": BETA}
PATHS = ("direct", "in-process", "push", "pull")


def small_glm(n: int, rng: np.random.Generator) -> pd.DataFrame:
    x = rng.normal(size=(n, len(COVARIATES)))
    p = 1 / (1 + np.exp(-(x @ np.array([0.3, -0.2, 0.1]) - 0.4)))
    frame = pd.DataFrame(x, columns=COVARIATES)
    frame["y"] = (rng.random(n) < p).astype(int)
    return frame


@dataclass(frozen=True)
class Timings:
    """Seconds per timed round: this bench's estimates."""

    seconds: tuple[float, ...]
    exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"timings": list(self.seconds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timings:
        return cls(tuple(float(value) for value in data["timings"]))

    def summary(self) -> str:
        return f"{len(self.seconds)} rounds"


class TimedRounds(GlmKind):
    """The lead side of ``glm`` replaced by: agree the design, then time identical rounds."""

    def __init__(self, rounds: int, warmup: int) -> None:
        self.rounds = rounds
        self.warmup = warmup

    result_type = Timings

    async def lead(self, request: GlmRequest, exchange: Exchange) -> Timings:
        await exchange.round({"step": "levels"})
        timings: list[float] = []
        for index in range(self.warmup + self.rounds):
            start = time.perf_counter()
            answers = await exchange.round(ROUND)
            elapsed = time.perf_counter() - start
            if len(answers) != len(NODE_NAMES):
                raise RuntimeError(f"a round got {len(answers)} answers")
            if index >= self.warmup:
                timings.append(elapsed)
        return Timings(tuple(timings))


def direct_rounds(folders: Mapping[str, Path], rounds: int, warmup: int) -> list[float]:
    """The three nodes' round work, called directly on prepared sessions."""
    kind = GlmKind()
    request = kind.parse(REQUEST)
    policy = NodePolicy(**OPEN_POLICY)
    states = []
    for folder in folders.values():
        table = read_table(folder / "small.csv")
        state = kind.prepare(table, request, policy)
        kind.node_round(state, request, {"step": "levels"}, policy)
        states.append(state)
    timings = []
    for index in range(warmup + rounds):
        start = time.perf_counter()
        for state in states:
            release = kind.node_round(state, request, ROUND, policy)
            policy.check_release(release)
        elapsed = time.perf_counter() - start
        if index >= warmup:
            timings.append(elapsed)
    return timings


def in_process_runners(folders: Mapping[str, Path], lead: Coordinator) -> dict[str, NodeRunner]:
    """Nodes in this process with the same tables, policy and fsynced audit logs."""
    runners = {}
    lead_peer = Peer(name=lead.name, public_key=lead.public_key)
    for name, folder in folders.items():
        key = generate_key()
        runners[name] = NodeRunner(
            name,
            key,
            TrustStore([lead_peer]),
            {"small": read_table(folder / "small.csv")},
            policy=NodePolicy(**OPEN_POLICY),
            audit=JsonlAuditSink(folder / "in-process-audit.jsonl"),
        )
        lead.trust.add(Peer(name=name, public_key=public_key_b64(key)))
    return runners


@contextlib.asynccontextmanager
async def lead_server(coordinator: Coordinator, sock: Any) -> AsyncIterator[None]:
    """Serve the lead's pull endpoints on ``sock`` from this event loop."""
    config = uvicorn.Config(create_lead_app(coordinator), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        coordinator.broker.close()
        server.should_exit = True
        await task


def summary(timings: list[float]) -> tuple[float, float, float, float]:
    ms = np.asarray(timings) * 1000
    return (
        float(np.median(ms)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(ms.mean()),
    )


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(20261124)
    table = small_glm(900, rng)
    register_kind(TimedRounds(args.rounds, args.warmup))  # the lead side, this process only
    lead_socket = listening_socket()
    lead_url = url_of(lead_socket)
    cluster = NodeCluster(
        folder,
        {"small": table},
        pull_from=lead_url,
        env=blas_threads(args.node_blas_threads or None),
    )
    timings: dict[str, list[float]] = {path: [] for path in PATHS}
    per_run: dict[str, list[float]] = {path: [] for path in PATHS}
    nbytes: dict[str, list[float]] = {path: [] for path in PATHS}
    try:
        remote = Coordinator("lead", cluster.lead_key, cluster.trust, round_timeout=30)
        local = Coordinator("lead", generate_key(), TrustStore(), round_timeout=30)
        runners = in_process_runners(cluster.folders, local)
        handles = {
            "in-process": [NodeHandle(name) for name in NODE_NAMES],
            "push": [NodeHandle(name, cluster.urls[name]) for name in NODE_NAMES],
            "pull": [NodeHandle(name) for name in NODE_NAMES],
        }
        async with lead_server(remote, lead_socket), PushTransport() as push:
            transports: dict[str, Any] = {
                "in-process": (local, InProcessTransport(runners)),
                "push": (remote, push),
                "pull": (remote, remote.broker),
            }
            for repeat in range(args.repeats):
                for path in PATHS:
                    if path == "direct":
                        found = direct_rounds(cluster.folders, args.rounds, args.warmup)
                        nbytes[path].append(0)
                    else:
                        coordinator, transport = transports[path]
                        result = await coordinator.run_analysis(REQUEST, handles[path], transport)
                        assert isinstance(result.estimates, Timings)
                        found = list(result.estimates.seconds)
                        nbytes[path].append(result.bytes / result.rounds)
                    timings[path].extend(found)
                    per_run[path].append(statistics.median(found) * 1000)
                    print(
                        f"run {repeat + 1}/{args.repeats} {path}: median "
                        f"{statistics.median(found) * 1000:.2f} ms per round",
                        flush=True,
                    )
    finally:
        cluster.close()
    return {"timings": timings, "per_run": per_run, "bytes": nbytes}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200, help="counted rounds per run")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted rounds first")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path, alternating")
    parser.add_argument("--quick", action="store_true", help="50 rounds, 1 run (smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rounds.md")
    parser.add_argument(
        "--node-blas-threads",
        type=int,
        default=1,
        help="BLAS threads per node process (0: the library default)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.repeats = 50, 10, 1
    print(f"Machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        measured = asyncio.run(run(args, Path(folder)))
    lines = [
        "# Round latency: 3 nodes on loopback, small logistic GLM (target < 20 ms per round)",
        "",
        f"Machine: {machine()}",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.repeats} runs per "
        f"path, alternating; each run {args.rounds} counted rounds after {args.warmup} "
        "warm-up rounds; statistics over all counted rounds.",
        "",
        "| path | median ms | p90 ms | p99 ms | mean ms | median of run medians ms "
        "| rounds | bytes/round | < 20 ms? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in PATHS:
        found = measured["timings"][path]
        median, p90, p99, mean = summary(found)
        run_median = statistics.median(measured["per_run"][path])
        per_round = statistics.median(measured["bytes"][path])
        verdict = "-" if path == "direct" else ("yes" if p90 < 20 else "no")
        lines.append(
            f"| {path} | {median:.2f} | {p90:.2f} | {p99:.2f} | {mean:.2f} | {run_median:.2f} "
            f"| {len(found)} | {per_round:,.0f} | {verdict} |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
