"""Page timings at a study's scale: the record-status dashboard against the subject list.

    .venv/bin/python bench/bench_pages.py [--subjects 5000] [--requests 200] [--rounds 3]
                                          [--postgresql]

A node's database gets ``--subjects`` subjects of the CAR-T study at two sites, each with
its screening event and three forms in mixed states (in progress, complete, verified,
signed, locked) and an open query on one form in ten, written with plain inserts (the
pages only read). The node's app is served in-process (Starlette's test client, a signed-in
coordinator of every site), and in each round the pages are asked in turn, ``--requests``
times each, interleaved A B A B: the subject list (200 a page), the dashboard's first page
(50 subjects × 14 events), its last page, and the dashboard filtered to subjects with an
open query. Per page: the median of the rounds' p50 and p95 in milliseconds, and the ratio
of the dashboard's p95 to the subject list's measured in the same round. Target: the
dashboard's p95 under 50 ms at 5,000 subjects.

Results are appended to ``bench/results/pages.md`` (``--out``) with the machine description.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster import machine  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from consortia.app import create_app  # noqa: E402
from consortia.auth.principal import Grant, Principal, Role  # noqa: E402
from consortia.config import Settings  # noqa: E402
from consortia.domain.templates import template_text  # noqa: E402
from consortia.services import studies, users  # noqa: E402
from consortia.services.common import cli_operator  # noqa: E402
from consortia.storage.db import make_engine  # noqa: E402
from consortia.storage.migrations import upgrade  # noqa: E402
from consortia.storage.tables import (  # noqa: E402
    data_query,
    event_instance,
    form_instance,
    subject,
)

STUDY = "CART-LBCL"
EMAIL = "coordinator@sg.example"
PASSWORD = "a bench passphrase"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:54329/postgres"
ADMIN = Principal(1, "admin@bench", "Admin", frozenset({Grant(STUDY, "*", Role.STUDY_ADMIN)}))
STATES = ("in_progress", "complete", "verified", "signed", "locked")


def seed(engine: sa.Engine, count: int) -> None:
    """The study, ``count`` subjects with three screening forms each, and the coordinator."""
    upgrade(engine)
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    operator = cli_operator()
    users.create_user(engine, operator, email=EMAIL, name="Coordinator", password=PASSWORD)
    for site in ("SG01", "SH01"):
        users.grant_role(engine, operator, email=EMAIL, study=STUDY, site=site, role="coordinator")
    now = datetime.now(UTC)
    subjects = [
        {
            "id": n,
            "study": STUDY,
            "site": "SG01" if n % 2 else "SH01",
            "subject_id": f"{'SG01' if n % 2 else 'SH01'}-{n:05d}",
            "created_at": now,
            "created_by": "bench",
            "status": "screening",
        }
        for n in range(1, count + 1)
    ]
    events = [
        {"id": n, "subject_pk": n, "event": "screening", "instance": 1, "created_at": now}
        for n in range(1, count + 1)
    ]
    forms: list[dict[str, Any]] = []
    queries: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        for k, form in enumerate(("consent", "eligibility", "demographics")):
            state = STATES[(n + k) % len(STATES)]
            stamp = {"verified": now} if state in ("verified", "signed", "locked") else {}
            forms.append(
                {
                    "id": len(forms) + 1,
                    "event_pk": n,
                    "subject_pk": n,
                    "form": form,
                    "status": "in_progress" if state == "in_progress" else "complete",
                    "version": 1,
                    "study_version": 1,
                    "updated_at": now,
                    "updated_by": "bench",
                    "verified_at": stamp.get("verified"),
                    "signed_at": now if state in ("signed", "locked") else None,
                    "locked_at": now if state == "locked" else None,
                }
            )
        if n % 10 == 0:
            queries.append(
                {
                    "form_pk": len(forms),
                    "subject_pk": n,
                    "item": "age",
                    "group_instance": 0,
                    "status": "open",
                    "origin": "manual",
                    "text": "Source?",
                    "opened_at": now,
                    "opened_by": "bench",
                    "updated_at": now,
                }
            )
    with engine.begin() as connection:
        connection.execute(subject.insert(), subjects)
        connection.execute(event_instance.insert(), events)
        connection.execute(form_instance.insert(), forms)
        connection.execute(data_query.insert(), queries)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("subject", "event_instance", "form_instance", "data_query"):
                connection.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
            connection.execute(sa.text("ANALYZE"))


def timed(client: TestClient, path: str, times: int) -> list[float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        response = client.get(path)
        spent.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
    return spent


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def run(url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    engine = make_engine(url)
    seed(engine, args.subjects)
    settings = Settings(database_url=url, environment="development")
    last = (args.subjects - 1) // 50 * 50
    pages = {
        "subject list (200)": f"/studies/{STUDY}/subjects",
        "dashboard, first page (50)": f"/studies/{STUDY}/dashboard",
        f"dashboard, last page (start={last})": f"/studies/{STUDY}/dashboard?start={last}",
        "dashboard, open queries": f"/studies/{STUDY}/dashboard?state=open_query",
    }
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in pages}
    ratios: list[float] = []
    with TestClient(create_app(settings), base_url="https://node.bench") as client:
        client.post("/login", data={"email": EMAIL, "password": PASSWORD})
        for path in pages.values():  # warm: templates compiled, plans cached
            timed(client, path, 5)
        for _ in range(args.rounds):
            spent: dict[str, list[float]] = {name: [] for name in pages}
            for _ in range(args.requests):  # interleaved, one of each in turn
                for name, path in pages.items():
                    spent[name] += timed(client, path, 1)
            for name, values in spent.items():
                rounds[name].append((statistics.median(values), p95(values)))
            ratios.append(
                p95(spent["dashboard, first page (50)"]) / p95(spent["subject list (200)"])
            )
    engine.dispose()
    result = {
        name: {
            "p50": statistics.median(p50 for p50, _ in values),
            "p95": statistics.median(p95_ for _, p95_ in values),
        }
        for name, values in rounds.items()
    }
    result["ratio"] = {"p50": 0.0, "p95": statistics.median(ratios)}
    return result


def report(backend: str, result: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        f"### {backend}, {args.subjects} subjects, {args.rounds} rounds × {args.requests} "
        f"requests a page ({date.today().isoformat()}, load {os.getloadavg()[0]:.1f})",
        "",
        f"Machine: {machine()}",
        "",
        "| page | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for name, values in result.items():
        if name != "ratio":
            lines.append(f"| {name} | {values['p50']:.1f} | {values['p95']:.1f} |")
    lines += [
        "",
        f"Dashboard p95 / subject list p95, same round: {result['ratio']['p95']:.2f} "
        f"(median of rounds). Target: dashboard p95 < 50 ms.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgresql", action="store_true", help="also on PostgreSQL (54329)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "pages.md")
    args = parser.parse_args()
    texts = []
    with tempfile.TemporaryDirectory() as folder:
        texts.append(report("SQLite", run(f"sqlite:///{folder}/pages.db", args), args))
    if args.postgresql:
        name = f"bench_pages_{os.getpid()}"
        admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
            texts.append(report("PostgreSQL", run(url, args), args))
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    text = "\n".join(texts)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as out:
        out.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
