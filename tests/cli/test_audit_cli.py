from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from consortia.cli import app
from consortia.storage.audit import append_events, audit_event, metadata
from consortia.storage.db import make_engine

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
