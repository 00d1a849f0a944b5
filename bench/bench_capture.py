"""Data-capture benchmarks: bulk import, export memory, concurrent form saves, audit verify.

    .venv/bin/python bench/bench_capture.py [--values 1000000] [--quick] [--parts a,b,c,d]

(a) ``import_file`` of a synthetic cart-lbcl REDCap-style CSV holding >= ``--values`` item
    values, values per second, against a plain ``executemany`` of the same ``item_value`` and
    ``audit_event`` rows (read back from what the import wrote) into fresh copies of those
    tables (same columns, keys and indexes; no audit triggers), in the same run, on SQLite
    and on PostgreSQL. One import at a tenth of the size is profiled with cProfile.
(b) ``export_study`` (csv-long, and per-form csv) in a child process doing only the export:
    seconds and the child's peak RSS (its own ``getrusage(RUSAGE_SELF).ru_maxrss``), at a
    tenth of ``--values`` and at ``--values`` (the import databases of (a), SQLite).
(c) ``--clients`` threads (``http.client``, keep-alive) against ``consortia serve`` on a
    free loopback port, one API token per client: a SQLite node served by one process, and
    a PostgreSQL node served by ``--postgresql-workers`` uvicorn worker processes
    (``consortia serve --workers W``), ``--server-threads`` threads each, side by side in
    one run (``--c-repeats`` rounds, the databases interleaved). Each client saves its own
    subject's eligibility form over and over for ``--seconds``: ``--client-loop read-save``
    GETs the version before each PUT (with that version and a reason); ``--client-loop
    save`` opens the form once and PUTs with the version the previous save returned, as a
    data-entry page does. Saves/s, p50/p99 of each loop and of GET and PUT alone, server
    and client CPU per save, errors, lost updates, against the targets (p99 of the save
    under 250 ms on PostgreSQL, under 500 ms on SQLite; 0 errors and 0 lost updates).
(d) ``verify_trail`` over ``--events`` audit events created with ``append_events``.

Results go to ``bench/results/capture.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import json
import os
import pstats
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from cluster import machine  # noqa: E402

from consortia.auth.principal import Grant, Principal, Role  # noqa: E402
from consortia.domain.synthetic import synthesize  # noqa: E402
from consortia.domain.templates import template_text  # noqa: E402
from consortia.services import exports, imports, studies, tokens, users  # noqa: E402
from consortia.services.exports import ExportFormat, ExportRequest  # noqa: E402
from consortia.storage.audit import append_events, audit_event, verify_trail  # noqa: E402
from consortia.storage.db import make_engine  # noqa: E402
from consortia.storage.migrations import upgrade  # noqa: E402
from consortia.storage.tables import item_value  # noqa: E402

STUDY = "CART-LBCL"
ADMIN = Principal(
    7,
    "dm@sg.example",
    "DM",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.AUDITOR)),
)
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:54329/postgres"
CHUNK = 20_000
LOG: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LOG.append(line)


# ---------------------------------------------------------------- databases


class Databases:
    """Fresh node databases: SQLite files in a temp folder, PostgreSQL databases on 54329."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pg: list[str] = []
        self.count = 0

    def url(self, kind: str) -> str:
        self.count += 1
        if kind == "sqlite":
            return f"sqlite:///{self.folder / f'node{self.count}.db'}"
        name = f"bench_capture_{os.getpid()}_{self.count}"
        admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.pg.append(name)
        return PG_SERVER.rsplit("/", 1)[0] + f"/{name}"

    def close(self) -> None:
        if not self.pg:  # a SQLite-only run needs no PostgreSQL server
            return
        admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for name in self.pg:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def node(url: str) -> sa.Engine:
    engine = make_engine(url)
    upgrade(engine)
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    return engine


def count(engine: sa.Engine, table: sa.Table | str) -> int:
    name = table if isinstance(table, str) else table.name
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())


# ---------------------------------------------------------------- (a) import


