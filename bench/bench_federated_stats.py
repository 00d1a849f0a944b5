"""Federated (3 nodes, loopback, push) versus the pooled reference library, side by side.

    .venv/bin/python bench/bench_federated_stats.py [--repeats 5] [--quick]

Starts three real node processes (``python -m consortia.federation.serve``) on loopback
ports, each holding a third of the rows, and times, in one run and alternating:

- Cox PH, 30,000 subjects, 5 covariates, Efron ties: our federated fit vs lifelines
  ``CoxPHFitter`` on the pooled rows;
- logistic GLM, 300,000 rows, 10 covariates: ours vs statsmodels ``GLM(Binomial)``;
- Kaplan-Meier, 300,000 rows, 2 groups: ours vs lifelines ``KaplanMeierFitter`` per group.

Reported: medians of ``--repeats`` runs, the ratio federated/pooled (target <= 1.0), rounds
and bytes exchanged. The federated time is the whole request as the lead sees it (signing,
HTTP, node arithmetic, combining); tables are loaded when the nodes start, as in service.
The nodes' policy allows exact times (time_bin 1) and cells down to 1 so that the results
equal the pooled ones; the default policy would bin and refuse small cells.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from consortia.federation.local import analyze_remote
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key

HERE = Path(__file__).resolve().parent


def machine() -> str:
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cox_data(n: int, rng: np.random.Generator) -> pd.DataFrame:
    x = rng.normal(size=(n, 5))
    beta = np.array([0.5, -0.3, 0.2, 0.0, 0.1])
    hazard = np.exp(x @ beta)
    t = rng.exponential(1.0 / hazard) * 365
    c = rng.exponential(365 * 1.5, size=n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    frame["time"] = np.ceil(np.minimum(t, c)).astype(int)
    frame["event"] = (t <= c).astype(int)
    return frame


def glm_data(n: int, rng: np.random.Generator) -> pd.DataFrame:
    x = rng.normal(size=(n, 10))
    beta = rng.normal(scale=0.3, size=10)
    p = 1 / (1 + np.exp(-(x @ beta - 0.5)))
    frame = pd.DataFrame(x, columns=[f"z{i}" for i in range(10)])
    frame["y"] = (rng.random(n) < p).astype(int)
    return frame


def km_data(n: int, rng: np.random.Generator) -> pd.DataFrame:
    group = rng.integers(0, 2, size=n)
    t = rng.exponential(np.where(group == 1, 400, 200))
    c = rng.uniform(0, 900, size=n)
    return pd.DataFrame(
        {
            "time": np.ceil(np.minimum(t, c)).astype(int),
            "event": (t <= c).astype(int),
            "arm": np.where(group == 1, "car_t", "soc"),
        }
    )


class Federation:
    """Three node processes on loopback, each with a third of every table."""

    def __init__(self, folder: Path, tables: dict[str, pd.DataFrame]) -> None:
        self.folder = folder
        self.lead_key = generate_key()
        self.trust = TrustStore()
        self.urls: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        lead_public = public_key_b64(self.lead_key)
        names = ["sgh", "ruijin", "nuh"]
        parts = {name: np.array_split(np.arange(len(frame)), 3) for name, frame in tables.items()}
        for index, node in enumerate(names):
            home = folder / node
            home.mkdir()
            key = generate_key()
            save_key(key, home / "node.pem")
            self.trust.add(Peer(name=node, public_key=public_key_b64(key)))
            specs = {}
            for table, frame in tables.items():
                path = home / f"{table}.csv"
                frame.iloc[parts[table][index]].to_csv(path, index=False)
                specs[table] = {"file": str(path)}
            port = free_port()
            config = {
                "name": node,
                "url": f"http://127.0.0.1:{port}",
                "key_file": "node.pem",
                "peers": [{"name": "lead", "public_key": lead_public}],
                "tables": specs,
                "policy": {"min_cell_count": 1, "time_bin": 1, "allow_min_max": True},
                "audit_log": "audit.jsonl",
                "approvals_file": None,
            }
            (home / "node.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "consortia.federation.serve",
                        str(home / "node.yaml"),
                        "--port",
                        str(port),
                    ],
                )
            )
            self.urls[node] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        for url in self.urls.values():
            port = int(url.rsplit(":", 1)[1])
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node at {url} did not start") from None
                    time.sleep(0.2)

    def analyze(self, request: dict[str, Any]) -> dict[str, Any]:
        return analyze_remote(request, self.urls, key=self.lead_key, trust=self.trust)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "federated_stats.md")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    rng = np.random.default_rng(20261123)
    cox = cox_data(30_000 // scale, rng)
    glm = glm_data(300_000 // scale, rng)
    km = km_data(300_000 // scale, rng)

    import statsmodels.api as sm
    from lifelines import CoxPHFitter, KaplanMeierFitter

    def pooled_cox() -> Any:
        return CoxPHFitter().fit(cox, "time", "event")

    def pooled_glm() -> Any:
        design = sm.add_constant(glm[[f"z{i}" for i in range(10)]])
        return sm.GLM(glm["y"], design, family=sm.families.Binomial()).fit()

    def pooled_km() -> Any:
        fits = []
        for arm, rows in km.groupby("arm"):
            fits.append(KaplanMeierFitter().fit(rows["time"], rows["event"], label=str(arm)))
        return fits

    cases: list[tuple[str, str, dict[str, Any], Callable[[], Any]]] = [
        (
            "Cox PH, Efron",
            f"{len(cox):,} subjects x 5 covariates",
            {
                "kind": "cox",
                "table": "cox",
                "time": "time",
                "event": "event",
                "covariates": [f"x{i}" for i in range(5)],
                "ties": "efron",
                "time_bin": 1,
            },
            pooled_cox,
        ),
        (
            "logistic GLM",
            f"{len(glm):,} rows x 10 covariates",
            {
                "kind": "glm",
                "family": "binomial",
                "table": "glm",
                "outcome": "y",
                "covariates": [f"z{i}" for i in range(10)],
            },
            pooled_glm,
        ),
        (
            "Kaplan-Meier",
            f"{len(km):,} rows, 2 groups",
            {
                "kind": "kaplan_meier",
                "table": "km",
                "time": "time",
                "event": "event",
                "group": "arm",
                "time_bin": 1,
            },
            pooled_km,
        ),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        federation = Federation(Path(folder), {"cox": cox, "glm": glm, "km": km})
        try:
            for label, size, request, pooled in cases:
                federation.analyze(request)  # warm-up: loads the session on every node
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pooled()
                    fed_times, pooled_times = [], []
                    result: dict[str, Any] = {}
                    for _ in range(args.repeats):
                        seconds, result = timed(lambda request=request: federation.analyze(request))
                        fed_times.append(seconds)
                        seconds, _ = timed(pooled)
                        pooled_times.append(seconds)
                fed, ref = statistics.median(fed_times), statistics.median(pooled_times)
                rows.append(
                    (label, size, fed, ref, fed / ref, result.get("rounds"), result.get("bytes"))
                )
                print(
                    f"{label}: federated {fed:.3f}s, pooled {ref:.3f}s, ratio {fed / ref:.2f}",
                    flush=True,
                )
        finally:
            federation.close()
    lines = [
        "# Federated (3 nodes, loopback, push) vs pooled reference",
        "",
        f"Machine: {machine()}",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeats} "
        f"runs each, alternating{' (quick: a tenth of the data)' if args.quick else ''}.",
        "",
        "| analysis | data | federated s | pooled s | ratio fed/pooled | rounds | bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = {
        "Cox PH, Efron": "lifelines",
        "logistic GLM": "statsmodels",
        "Kaplan-Meier": "lifelines",
    }
    for label, size, fed, ref, ratio, rounds, nbytes in rows:
        lines.append(
            f"| {label} (vs {reference[label]}) | {size} | {fed:.3f} | {ref:.3f} | "
            f"{ratio:.2f} | {rounds} | {nbytes:,} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
