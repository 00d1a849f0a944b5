"""Federated (3 nodes, loopback, push) versus the pooled reference library, side by side.

    .venv/bin/python bench/bench_federated_stats.py [--repeats 5] [--quick]
        [--node-blas-threads 1]

Starts three real node processes (``consortia serve`` on a consortia.toml with a [node]
section and a SQLite database, see ``cluster.py``) on loopback, each holding a third of the rows, and times, in one run and
alternating federated and pooled:

- Cox PH, 30,000 subjects, 5 covariates, Efron ties, unstratified (per-time sums cross the
  network): ours vs lifelines ``CoxPHFitter`` on the pooled rows;
- the same, stratified by node (each node sends only its log-likelihood, gradient and
  Hessian): ours vs lifelines ``CoxPHFitter(strata=["node"])``;
- logistic GLM, 300,000 rows, 10 covariates: ours vs statsmodels ``GLM(Binomial)``;
- Kaplan-Meier, 300,000 rows, 2 groups: ours vs lifelines ``KaplanMeierFitter`` per group.

Reported: medians of ``--repeats`` runs (and every run), the ratio federated/pooled, rounds,
bytes exchanged, and the largest relative difference of the federated estimates from the
pooled ones (Cox: coefficients vs lifelines run to convergence; GLM: coefficients; KM: the
survival curves). The federated time is the whole request as the lead sees it
(``analyze_remote``: a new client, signing, HTTP, node arithmetic, audit, combining); tables
are loaded when the nodes start, as in service. The nodes' policy allows exact times
(time_bin 1) and cells down to 1 so that the results equal the pooled ones; the default
policy would bin and refuse small cells. Each node process runs with one BLAS thread
(``--node-blas-threads``; 0 keeps the library default): three "hospitals" share this
machine's cores, and OpenBLAS's default busy-waiting pool per process would make them fight
over the cores as separate servers would not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cluster import NodeCluster, blas_threads, machine

from consortia.federation.local import analyze_remote

HERE = Path(__file__).resolve().parent


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


class Federation(NodeCluster):
    """Three node processes on loopback; the lead pushes each request (one client per run)."""

    def analyze(self, request: dict[str, Any]) -> dict[str, Any]:
        """The result's wire form, as the API or ``consortia analyze --json`` gives it."""
        return analyze_remote(request, self.urls, key=self.lead_key, trust=self.trust).to_dict()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def relative_difference(ours: Any, theirs: Any) -> float:
    """Largest |ours - theirs| / max(|theirs|, 1e-300) over matching entries."""
    a = np.asarray(ours, dtype=float)
    b = np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "federated_stats.md")
    parser.add_argument(
        "--node-blas-threads",
        type=int,
        default=1,
        help="BLAS threads per node process (0: the library default)",
    )
    args = parser.parse_args()
    node_env = blas_threads(args.node_blas_threads or None)
    scale = 10 if args.quick else 1
    rng = np.random.default_rng(20261123)
    cox = cox_data(30_000 // scale, rng)
    glm = glm_data(300_000 // scale, rng)
    km = km_data(300_000 // scale, rng)
    # The node each row lives on, as NodeCluster splits the rows (thirds, in order).
    thirds = np.array_split(np.arange(len(cox)), 3)
    cox_by_node = cox.assign(node=np.repeat(np.arange(3), [len(part) for part in thirds]))
    covariates = [f"x{i}" for i in range(5)]
    regressors = [f"z{i}" for i in range(10)]
    print(f"Machine: {machine()}", flush=True)

    import statsmodels.api as sm
    from lifelines import CoxPHFitter, KaplanMeierFitter

    def pooled_cox() -> Any:
        return CoxPHFitter().fit(cox, "time", "event")

    def pooled_cox_strata() -> Any:
        return CoxPHFitter(strata=["node"]).fit(cox_by_node, "time", "event")

    def pooled_glm() -> Any:
        design = sm.add_constant(glm[regressors])
        return sm.GLM(glm["y"], design, family=sm.families.Binomial()).fit()

    def pooled_km() -> Any:
        fits = []
        for arm, rows in km.groupby("arm"):
            fits.append(KaplanMeierFitter().fit(rows["time"], rows["event"], label=str(arm)))
        return fits

    # lifelines' default stopping rule leaves ~1e-6 in the coefficients; the exactness
    # column compares with a fit run to convergence (untimed), as the tests do.
    tight = {"precision": 1e-20, "r_precision": 1e-16}

    def cox_difference(result: dict[str, Any], fit: Any) -> float:
        strata = fit.strata if fit.strata else None
        frame = cox_by_node if strata else cox
        exact = CoxPHFitter(strata=strata).fit(frame, "time", "event", fit_options=tight)
        ours = [result["estimates"]["coef"][name] for name in covariates]
        return relative_difference(ours, exact.params_[covariates].to_numpy())

    def glm_difference(result: dict[str, Any], fit: Any) -> float:
        ours = [result["estimates"]["coef"][name] for name in ["Intercept", *regressors]]
        return relative_difference(ours, fit.params.to_numpy())

    def km_difference(result: dict[str, Any], fits: Any) -> float:
        worst = 0.0
        for fit in fits:
            curve = result["estimates"]["groups"][fit._label]
            theirs = fit.survival_function_at_times(curve["time"]).to_numpy()
            worst = max(worst, relative_difference(curve["survival"], theirs))
        return worst

    cox_request = {
        "kind": "cox",
        "table": "cox",
        "time": "time",
        "event": "event",
        "covariates": covariates,
        "ties": "efron",
        "time_bin": 1,
    }
    cases: list[tuple[str, str, str, dict[str, Any], Callable[[], Any], Any]] = [
        (
            "Cox PH, Efron, unstratified",
            "lifelines CoxPHFitter",
            f"{len(cox):,} subjects x 5 covariates",
            cox_request,
            pooled_cox,
            cox_difference,
        ),
        (
            "Cox PH, Efron, stratified by node",
            "lifelines CoxPHFitter(strata=['node'])",
            f"{len(cox):,} subjects x 5 covariates",
            {**cox_request, "strata": ["node"]},
            pooled_cox_strata,
            cox_difference,
        ),
        (
            "logistic GLM",
            "statsmodels GLM(Binomial)",
            f"{len(glm):,} rows x 10 covariates",
            {
                "kind": "glm",
                "family": "binomial",
                "table": "glm",
                "outcome": "y",
                "covariates": regressors,
            },
            pooled_glm,
            glm_difference,
        ),
        (
            "Kaplan-Meier",
            "lifelines KaplanMeierFitter per group",
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
            km_difference,
        ),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        federation = Federation(Path(folder), {"cox": cox, "glm": glm, "km": km}, env=node_env)
        try:
            for label, reference, size, request, pooled, difference in cases:
                federation.analyze(request)  # warm-up: imports and first connections
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pooled()
                    fed_times, pooled_times = [], []
                    result: dict[str, Any] = {}
                    for _ in range(args.repeats):
                        seconds, result = timed(lambda request=request: federation.analyze(request))
                        fed_times.append(seconds)
                        seconds, fit = timed(pooled)
                        pooled_times.append(seconds)
                fed, ref = statistics.median(fed_times), statistics.median(pooled_times)
                gap = difference(result, fit)
                rows.append(
                    (
                        label,
                        reference,
                        size,
                        fed,
                        ref,
                        fed / ref,
                        result["rounds"],
                        result["bytes"],
                        gap,
                        fed_times,
                        pooled_times,
                    )
                )
                print(
                    f"{label}: federated {fed:.3f}s, pooled {ref:.3f}s, ratio {fed / ref:.2f}, "
                    f"max relative difference {gap:.1e} "
                    f"(federated runs {', '.join(f'{t:.3f}' for t in fed_times)}; "
                    f"pooled runs {', '.join(f'{t:.3f}' for t in pooled_times)})",
                    flush=True,
                )
        finally:
            federation.close()
    lines = [
        "# Federated (3 nodes, loopback, push) vs pooled reference",
        "",
        f"Machine: {machine()}",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeats} "
        f"runs each, alternating{' (quick: a tenth of the data)' if args.quick else ''}; "
        f"BLAS threads per node process: {args.node_blas_threads or 'library default'}.",
        "",
        "| analysis | pooled reference | data | federated s | pooled s | ratio fed/pooled "
        "| rounds | bytes | max rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, reference, size, fed, ref, ratio, rounds, nbytes, gap, _, _ in rows:
        lines.append(
            f"| {label} | {reference} | {size} | {fed:.3f} | {ref:.3f} | {ratio:.2f} "
            f"| {rounds} | {nbytes:,} | {gap:.1e} |"
        )
    lines += ["", "Every run (seconds):", ""]
    for label, _, _, _, _, _, _, _, _, fed_times, pooled_times in rows:
        lines.append(
            f"- {label}: federated {', '.join(f'{t:.3f}' for t in fed_times)}; "
            f"pooled {', '.join(f'{t:.3f}' for t in pooled_times)}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