def data_file(folder: Path, values: int) -> tuple[Path, int]:
    """A cart-lbcl CSV with about ``values`` item values (calibrated on a small import)."""
    probe = folder / "probe.csv"
    synthesize("cart-lbcl", subjects=200, site="SG01", seed=3).write_csv(probe)
    engine = node(f"sqlite:///{folder / 'probe.db'}")
    per_subject = imports.import_file(engine, ADMIN, STUDY, probe).values / 200
    engine.dispose()
    subjects = int(values / per_subject * 1.02) + 1
    path = folder / f"cart-{subjects}.csv"
    if not path.exists():
        start = time.perf_counter()
        synthesize("cart-lbcl", subjects=subjects, site="SG01", seed=3).write_csv(path)
        say(
            f"generated {path.name}: {subjects} subjects, ~{per_subject:.1f} values each, "
            f"{path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s"
        )
    return path, subjects


def copy_tables(engine: sa.Engine) -> None:
    """plain_item_value and plain_audit_event: same columns, keys and indexes, no triggers."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            for table in ("item_value", "audit_event"):
                rows = connection.execute(
                    sa.text(
                        "SELECT sql FROM sqlite_master WHERE tbl_name = :t "
                        "AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC"
                    ),
                    {"t": table},
                ).scalars()
                for ddl in list(rows):
                    connection.execute(
                        sa.text(re.sub(rf"\b(\w*){table}", rf"\1plain_{table}", ddl))
                    )
        else:
            for table in ("item_value", "audit_event"):
                connection.execute(
                    sa.text(f"CREATE TABLE plain_{table} (LIKE {table} INCLUDING ALL)")
                )


def plain_insert(engine: sa.Engine) -> tuple[float, int, int]:
    """Seconds to executemany the import's value and audit rows into the plain copies."""
    copy_tables(engine)
    md = sa.MetaData()
    plain_values = sa.Table("plain_item_value", md, autoload_with=engine)
    plain_audit = sa.Table("plain_audit_event", md, autoload_with=engine)
    with engine.connect() as connection:
        values = [
            dict(r._mapping) for r in connection.execute(sa.select(item_value).order_by("id"))
        ]
        events = [
            dict(r._mapping) for r in connection.execute(sa.select(audit_event).order_by("id"))
        ]
    for row in values:
        del row["id"]
    for row in events:
        del row["id"]
    start = time.perf_counter()
    with engine.begin() as connection:
        for i in range(0, len(values), CHUNK):
            connection.execute(plain_values.insert(), values[i : i + CHUNK])
        for i in range(0, len(events), CHUNK):
            connection.execute(plain_audit.insert(), events[i : i + CHUNK])
    return time.perf_counter() - start, len(values), len(events)


