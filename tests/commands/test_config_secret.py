"""``consortia serve`` and the other node commands refuse a secret others may read."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from consortia.cli import app


def test_serve_refuses_a_production_config_whose_secret_others_may_read(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text(
        f'environment = "production"\nsecret_key = "{"k" * 40}"\n'
        f'database_url = "sqlite:///{tmp_path / "node.db"}"\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "readable by others" in result.output
    assert f"chmod 600 {config}" in result.output
    assert not (tmp_path / "node.db").exists()  # refused before anything was opened
