"""``consortia randomization generate|show|export`` at a hub: the lists sealed once from a
seed, shown without arms, exported only with a stated reason (audited) to a file only its
owner reads; anywhere but a hub, a clear refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app as cli
from randomisation_network import SEED, STUDY, audit_actions, network

runner = CliRunner()


def _hub_toml(directory: Path, database_url: str) -> Path:
    config = directory / "consortia.toml"
    config.write_text(
        f'node_name = "hub"\nnode_url = "http://hub.test"\ndatabase_url = "{database_url}"\n'
        'environment = "test"\n\n[node]\nkey_file = "hub.pem"\nrole = "hub"\n',
        encoding="utf-8",
    )
    return config


def test_generate_show_and_export_at_the_hub(
    migrated_sqlite: Callable[[Path], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_url = migrated_sqlite(tmp_path / "hub.sqlite")
    with network(hub_url, migrated_sqlite, tmp_path, seal=False, members=("sgh",)) as net:
        config = str(_hub_toml(tmp_path / "hub", hub_url))
        made = runner.invoke(
            cli, ["randomization", "generate", STUDY, "--seed", str(SEED), "--config", config]
        )
        assert made.exit_code == 0, made.output
        assert "permuted_blocks sealed (4 strata" in made.output
        again = runner.invoke(
            cli, ["randomization", "generate", STUDY, "--seed", "1", "--config", config]
        )
        assert again.exit_code == 1
        assert "never generated again" in again.output
        shown = runner.invoke(cli, ["randomization", "show", STUDY, "--config", config])
        assert shown.exit_code == 0, shown.output
        assert "0 of " in shown.output
        assert "car_t" not in shown.output  # no arms on the screen
        no_reason = runner.invoke(cli, ["randomization", "export", STUDY, "--config", config])
        assert no_reason.exit_code == 2  # --reason is required
        out = tmp_path / "list.csv"
        exported = runner.invoke(
            cli,
            [
                "randomization",
                "export",
                STUDY,
                "--reason",
                "TMF filing at database lock",
                "--out",
                str(out),
                "--config",
                config,
            ],
        )
        assert exported.exit_code == 0, exported.output
        assert out.stat().st_mode & 0o777 == 0o600
        lines = out.read_text(encoding="utf-8").splitlines()
        assert lines[0] == f"# study,{STUDY},method,permuted_blocks,seed,{SEED}"
        assert {"car_t", "soc"} <= {line.split(",")[-4] for line in lines[3:]}
        actions = audit_actions(net.hub.engine, "hub")
        assert ("hub.randomisation.export", STUDY, "TMF filing at database lock") in actions


def test_randomization_commands_refuse_a_node_that_is_not_a_hub(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text(
        f'node_name = "sgh"\ndatabase_url = "sqlite:///{tmp_path / "n.db"}"\n', encoding="utf-8"
    )
    result = runner.invoke(
        cli, ["randomization", "generate", STUDY, "--seed", "1", "--config", str(config)]
    )
    assert result.exit_code == 1
    assert "generated and kept at the hub" in result.output