def part_a(args: argparse.Namespace, dbs: Databases, folder: Path) -> dict[str, Any]:
    path, subjects = data_file(folder, args.values)
    results: dict[str, Any] = {"file": path, "subjects": subjects}
    for kind in args.databases:
        for repeat in range(args.import_repeats):
            url = dbs.url(kind)
            engine = node(url)
            start = time.perf_counter()
            report = imports.import_file(engine, ADMIN, STUDY, path)
            ours = time.perf_counter() - start
            plain, nvalues, nevents = plain_insert(engine)
            row = {
                "values": report.values,
                "forms": report.forms,
                "events": nevents,
                "queries": report.queries_opened,
                "ours_s": ours,
                "plain_s": plain,
                "ours_vps": report.values / ours,
                "plain_vps": nvalues / plain,
            }
            row["ratio"] = row["ours_vps"] / row["plain_vps"]
            results.setdefault(kind, []).append(row)
            if kind == "sqlite" and repeat == 0:
                results["sqlite_url"] = url
            say(
                f"(a) {kind} run {repeat + 1}: import {report.values:,} values "
                f"({report.forms:,} forms, {nevents:,} audit events, {report.queries_opened:,} "
                f"queries) {ours:.1f} s = {row['ours_vps']:,.0f} values/s; plain executemany "
                f"{plain:.1f} s = {row['plain_vps']:,.0f} values/s; ratio {row['ratio']:.3f}"
            )
            engine.dispose()
    if args.profile:
        small = max(1, subjects // 10)
        ppath = folder / "profile.csv"
        synthesize("cart-lbcl", subjects=small, site="SG01", seed=3).write_csv(ppath)
        url = dbs.url("sqlite")
        engine = node(url)
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        report = imports.import_file(engine, ADMIN, STUDY, ppath)
        profiler.disable()
        elapsed = time.perf_counter() - start
        engine.dispose()
        results["small_url"] = url
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(25)
        stream2 = io.StringIO()
        pstats.Stats(profiler, stream=stream2).sort_stats("tottime").print_stats(10)
        results["profile"] = (report.values, elapsed, stream.getvalue(), stream2.getvalue())
        say(f"(a) profiled import (SQLite): {report.values:,} values in {elapsed:.1f} s")
    return results


# ---------------------------------------------------------------- (b) export


def export_child(url: str, fmt: str, out: str) -> None:
    engine = make_engine(url)
    start = time.perf_counter()
    counts = exports.export_study(engine, ADMIN, STUDY, ExportRequest(ExportFormat(fmt)), Path(out))
    elapsed = time.perf_counter() - start
    # VmHWM, not getrusage: ru_maxrss is inherited from the (large) parent across fork+exec
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
    rss = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    print(json.dumps({"seconds": elapsed, "rss_kib": rss, "rows": sum(counts.values())}))


def run_export(url: str, fmt: str, folder: Path) -> dict[str, Any]:
    out = folder / f"export-{fmt}-{time.monotonic_ns()}"
    if fmt == "csv-long":
        out = out.with_suffix(".csv")
    done = subprocess.run(
        [sys.executable, __file__, "--export-child", url, fmt, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_b(args: argparse.Namespace, urls: dict[str, str], folder: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for fmt in ("csv-long", "csv"):
        for size, url in urls.items():
            runs = [run_export(url, fmt, folder) for _ in range(args.export_repeats)]
            results[fmt, size] = runs
            say(
                f"(b) {fmt} {size}: "
                + ", ".join(f"{r['seconds']:.1f} s / {r['rss_kib'] / 1024:.0f} MiB" for r in runs)
                + f" ({runs[0]['rows']:,} rows)"
            )
    return results


# ---------------------------------------------------------------- (c) concurrent saves


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "eligible": True,
}


def percentile(ordered: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted seconds, in milliseconds (nearest rank below)."""
    if not ordered:
        return float("nan")
    return ordered[int(fraction * (len(ordered) - 1))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, grew = {pid}, True
    while grew:
        found = {child for child, parent in parents.items() if parent in tree}
        grew = not found <= tree
        tree |= found
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def accepting_processes(pid: int, port: int) -> int:
    """How many of ``pid``'s child processes accept on ``port``: their event loop watches
    (epoll) their copy of the listening socket. uvicorn's workers share one socket, and a
    worker still starting accepts nothing: clients that connect before every worker serves
    all land on the first ones (Linux /proc)."""
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                listening.add(f"socket:[{fields[9]}]")

    def link(fd: Path) -> str:
        try:
            return os.readlink(fd)
        except OSError:  # closed meanwhile (a client's connection)
            return ""

    accepting = 0
    for child in Path("/proc").iterdir():
        try:
            if not child.name.isdigit():
                continue
            if int((child / "stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            fds = {fd.name: link(fd) for fd in (child / "fd").iterdir()}
        except OSError:  # a process that has just ended
            continue
        sockets = {name for name, target in fds.items() if target in listening}
        for name, target in fds.items():
            if target != "anon_inode:[eventpoll]":
                continue
            try:
                info = (child / "fdinfo" / name).read_text()
            except OSError:
                continue
            watched = {line.split()[1] for line in info.splitlines() if line.startswith("tfd:")}
            if watched & sockets:
                accepting += 1
                break
    return accepting


def connections_per_process(pid: int, port: int) -> list[int]:
    """The clients' connections each of ``pid``'s processes (itself and its children) holds
    on ``port``, largest first (Linux /proc)."""
    established = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(f"socket:[{fields[9]}]")
    counts = []
    for process in Path("/proc").iterdir():
        try:
            if not process.name.isdigit():
                continue
            parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid not in (parent, int(process.name)):
                continue
            held = 0
            for fd in (process / "fd").iterdir():
                with contextlib.suppress(OSError):
                    held += os.readlink(fd) in established
        except OSError:
            continue
        if held:
            counts.append(held)
    return sorted(counts, reverse=True)


#: (c)'s targets: p99 of the save (ms) per database; 0 errors and 0 lost updates on both.
C_TARGET_P99_MS = {"postgresql": 250.0, "sqlite": 500.0}


NGINX_FRONT = """
daemon off;
master_process off;
pid {folder}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream node {{
        {servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def part_c(
    args: argparse.Namespace, url: str, workers: int, server_threads: int, front: str = "uvicorn"
) -> dict[str, Any]:
    """One (c) run. ``front``: ``uvicorn`` (``consortia serve --workers W``, one socket
    shared by the workers) or ``nginx`` (W single-process ``consortia serve`` on W ports
    behind nginx, which deals the requests round-robin)."""
    import httpx

    engine = node(url)
    operator = users.cli_operator()
    secrets = []
    for n in range(args.clients):
        email = f"coord{n}@sg.example"
        users.create_user(engine, operator, email=email, name=f"coord{n}", password=None)
        users.grant_role(
            engine, operator, email=email, study=STUDY, site="SG01", role="coordinator"
        )
        created = tokens.create_token(
            engine, operator, email=email, name="bench", lifetime=timedelta(days=1), studies=None
        )
        secrets.append(created.secret)
    port = free_port()
    env = dict(
        os.environ,
        CONSORTIA_DATABASE_URL=url,
        CONSORTIA_ENVIRONMENT="test",
        CONSORTIA_SECRET_KEY="bench-secret-that-is-long-enough-for-production-0123456789",
        CONSORTIA_LOG_LEVEL="WARNING",
        CONSORTIA_SERVER_THREADS=str(server_threads),
    )
    command = [sys.executable, "-m", "consortia", "serve", "--host", "127.0.0.1"]
    servers: list[subprocess.Popen[bytes]] = []
    backends: list[int] = []  # the ports of nginx's upstream servers
    if front == "nginx":
        backends = [free_port() for _ in range(workers)]
        servers += [subprocess.Popen([*command, "--port", str(p)], env=env) for p in backends]
        folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        (folder / "nginx.conf").write_text(
            NGINX_FRONT.format(
                folder=folder,
                port=port,
                servers=" ".join(f"server 127.0.0.1:{p};" for p in backends),
            ),
            encoding="utf-8",
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        config = ["-p", str(folder), "-c", str(folder / "nginx.conf")]
        servers.append(subprocess.Popen([nginx, *config, "-e", str(folder / "error.log")]))
    else:
        command += ["--port", str(port), "--workers", str(workers)]
        servers.append(subprocess.Popen(command, env=env))
    server = servers[-1]
    base = f"http://127.0.0.1:{port}/api/v1/studies/{STUDY}"

    def ready() -> bool:
        for check in [*backends, port]:
            try:
                httpx.get(f"http://127.0.0.1:{check}/api/v1/health", timeout=5)
            except httpx.TransportError:
                return False
        # uvicorn's workers share one socket: every one must accept before clients come
        return front == "nginx" or workers == 1 or accepting_processes(server.pid, port) == workers

    try:
        deadline = time.monotonic() + 300
        while not ready():  # polled
            assert all(s.poll() is None for s in servers), "a server stopped"
            assert time.monotonic() < deadline, "the server did not start serving"
            time.sleep(0.1)
        with httpx.Client(headers={"Authorization": f"Bearer {secrets[0]}"}) as c:
            for n in range(args.clients):
                r = c.post(
                    f"{base}/subjects",
                    json={
                        "subject_id": f"SG01-{n:04d}",
                        "site": "SG01",
                        "screening_date": "2025-01-06",
                    },
                )
                assert r.status_code == 201, r.text
        latencies: list[list[float]] = [[] for _ in range(args.clients)]
        gets: list[list[float]] = [[] for _ in range(args.clients)]
        puts: list[list[float]] = [[] for _ in range(args.clients)]
        successes = [0] * args.clients
        errors = [0] * args.clients
        conflicts = [0] * args.clients
        samples: list[str] = []
        stop = time.monotonic() + args.seconds
        barrier = threading.Barrier(args.clients)

        def client(n: int) -> None:
            # http.client, not httpx: the load generator shares the two cores with the
            # server, and httpx spends ~5x the CPU per request of the standard library's client
            path = (
                f"/api/v1/studies/{STUDY}/subjects/SG01-{n:04d}/events/screening/forms/eligibility"
            )
            headers = {"Authorization": f"Bearer {secrets[n]}", "Content-Type": "application/json"}
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            version = None
            if args.client_loop == "save":  # the form is opened once; each save returns
                connection.request("GET", path, headers=headers)  # the version for the next
                version = json.loads(connection.getresponse().read())["version"]
            barrier.wait()
            i = 0
            while time.monotonic() < stop:
                i += 1
                start = time.perf_counter()
                read = args.client_loop == "read-save" or version is None
                try:
                    if read:
                        connection.request("GET", path, headers=headers)
                        got = connection.getresponse()
                        version = json.loads(got.read())["version"]
                    middle = time.perf_counter()
                    body = {"version": version, "values": {**ELIGIBLE, "ecog": i % 2}}
                    body["reason"] = f"bench save {i}"
                    connection.request("PUT", path, body=json.dumps(body), headers=headers)
                    put = connection.getresponse()
                    text = put.read()
                    version = json.loads(text)["version"] if put.status == 200 else None
                except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
                    errors[n] += 1
                    samples.append(repr(error)[:200])
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    version = None
                    continue
                end = time.perf_counter()
                latencies[n].append(end - start)
                if read:
                    gets[n].append(middle - start)
                puts[n].append(end - middle)
                if put.status == 200:
                    successes[n] += 1
                elif put.status == 409:
                    conflicts[n] += 1
                else:
                    errors[n] += 1
                    samples.append(f"{put.status} {text[:200]!r}")
            connection.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        t0 = time.perf_counter()
        server_cpu0 = sum(cpu_seconds(s.pid) for s in servers)
        client_cpu0 = time.process_time()
        for t in threads:
            t.start()
        time.sleep(args.seconds / 2)  # half-way: how the connections lie on the processes
        if front == "nginx":  # nginx's connections to each server process
            spread = sorted(
                (
                    sum(connections_per_process(s.pid, p))
                    for s, p in zip(servers[:-1], backends, strict=True)
                ),
                reverse=True,
            )
        else:
            spread = connections_per_process(server.pid, port)
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        server_cpu = sum(cpu_seconds(s.pid) for s in servers) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        lost = 0
        with httpx.Client(headers={"Authorization": f"Bearer {secrets[0]}"}) as c:
            for n in range(args.clients):
                form = f"{base}/subjects/SG01-{n:04d}/events/screening/forms/eligibility"
                if c.get(form).json()["version"] != successes[n]:
                    lost += 1
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            process.wait(30)
    with engine.connect() as connection:
        saves = dict(
            connection.execute(
                sa.select(audit_event.c.entity_id, sa.func.count())
                .where(audit_event.c.action == "form.save")
                .group_by(audit_event.c.entity_id)
            ).all()
        )
        chain_ok = verify_trail(connection).ok
    audit_mismatch = sum(
        1
        for n in range(args.clients)
        if saves.get(f"{STUDY}/SG01-{n:04d}/screening/eligibility", 0) != successes[n]
    )
    engine.dispose()
    flat = sorted(x for per in latencies for x in per)
    get_flat = sorted(x for per in gets for x in per)
    put_flat = sorted(x for per in puts for x in per)
    res = {
        "clients": args.clients,
        "loop": args.client_loop,
        "workers": workers,
        "front": front,
        "server_threads": server_threads,
        "seconds": wall,
        "saves": sum(successes),
        "saves_per_s": sum(successes) / wall,
        "p50_ms": statistics.median(flat) * 1000 if flat else float("nan"),
        "p99_ms": percentile(flat, 0.99),
        "get_p50_ms": percentile(get_flat, 0.5),
        "get_p99_ms": percentile(get_flat, 0.99),
        "put_p50_ms": percentile(put_flat, 0.5),
        "put_p99_ms": percentile(put_flat, 0.99),
        # how evenly the clients were served: the kernel spreads connections over the
        # server processes by hash, and the busiest process sets the tail
        "client_p50_min_med_max_ms": [
            round(x * 1000, 1)
            for x in (lambda m: (m[0], statistics.median(m), m[-1]))(
                sorted(statistics.median(per) for per in latencies if per)
            )
        ]
        if any(latencies)
        else [],
        "connections_per_process": spread,
        "server_cpu_ms_per_save": server_cpu * 1000 / max(1, sum(successes)),
        "client_cpu_ms_per_save": client_cpu * 1000 / max(1, sum(successes)),
        "errors": sum(errors),
        "conflicts": sum(conflicts),
        "lost": lost,
        "audit_mismatch": audit_mismatch,
        "chain_ok": chain_ok,
        "samples": samples[:5],
        "audit_keys": sorted(saves)[:2],
    }
    say(
        f"(c) {engine.dialect.name} ({front}), {args.client_loop} loop: {args.clients} clients, "
        f"{workers} server process{'es' if workers > 1 else ''} x "
        f"{server_threads} threads, {wall:.1f} s: {res['saves']:,} saves = "
        f"{res['saves_per_s']:.1f}/s; loop p50 {res['p50_ms']:.1f} ms, p99 "
        f"{res['p99_ms']:.1f} ms (GET p50/p99 {res['get_p50_ms']:.1f}/{res['get_p99_ms']:.1f}, "
        f"PUT {res['put_p50_ms']:.1f}/{res['put_p99_ms']:.1f}); CPU per save: server "
        f"{res['server_cpu_ms_per_save']:.2f} ms, clients {res['client_cpu_ms_per_save']:.2f} ms; errors {res['errors']}, 409s {res['conflicts']}, lost "
        f"{lost}, audit mismatches {audit_mismatch}, chain ok {chain_ok}; per-client p50 "
        f"min/median/max {res['client_p50_min_med_max_ms']} ms; connections per process {spread} {res['samples']}"
    )
    return res


# ---------------------------------------------------------------- (d) audit verify


def part_d(args: argparse.Namespace, dbs: Databases) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in args.databases:
        engine = make_engine(dbs.url(kind))
        upgrade(engine)
        start = time.perf_counter()
        for offset in range(0, args.events, CHUNK):
            entries = [
                {
                    "actor": "dm@sg.example",
                    "action": "form.save",
                    "entity_type": "form",
                    "entity_id": f"{STUDY}/SG01-{(offset + i) // 20:05d}/screening/eligibility",
                    "site": "SG01",
                    "after": {"status": "in_progress", "version": 1, "ecog": str(i % 5)},
                    "reason": "bench",
                }
                for i in range(min(CHUNK, args.events - offset))
            ]
            with engine.begin() as connection:
                append_events(connection, STUDY, entries)
        created = time.perf_counter() - start
        runs = []
        for _ in range(args.verify_repeats):
            with engine.connect() as connection:
                start = time.perf_counter()
                report = verify_trail(connection)
                runs.append(time.perf_counter() - start)
            assert report.ok
        engine.dispose()
        results[kind] = {"append_s": created, "verify": runs}
        say(
            f"(d) {kind}: appended {args.events:,} events in {created:.1f} s; verify_trail "
            + ", ".join(f"{r:.1f}" for r in runs)
            + " s"
        )
    return results


# ---------------------------------------------------------------- report


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def write_report(args: argparse.Namespace, results: dict[str, Any], started: str) -> None:
    lines = [
        "# Data capture benchmarks (`bench/bench_capture.py`)",
        "",
        f"Machine: {machine()}",
        f"Run: {started} – {time.strftime('%H:%M UTC', time.gmtime())}; command: "
        f"`{' '.join(sys.argv)}`. Load average (1, 5, 15 min) now: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; what else ran on the machine is "
        "for whoever ran it to say (see RESULTS.md).",
        "",
    ]
    a = results.get("a")
    if a:
        lines += [
            f"## (a) bulk import ({a['subjects']:,} cart-lbcl subjects, wide CSV)",
            "",
            "| database | values | forms | audit events | import s | values/s | plain "
            "executemany s | plain values/s | ratio ours/plain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for kind in args.databases:
            for r in a.get(kind, []):
                lines.append(
                    f"| {kind} | {r['values']:,} | {r['forms']:,} | {r['events']:,} | "
                    f"{r['ours_s']:.1f} | {r['ours_vps']:,.0f} | {r['plain_s']:.1f} | "
                    f"{r['plain_vps']:,.0f} | {r['ratio']:.3f} |"
                )
        if "profile" in a:
            nvals, elapsed, cumulative, tottime = a["profile"]
            lines += [
                "",
                f"### cProfile of one import (SQLite, {nvals:,} values, {elapsed:.1f} s "
                "under the profiler)",
                "",
                "Top 10 by own time:",
                "",
                "```",
                *tottime.strip().splitlines(),
                "```",
                "",
                "Top 25 by cumulative time:",
                "",
                "```",
                *cumulative.strip().splitlines(),
                "```",
            ]
        lines.append("")
    b = results.get("b")
    if b:
        lines += [
            "## (b) export in a child process (SQLite)",
            "",
            "| format | data | rows | seconds (runs) | peak RSS MiB (runs) |",
            "|---|---|---|---|---|",
        ]
        for (fmt, size), runs in b.items():
            lines.append(
                f"| {fmt} | {size} | {runs[0]['rows']:,} | "
                + ", ".join(f"{r['seconds']:.1f}" for r in runs)
                + " | "
                + ", ".join(f"{r['rss_kib'] / 1024:.0f}" for r in runs)
                + " |"
            )
        lines.append("")
    c = results.get("c")
    if c:
        lines += [
            "## (c) concurrent form saves (`consortia serve [--workers W]`, loopback)",
            "",
            "| database | processes x threads | runs | saves/s | p50 of the save ms | p99 of "
            "the save ms (median) | target | errors | 409s | lost | audit mismatches | chain |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, runs in c.items():
            if not runs:
                continue
            p99s = [r["put_p99_ms"] for r in runs]
            lines.append(
                f"| {kind} | {runs[0]['workers']} x {runs[0]['server_threads']} | {len(runs)} | "
                + ", ".join(f"{r['saves_per_s']:.1f}" for r in runs)
                + " | "
                + ", ".join(f"{r['put_p50_ms']:.1f}" for r in runs)
                + " | "
                + ", ".join(f"{x:.1f}" for x in p99s)
                + f" (**{statistics.median(p99s):.1f}**) | < {C_TARGET_P99_MS[kind.split()[0]]:.0f} | "
                + f"{sum(r['errors'] for r in runs)} | {sum(r['conflicts'] for r in runs)} | "
                + f"{sum(r['lost'] for r in runs)} | {sum(r['audit_mismatch'] for r in runs)} | "
                + ("ok" if all(r["chain_ok"] for r in runs) else "BROKEN")
                + " |"
            )
        lines += [
            "",
            "```",
            json.dumps(c, indent=1, default=str),
            "```",
            "",
        ]
    d = results.get("d")
    if d:
        lines += ["## (d) verify_trail", ""]
        for kind, r in d.items():
            lines.append(
                f"- {kind}: {args.events:,} events appended in {r['append_s']:.1f} s; "
                "verify_trail s: " + ", ".join(f"{x:.2f}" for x in r["verify"])
            )
        lines.append("")
    lines += ["## log", "", "```", *LOG, "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--export-child":
        export_child(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=int, default=1_000_000, help="item values to import")
    parser.add_argument("--import-repeats", type=int, default=1)
    parser.add_argument("--export-repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    # a SQLite node is served by one process; a PostgreSQL node by uvicorn's workers
    parser.add_argument(
        "--postgresql-workers", type=int, default=4, help="(c): server processes on PostgreSQL"
    )
    parser.add_argument(
        "--server-threads", type=int, default=1, help="(c): threads of the SQLite process"
    )
    # a PostgreSQL save waits on the database server between statements: more threads
    # overlap those waits (SQLite's saves queue for its one write lock instead)
    parser.add_argument(
        "--postgresql-threads", type=int, default=4, help="(c): threads per PostgreSQL process"
    )
    parser.add_argument(
        "--postgresql-fronts",
        default="uvicorn",
        help="(c): comma-separated: uvicorn (its --workers) and/or nginx (one consortia serve "
        "per port behind nginx round-robin)",
    )
    parser.add_argument(
        "--c-repeats", type=int, default=1, help="(c): rounds, the databases interleaved"
    )
    parser.add_argument(
        "--client-loop",
        choices=("read-save", "save"),
        default="read-save",
        help="(c): GET the form before each save, or save with the version the last save "
        "returned (the form opened once, as a data-entry page keeps it)",
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--verify-repeats", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--quick", action="store_true", help="small smoke sizes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "capture.md")
    args = parser.parse_args()
    args.databases = args.databases.split(",")
    if args.quick:
        args.values, args.events, args.seconds, args.clients = 20_000, 20_000, 5, 10
    parts = set(args.parts.split(","))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    say(f"Machine: {machine()}; load average {os.getloadavg()}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        dbs = Databases(folder)
        try:
            if "a" in parts or "b" in parts:
                results["a"] = part_a(args, dbs, folder)
                write_report(args, results, started)
            if "b" in parts:
                urls = {}
                if "small_url" in results["a"]:
                    urls["1/10"] = results["a"]["small_url"]
                urls["full"] = results["a"]["sqlite_url"]
                results["b"] = part_b(args, urls, folder)
                write_report(args, results, started)
            if "c" in parts:
                fronts = args.postgresql_fronts.split(",")
                setups = [
                    (kind, front if kind == "postgresql" else "uvicorn")
                    for kind in args.databases
                    for front in (fronts if kind == "postgresql" else ["uvicorn"])
                ]
                results["c"] = {f"{kind} ({front})": [] for kind, front in setups}
                for _ in range(args.c_repeats):
                    for kind, front in setups:
                        pg = kind == "postgresql"
                        workers = args.postgresql_workers if pg else 1
                        threads = args.postgresql_threads if pg else args.server_threads
                        results["c"][f"{kind} ({front})"].append(
                            part_c(args, dbs.url(kind), workers, threads, front)
                        )
                        write_report(args, results, started)
            if "d" in parts:
                results["d"] = part_d(args, dbs)
                write_report(args, results, started)
        finally:
            dbs.close()
    say(f"load average at the end {os.getloadavg()}")
    write_report(args, results, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
