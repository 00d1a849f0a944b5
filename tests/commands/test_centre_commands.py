"""``consortia centre ...`` at a hub made by ``consortia init --hub``: partners, an agreement
with its document, what expires soon, a project through a gate (a skipped gate refused with
its reason and exit status 1), and a node that is not a hub refused."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.services.common import utc_now

runner = CliRunner()
TODAY = utc_now().date()
PASSWORD = "a long passphrase for the hub"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("centre") / "hub"
    (folder.parent / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    done = runner.invoke(
        app,
        [
            *("init", str(folder), "--node-name", "hub", "--node-url", "http://127.0.0.1:9"),
            *("--admin-email", "admin@hub.example", "--admin-name", "Admin"),
            *("--admin-password-file", str(folder.parent / "password")),
            *("--environment", "development", "--hub", "--name", "Innovation consortium"),
        ],
    )
    assert done.exit_code == 0, done.output
    return folder / "consortia.toml"


def centre(config: Path, *args: str) -> tuple[int, str]:
    done = runner.invoke(app, ["centre", *args, "--config", str(config)])
    return done.exit_code, done.output


def test_partners_an_agreement_and_its_document_from_the_shell(hub: Path, tmp_path: Path) -> None:
    assert centre(hub, "partner", "add", "SGH", "--name", "Singapore General",
                  "--kind", "hospital", "--country", "SG")[0] == 0  # fmt: skip
    code, out = centre(
        hub, "agreement", "add", "MOU-1", "--title", "Centre MOU", "--kind", "mou",
        "--starts", str(TODAY), "--ends", str(TODAY + timedelta(days=7)), "--party", "SGH",
    )  # fmt: skip
    assert (code, out.strip()) == (0, "agreement MOU-1: in_force")
    signed = tmp_path / "MOU signed.pdf"
    signed.write_bytes(b"%PDF-1.7\n%%EOF\n")
    code, out = centre(hub, "agreement", "attach", "MOU-1", str(signed))
    assert code == 0
    assert hashlib.sha256(signed.read_bytes()).hexdigest() in out
    code, out = centre(hub, "expiring")
    assert f"agreement MOU-1 ends {TODAY + timedelta(days=7)}: Centre MOU" in out
    code, out = centre(hub, "agreement", "add", "BAD", "--title", "x", "--kind", "lease",
                       "--starts", "2026-13-01", "--party", "SGH")  # fmt: skip
    assert code == 1
    assert "--starts: '2026-13-01' is not a day: write YYYY-MM-DD" in out


def test_a_skipped_gate_is_refused_from_the_shell(hub: Path) -> None:
    for email in ("a@hub.example", "b@hub.example"):
        assert centre(hub, "person", "add", email, "--name", email)[0] == 0
    assert centre(hub, "committee", "add", "SC", "--name", "Steering", "--quorum", "2",
                  "--member", "a@hub.example", "--member", "b@hub.example")[0] == 0  # fmt: skip
    assert centre(hub, "project", "add", "P1", "--title", "Patch", "--committee", "SC")[0] == 0
    gate = ["project", "gate", "P1", "--decision", "go", "--rationale", "ok",
            "--present", "a@hub.example", "--present", "b@hub.example"]  # fmt: skip
    code, out = centre(hub, *gate, "--to", "prototype")
    assert code == 1
    assert "from idea the next gate is proof_of_concept, not prototype" in out
    code, out = centre(hub, *gate, "--to", "proof_of_concept")
    assert (code, out.strip()) == (0, "project P1: go; now at proof_of_concept (active)")


def test_the_centre_commands_need_a_hub(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "n.db"}"\n', encoding="utf-8")
    code, out = centre(config, "partner", "list")
    assert code == 1
    assert "the innovation centre lives at the hub" in out
