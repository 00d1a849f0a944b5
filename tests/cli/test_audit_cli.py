from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consortia.auth.principal import Role
from consortia.cli import app
from consortia.domain.templates import template_text
from consortia.federation.signing import generate_key, public_key_b64, save_key
from consortia.services import studies
from consortia.services.common import cli_operator
from consortia.services.data_entry import FormSave, save_form
from consortia.services.subjects import SubjectInput, enrol_subject
from consortia.storage import tables
from consortia.storage.audit import append_events, audit_event, audit_head, metadata
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.witness import audit_witness
from nodetoml import free_port, serve_args, write_node_toml
from processes import START_SECONDS

runner = CliRunner()


def test_audit_verify_reports_an_intact_trail_then_the_first_broken_link(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        append_events(
            connection,
            "S1",
            [
                {"actor": "a", "action": "create", "entity_type": "subject", "entity_id": str(i)}
                for i in range(4)
            ],
        )
    result = runner.invoke(app, ["audit", "verify", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "intact: 4 events in 1 chains" in result.output
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        connection.execute(audit_event.update().where(audit_event.c.seq == 2).values(actor="b"))
    engine.dispose()
    result = runner.invoke(app, ["audit", "verify", "--database-url", url])
    assert result.exit_code == 1
    assert "BROKEN at chain 'S1' event 2" in result.output


def test_audit_verify_with_a_bad_url_is_a_message_not_a_traceback() -> None:
    result = runner.invoke(app, ["audit", "verify", "--database-url", "mysql://x/y"])
    assert result.exit_code == 1
    assert "not supported" in result.output


def _study_node(url: str) -> sa.Engine:
    """A migrated node database with a study, a subject and a saved form."""
    engine = make_engine(url)
    upgrade(engine)
    operator = cli_operator(Role.STUDY_ADMIN, Role.COORDINATOR)
    studies.load_definition(engine, operator, template_text("cart-lbcl"))
    enrol_subject(engine, operator, "CART-LBCL", SubjectInput("SG01-001", "SG01"))
    values = {"histology": "dlbcl_nos", "disease_status": "primary_refractory",
              "prior_lines": 2, "ecog": 1, "eligible": True}  # fmt: skip
    save_form(engine, operator, "CART-LBCL", "SG01-001", "screening", "eligibility",
              FormSave(0, values, complete=True))  # fmt: skip
    return engine


def test_audit_verify_state_reports_a_value_edited_in_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = _study_node(url)
    clean = runner.invoke(app, ["audit", "verify", "--database-url", url, "--state"])
    assert clean.exit_code == 0, clean.output
    assert "state matches the audit trail" in clean.output
    with engine.begin() as connection:
        connection.execute(
            tables.item_value.update()
            .where(tables.item_value.c.item == "ecog")
            .values(value_text="3", value_num=3.0)
        )
    engine.dispose()
    edited = runner.invoke(app, ["audit", "verify", "--database-url", url, "--state"])
    assert edited.exit_code == 1
    assert "audit trail intact" in edited.output  # the hash chain alone sees nothing
    assert "CART-LBCL SG01-001 / screening / eligibility.ecog: table 3, trail 1" in edited.output
    assert "state differs from the audit trail: 1 differences" in edited.output


def _node_folder(
    folder: Path, name: str, url: str, peer: tuple[str, str, str], interval: float
) -> Path:
    """A node's folder: its key and a consortia.toml with a [node] section; the config's path."""
    folder.mkdir()
    key = generate_key()
    save_key(key, folder / "node.pem")
    fields = {
        "name": name,
        "url": url,
        "database_url": "sqlite:///node.db",
        "key_file": "node.pem",
        "peers": [{"name": peer[0], "url": peer[1], "public_key": peer[2]}],
        "witness_interval_seconds": interval,
    }
    return write_node_toml(folder, fields)


def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    log = (config.parent / "server.log").open("wb")
    try:
        return subprocess.Popen(serve_args(config, port), stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def _wait_for(check: Callable[[], bool], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_SECONDS  # a busy machine starts a process slowly
    while not check():
        for process in processes:
            assert process.poll() is None, f"a node exited with {process.returncode}"
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _witnessed(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(audit_witness))
        return int(count.scalar_one())


@pytest.mark.slow
def test_running_nodes_witness_each_other_and_audit_verify_finds_a_cut_trail(
    tmp_path: Path,
) -> None:
    """Two real node processes: sgh hands its heads to ruijin at its interval; the CLI
    pushes and verifies over HTTP; a trail cut short in sgh's file is reported."""
    sgh_port, ruijin_port = free_port(), free_port()
    sgh_url = f"http://127.0.0.1:{sgh_port}"
    ruijin_url = f"http://127.0.0.1:{ruijin_port}"
    sgh_key, ruijin_key = generate_key(), generate_key()
    sgh = tmp_path / "sgh"
    ruijin = tmp_path / "ruijin"
    sgh_config = _node_folder(
        sgh, "sgh", sgh_url, ("ruijin", ruijin_url, public_key_b64(ruijin_key)), 0.1
    )
    ruijin_config = _node_folder(
        ruijin, "ruijin", ruijin_url, ("sgh", sgh_url, public_key_b64(sgh_key)), 0
    )
    for folder, key in ((sgh, sgh_key), (ruijin, ruijin_key)):
        (folder / "node.pem").unlink()
        save_key(key, folder / "node.pem")
    sgh_engine = _study_node(f"sqlite:///{sgh / 'node.db'}")
    ruijin_engine = make_engine(f"sqlite:///{ruijin / 'node.db'}")
    upgrade(ruijin_engine)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_serve(ruijin_config, ruijin_port))
        processes.append(_serve(sgh_config, sgh_port))
        _wait_for(lambda: _answers(ruijin_url) and _answers(sgh_url), processes)
        # the running sgh hands its heads over by itself
        _wait_for(lambda: _witnessed(ruijin_engine) >= 1, processes)
        stopped = processes[-1]  # sgh stops; ruijin keeps what it witnessed
        stopped.terminate()
        stopped.wait(timeout=10)
        config = str(sgh_config)
        pushed = runner.invoke(app, ["audit", "witness", "--node-config", config])
        assert pushed.exit_code == 0, pushed.output
        assert "peer ruijin: already had them" in pushed.output
        clean = runner.invoke(app, ["audit", "verify", "--node-config", config])
        assert clean.exit_code == 0, clean.output
        assert "peer ruijin witnessed 1 chains" in clean.output
        with sgh_engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
            connection.execute(
                audit_event.delete().where(
                    audit_event.c.chain == "CART-LBCL", audit_event.c.seq > 1
                )
            )
            first = connection.execute(
                sa.select(audit_event.c.hash).where(audit_event.c.chain == "CART-LBCL")
            ).scalar_one()
            connection.execute(
                audit_head.update()
                .where(audit_head.c.chain == "CART-LBCL")
                .values(seq=1, hash=first)
            )
        cut = runner.invoke(app, ["audit", "verify", "--node-config", config])
        assert cut.exit_code == 1, cut.output
        assert "audit trail intact" in cut.output
        assert "truncated: chain 'CART-LBCL' ends at event 1, but ruijin witnessed" in cut.output
        refused = runner.invoke(app, ["audit", "witness", "--node-config", config])
        assert refused.exit_code == 3
        assert "peer ruijin: not handed over: truncated" in refused.output
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sgh_engine.dispose()
        ruijin_engine.dispose()
