"""A node served by several processes on one PostgreSQL database: the rounds of one
federated Cox model and of one GLM land on different processes, and the results are
exactly those of the node served in one process (and equal lifelines and statsmodels);
a signed task one process answered is refused as a replay by the other.

Two ``consortia serve`` processes (one ``consortia.toml`` with a ``[node]`` section, one
database) stand behind a real nginx whose upstream deals requests round-robin, as a load
balancer in front of several hosts would. Nothing of a session may live only in the memory
of the process that opened it: the agreed design, the levels, the release ledger, the
nonces are in the database, and a process that never saw the session rebuilds the rest.
nginx's access log names the process (its upstream port) that served each round, and each
process's own access log agrees.

nginx comes from the OS packages (``scripts/test_nginx.py ensure`` installs it in CI);
without it the test skips (in CI it fails), as tests/commands/test_behind_nginx.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from lifelines import CoxPHFitter

from consortia.app import create_app
from consortia.config import load_settings
from consortia.federation.local import analyze_remote_async
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import (
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    public_key_b64,
    save_key,
    sign_message,
)
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from processes import READ_SECONDS, started, wait_for_http, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RTOL = 1e-8  # against lifelines / statsmodels; the served and in-process results are equal
ANALYZE = "/federation/v1/analyze"
COX = {
    "kind": "cox",
    "table": "trial",
    "time": "pfs_days",
    "event": "pfs_event",
    "covariates": ["age", "arm"],
    "ties": "efron",
    "time_bin": 30,
}
GLM = {
    "kind": "glm",
    "family": "binomial",
    "table": "trial",
    "outcome": "response",
    "covariates": ["arm", "age"],
}


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        reason = "nginx is not installed (`python scripts/test_nginx.py ensure` installs it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI needs it")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def postgres_url(postgres_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database at the schema's head, for one test."""
    name = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**9}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _proxy_config(folder: Path, port: int, upstreams: list[int]) -> Path:
    """nginx on ``port`` dealing requests round-robin to ``upstreams``; its access log
    names the upstream that served each request."""
    servers = "".join(f"server 127.0.0.1:{p};\n" for p in upstreams)
    config = folder / "nginx.conf"
    config.write_text(
        f"""
        daemon off;
        master_process off;
        pid {folder}/nginx.pid;
        events {{}}
        http {{
            log_format rounds '$request_method $uri $status $upstream_addr';
            access_log {folder}/access.log rounds;
            client_body_temp_path {folder}/body;
            proxy_temp_path {folder}/proxy;
            fastcgi_temp_path {folder}/fastcgi;
            uwsgi_temp_path {folder}/uwsgi;
            scgi_temp_path {folder}/scgi;
            upstream node {{
                {servers}
            }}
            server {{
                listen 127.0.0.1:{port};
                location / {{
                    proxy_pass http://node;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $http_host;
                    proxy_set_header X-Forwarded-For $remote_addr;
                    proxy_next_upstream off;  # each request is served where it was dealt
                }}
            }}
        }}
        """,
        encoding="utf-8",
    )
    return config


def _served_by(access_log: Path) -> list[int]:
    """The upstream port of each ``POST /federation/v1/analyze``, in order."""
    ports = []
    for line in access_log.read_text(encoding="utf-8").splitlines():
        method, uri, status, upstream = line.split()
        if method == "POST" and uri == ANALYZE:
            assert status == "200", line
            ports.append(int(upstream.rsplit(":", 1)[1]))
    return ports


def _pooled_frame(trial: Path) -> pd.DataFrame:
    return pd.read_csv(trial).drop(columns=["mrn"])


