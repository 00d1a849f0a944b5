"""Scale on one machine: a hub and 3, 10 and 20 member node processes on loopback.

    .venv/bin/python bench/bench_scale.py [--nodes 3,10,20] [--transports push,pull]
        [--rounds 60] [--warmup 10] [--repeats 3] [--quick]

For each node count and transport, :class:`hub_cluster.HubCluster` creates a hub with
``consortia init --hub``, serves it and N members with ``consortia serve`` (members on the
pull transport name the hub's URL and take their tasks from it), and this process
coordinates as ``consortia analyze`` at the hub does (a ``Coordinator`` signing as the hub,
its members' keys read from the hub's database; push: ``PushTransport``; pull: the hub's
``DatabaseBroker``). Measured, ``--repeats`` times alternating with the analyses:

- round latency: one analysis session of a small logistic GLM (300 rows per member) whose
  lead side is replaced, in this process only, by ``--warmup`` + ``--rounds`` identical
  ``exchange.round`` calls (the same as bench_rounds.py); median and p99 over the counted
  rounds;
- the lead's CPU per round: CPU seconds of this process (the coordinator) over the counted
  rounds divided by their number (and its user part: on loopback, the kernel's delivery of
  each request to the member is charged to the sender as system time), and of the hub's
  server process (which, on pull, takes
  the members' polls and results) over the same window;
- the wall time of a Kaplan-Meier (2 groups, 2,000 rows per member) and a Cox model
  stratified by node (Efron, 5 covariates, 1,000 subjects per member), as the lead sees it.

Also recorded per cluster: the members' start-up time (from launch until ``/api/v1/health``
answers, all launched at once) and resident memory. Writes ``--out`` (markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_federated_stats import cox_data, km_data
from bench_rounds import BETA, COVARIATES, REQUEST, small_glm
from cluster import blas_threads, machine
from hub_cluster import HUB, HubCluster, cpu_seconds

from consortia.federation.coordinator import Coordinator
from consortia.federation.hub import DatabaseBroker, MemberTrust
from consortia.federation.kinds import Exchange, register_kind
from consortia.federation.kinds.glm import GlmKind, GlmRequest
from consortia.federation.transport import NodeHandle, PushTransport

HERE = Path(__file__).resolve().parent
ROUND: dict[str, Any] = {"step": "round", "levels": {}, "beta": BETA}
KM_REQUEST: dict[str, Any] = {
    "kind": "kaplan_meier",
    "table": "km",
    "time": "time",
    "event": "event",
    "group": "arm",
    "time_bin": 1,
}
COX_REQUEST: dict[str, Any] = {
    "kind": "cox",
    "table": "cox",
    "time": "time",
    "event": "event",
    "covariates": [f"x{i}" for i in range(5)],
    "ties": "efron",
    "time_bin": 1,
    "strata": ["node"],
}
assert COVARIATES


@dataclass(frozen=True)
class Timings:
    """Seconds per timed round, and CPU seconds of the lead and the hub's server over them."""

    seconds: tuple[float, ...]
    lead_cpu: float
    lead_user: float
    hub_cpu: float
    exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "timings": list(self.seconds),
            "lead_cpu": self.lead_cpu,
            "lead_user": self.lead_user,
            "hub_cpu": self.hub_cpu,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timings:
        return cls(
            tuple(data["timings"]),
            float(data["lead_cpu"]),
            float(data["lead_user"]),
            float(data["hub_cpu"]),
        )

    def summary(self) -> str:
        return f"{len(self.seconds)} rounds"


class TimedRounds(GlmKind):
    """The lead side of ``glm`` replaced by: agree the design, then time identical rounds."""

    result_type = Timings

    def __init__(self, rounds: int, warmup: int) -> None:
        self.rounds = rounds
        self.warmup = warmup
        self.hub_pid = 0

    async def lead(self, request: GlmRequest, exchange: Exchange) -> Timings:
        await exchange.round({"step": "levels"})
        for _ in range(self.warmup):
            await exchange.round(ROUND)
        timings: list[float] = []
        cpu, user, hub = time.process_time(), os.times().user, cpu_seconds(self.hub_pid)
        for _ in range(self.rounds):
            start = time.perf_counter()
            answers = await exchange.round(ROUND)
            timings.append(time.perf_counter() - start)
            if len(answers) != len(exchange.nodes):
                raise RuntimeError(f"a round got {len(answers)} answers")
        lead_cpu = (time.process_time() - cpu) / self.rounds
        lead_user = (os.times().user - user) / self.rounds
        hub_cpu = (cpu_seconds(self.hub_pid) - hub) / self.rounds
        return Timings(tuple(timings), lead_cpu, lead_user, hub_cpu)