def _check_against_references(
    cox: dict[str, Any], glm: dict[str, Any], frame: pd.DataFrame
) -> None:
    cox_frame = frame[["pfs_days", "pfs_event", "age"]].copy()
    cox_frame["arm[T.soc]"] = (frame["arm"] == "soc").astype(float)
    cox_frame["pfs_days"] = np.floor(cox_frame["pfs_days"] / 30) * 30
    fitted = CoxPHFitter().fit(
        cox_frame,
        "pfs_days",
        "pfs_event",
        fit_options={"precision": 1e-20, "r_precision": 1e-16},
    )
    assert set(cox["estimates"]["coef"]) == {"age", "arm[T.soc]"}
    for name in ("age", "arm[T.soc]"):
        assert cox["estimates"]["coef"][name] == pytest.approx(fitted.params_[name], rel=RTOL)
        assert cox["estimates"]["se"][name] == pytest.approx(
            fitted.standard_errors_[name], rel=RTOL
        )
    design = pd.DataFrame(
        {
            "Intercept": 1.0,
            "arm[T.soc]": (frame["arm"] == "soc").astype(float),
            "age": frame["age"].astype(float),
        }
    )
    reference = sm.GLM(frame["response"], design, family=sm.families.Binomial()).fit(
        tol=1e-14, tol_criterion="params"
    )
    assert set(glm["estimates"]["coef"]) == set(design.columns)
    for name in design.columns:
        assert glm["estimates"]["coef"][name] == pytest.approx(reference.params[name], rel=RTOL)
        assert glm["estimates"]["se"][name] == pytest.approx(reference.bse[name], rel=RTOL)