def tables(count: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    return {
        "small": small_glm(300 * count, rng),
        "km": km_data(2000 * count, rng),
        "cox": cox_data(1000 * count, rng),
    }


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


async def measure(
    cluster: HubCluster, transport: str, kind: TimedRounds, repeats: int
) -> dict[str, list[float]]:
    coordinator = Coordinator(HUB, cluster.hub_key, MemberTrust(cluster.hub_engine))
    found: dict[str, list[float]] = {
        key: []
        for key in ("median", "p99", "lead_cpu", "lead_user", "hub_cpu", "km", "cox", "load")
    }
    kind.hub_pid = cluster.hub_pid
    async with PushTransport() as push:
        sender = push if transport == "push" else DatabaseBroker(cluster.hub_engine)
        handles = [
            NodeHandle(name, cluster.urls[name] if transport == "push" else "")
            for name in cluster.names
        ]
        for repeat in range(repeats):
            found["load"].append(os.getloadavg()[0])
            result = await coordinator.run_analysis(REQUEST, handles, sender)
            assert isinstance(result.estimates, Timings)
            ms = np.asarray(result.estimates.seconds) * 1000
            found["median"].append(float(np.median(ms)))
            found["p99"].append(float(np.percentile(ms, 99)))
            found["lead_cpu"].append(result.estimates.lead_cpu * 1000)
            found["lead_user"].append(result.estimates.lead_user * 1000)
            found["hub_cpu"].append(result.estimates.hub_cpu * 1000)
            for name, request in (("km", KM_REQUEST), ("cox", COX_REQUEST)):
                start = time.perf_counter()
                answer = await coordinator.run_analysis(request, handles, sender)
                found[name].append(time.perf_counter() - start)
                if not answer.complete or len(answer.nodes) != len(handles):
                    raise RuntimeError(f"{name} did not complete over every member")
            print(
                f"  {transport} run {repeat + 1}: round median {found['median'][-1]:.2f} ms, "
                f"p99 {found['p99'][-1]:.2f}, lead CPU {found['lead_cpu'][-1]:.2f} ms/round "
                f"(user {found['lead_user'][-1]:.2f}), "
                f"hub server CPU {found['hub_cpu'][-1]:.2f} ms/round, KM "
                f"{found['km'][-1]:.3f} s, Cox {found['cox'][-1]:.3f} s (load {load()})",
                flush=True,
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", default="3,10,20", help="member counts, comma-separated")
    parser.add_argument("--transports", default="push,pull")
    parser.add_argument("--rounds", type=int, default=60, help="counted rounds per run")
    parser.add_argument("--warmup", type=int, default=10, help="uncounted rounds first")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cluster")
    parser.add_argument("--quick", action="store_true", help="3 nodes, 20 rounds, 1 run")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.md")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.rounds, args.warmup, args.repeats = "3", 20, 5, 1
    counts = [int(value) for value in args.nodes.split(",")]
    transports = args.transports.split(",")
    kind = TimedRounds(args.rounds, args.warmup)
    register_kind(kind)  # the lead side of glm, this process only
    print(f"Machine: {machine()}", flush=True)
    rows = []
    for count in counts:
        for transport in transports:
            with tempfile.TemporaryDirectory() as folder:
                rng = np.random.default_rng(20261207)
                cluster = HubCluster(
                    Path(folder),
                    count,
                    tables(count, rng),
                    transport=transport,
                    env=blas_threads(1),
                )
                try:
                    starts = [cluster.started_seconds[name] for name in cluster.names]
                    rss = cluster.member_rss_mib()
                    print(
                        f"{count} members, {transport}: all up in {max(starts):.1f} s, "
                        f"member RSS median {statistics.median(rss):.0f} MiB",
                        flush=True,
                    )
                    found = asyncio.run(measure(cluster, transport, kind, args.repeats))
                finally:
                    cluster.close()
            med = {key: statistics.median(values) for key, values in found.items()}
            rows.append(
                f"| {count} | {transport} | {med['median']:.2f} | {med['p99']:.2f} "
                f"| {med['lead_cpu']:.2f} | {med['lead_cpu'] / count:.3f} "
                f"| {med['lead_user'] / count:.3f} "
                f"| {med['hub_cpu']:.2f} | {med['km']:.3f} | {med['cox']:.3f} "
                f"| {max(starts):.1f} | {statistics.median(rss):.0f} "
                f"| {min(found['load']):.1f}-{max(found['load']):.1f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        "# Scale: a hub and N member processes on loopback",
        "",
        f"Machine: {machine()}",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.repeats} runs per "
        f"cluster; each run {args.rounds} counted rounds after {args.warmup} warm-up rounds, "
        "then one Kaplan-Meier and one stratified Cox; medians of the runs.",
        "",
        "| members | transport | round median ms | round p99 ms | lead CPU ms/round "
        "| lead CPU ms/round/member | of which user | hub server CPU ms/round | KM s | stratified Cox s "
        "| members up s | member RSS MiB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