def test_rounds_served_by_different_processes_give_the_in_process_result_exactly(
    tmp_path: Path, postgres_url: str, trial_files: dict[str, Path]
) -> None:
    nginx = _nginx()
    # one hospital holding the three synthetic sites' 210 rows (the disclosure rules are
    # tested elsewhere: here the minimum cell count is 1, so binned event times pass)
    trial = tmp_path / "trial.csv"
    texts = [path.read_text(encoding="utf-8") for path in trial_files.values()]
    header = texts[0].split("\n", 1)[0]
    trial.write_text(
        header + "\n" + "".join(text.split("\n", 1)[1] for text in texts), encoding="utf-8"
    )
    lead_key, node_key = generate_key(), generate_key()
    save_key(node_key, tmp_path / "node_key.pem")
    proxy_port = _free_port()
    node_url = f"http://127.0.0.1:{proxy_port}"
    config = tmp_path / "consortia.toml"
    config.write_text(
        f'node_name = "sgh"\nnode_url = "{node_url}"\ndatabase_url = "{postgres_url}"\n'
        '[node]\nkey_file = "node_key.pem"\nwitness_interval_seconds = 0\n'
        "[node.policy]\nmin_cell_count = 1\ntime_bin = 7\n"
        f'[[node.peers]]\nname = "lead"\nurl = "http://lead.test"\n'
        f'public_key = "{public_key_b64(lead_key)}"\n'
        f'[node.tables.trial]\nfile = "{trial}"\nidentifiers = ["mrn"]\n',
        encoding="utf-8",
    )
    trust = TrustStore([Peer(name="sgh", url=node_url, public_key=public_key_b64(node_key))])
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONSORTIA_")}
    ports = [_free_port(), _free_port()]
    folder = tmp_path / "nginx"
    folder.mkdir()
    nginx_config = _proxy_config(folder, proxy_port, ports)
    error_log = folder / "error.log"
    nginx_command = [nginx, "-p", str(folder), "-c", str(nginx_config), "-e", str(error_log)]
    checked = subprocess.run([*nginx_command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr

    with contextlib.ExitStack() as stack:
        servers: dict[int, subprocess.Popen[bytes]] = {}
        logs: dict[int, Path] = {}
        for port in ports:
            logs[port] = tmp_path / f"serve-{port}.log"
            log = stack.enter_context(logs[port].open("wb"))
            servers[port] = stack.enter_context(
                started(
                    [
                        *(sys.executable, "-m", "consortia", "serve"),
                        *("--config", str(config), "--port", str(port)),
                    ],
                    cwd=tmp_path,
                    env=env,
                    stderr=log,
                    stdout=log,
                    group=True,  # ended with everything it started, however the test ends
                )
            )
        for port, server in servers.items():
            wait_for_http(f"http://127.0.0.1:{port}/federation/v1/identity", process=server)
        proxy = stack.enter_context(
            started(nginx_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

        def proxy_answers() -> bool:
            assert proxy.poll() is None, error_log.read_text(encoding="utf-8", errors="replace")
            try:
                answer = httpx.get(f"{node_url}/federation/v1/identity", timeout=READ_SECONDS)
            except httpx.TransportError:
                return False
            return answer.status_code == 200

        wait_until(proxy_answers, what="nginx in front of the two processes")

        async def served() -> tuple[dict[str, Any], list[int], dict[str, Any], list[int]]:
            # a new connection for each round: nothing ties a round to a process but nginx
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=READ_SECONDS) as client:
                before = len(_served_by(folder / "access.log"))
                cox = (
                    await analyze_remote_async(
                        COX, {"sgh": node_url}, key=lead_key, trust=trust, client=client
                    )
                ).to_dict()
                cox_rounds = _served_by(folder / "access.log")[before:]
                glm = (
                    await analyze_remote_async(
                        GLM, {"sgh": node_url}, key=lead_key, trust=trust, client=client
                    )
                ).to_dict()
                glm_rounds = _served_by(folder / "access.log")[before + len(cox_rounds) :]
            return cox, cox_rounds, glm, glm_rounds

        cox, cox_rounds, glm, glm_rounds = asyncio.run(served())
        # a signed task answered by one process is a replay at the other: nonces are shared
        task = sign_message(
            AnalysisTask(
                task_id=new_id(),
                session=new_id(),
                round=1,
                to="sgh",
                request=GLM,
                payload={"step": "levels"},
            ).model_dump(mode="json"),
            lead_key,
            "lead",
        )
        lead_view = Verifier(trust)
        replies = []
        for port in ports:
            answer = httpx.post(
                f"http://127.0.0.1:{port}{ANALYZE}", json=task, timeout=READ_SECONDS
            )
            assert answer.status_code == 200
            replies.append(lead_view.verify(answer.json())[1])
        assert replies[0]["status"] == "ok", replies[0]
        assert (replies[1]["status"], replies[1]["rule"]) == ("refused", "signature.replay")
        for server in servers.values():
            assert server.poll() is None, "a server process stopped"

    for result in (cox, glm):
        assert result["complete"] is True, result
    # the rounds went to both processes, each round to the other one than the last
    for rounds in (cox_rounds, glm_rounds):
        assert len(rounds) >= 4, rounds  # the levels round and at least three Newton rounds
        assert set(rounds) == set(ports), rounds
        assert all(a != b for a, b in itertools.pairwise(rounds)), rounds
    # and each process's own log shows it served the rounds nginx dealt to it
    for port, log in logs.items():
        text = log.read_text(encoding="utf-8", errors="replace")
        pid = servers[port].pid
        assert f"Started server process [{pid}]" in text, text
        answered = len(re.findall(rf'"POST {ANALYZE} HTTP/1.1" 200', text))
        # the rounds nginx dealt it, and the one task sent to it directly
        assert answered == (cox_rounds + glm_rounds).count(port) + 1, text
        assert "Traceback" not in text

    # the same analyses with the node served in this one process, on the same database
    app = create_app(load_settings(config))

    async def in_process() -> tuple[dict[str, Any], dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, timeout=READ_SECONDS) as client:
            one = await analyze_remote_async(
                COX, {"sgh": node_url}, key=lead_key, trust=trust, client=client
            )
            two = await analyze_remote_async(
                GLM, {"sgh": node_url}, key=lead_key, trust=trust, client=client
            )
        return one.to_dict(), two.to_dict()

    try:
        cox_alone, glm_alone = asyncio.run(in_process())
    finally:
        app.state.node.close()
        app.state.engine.dispose()
    assert cox["estimates"] == cox_alone["estimates"]  # exactly, bit for bit
    assert glm["estimates"] == glm_alone["estimates"]
    assert (cox["rounds"], glm["rounds"]) == (cox_alone["rounds"], glm_alone["rounds"])
    _check_against_references(cox, glm, _pooled_frame(trial))
