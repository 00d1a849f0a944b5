"""``consortia config show`` and ``consortia config check``: one configuration, its sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.federation.signing import generate_key, save_key

SECRET = "s3cret-" + "k" * 40


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "consortia.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def _no_consortia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def test_show_gives_each_value_its_source_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_key(generate_key(), tmp_path / "node_key.pem")
    config = _write(
        tmp_path,
        f'environment = "production"\nnode_name = "sgh"\nsecret_key = "{SECRET}"\n'
        'database_url = "postgresql://alice:pg-password@db.example/consortia"\n'
        "[node]\n"
        'key_file = "node_key.pem"\n'
        "[node.policy]\nmin_cell_count = 11\n",
    )
    monkeypatch.setenv("CONSORTIA_SESSION_MINUTES", "45")
    result = CliRunner().invoke(app, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = {line.split(" = ")[0]: line for line in result.output.splitlines() if " = " in line}
    assert lines["node_name"].endswith(f"# {config}:2")
    assert lines["secret_key"].endswith(f"# {config}:3")
    assert lines["session_minutes"].startswith("session_minutes = 45")
    assert lines["session_minutes"].endswith("# CONSORTIA_SESSION_MINUTES")
    assert lines["login_max_failures"].endswith("# default")
    assert lines["node.key_file"].endswith(f"# {config}:6")
    assert '"min_cell_count": 11' in lines["node.policy"]
    assert lines["node.policy"].endswith(f"# {config}:7")
    assert lines["node.lead_url"].endswith("# default")
    assert SECRET not in result.output
    assert "pg-password" not in result.output
    assert "alice:***@db.example" in result.output


def test_check_reports_every_problem_with_file_and_line_and_exits_1(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        'environment = "production"\n'
        'secret_key = "short"\n'
        "[node]\n"
        'key_file = "absent.pem"\n'
        'name = "elsewhere"\n'
        "[node.policy]\n"
        'min_cell_count = "many"\n'
        "[node.tables.cart]\n"
        'file = "data/missing.csv"\n',
    )
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    output = result.output
    assert f"{config}:2: secret_key: " in output
    assert f"{config}:5: node.name: this is the setting node_name" in output
    assert f"{config}:7: node.policy.min_cell_count: " in output
    assert "3 problems found" in output
    # with the section valid, what it names is checked too
    config = _write(
        tmp_path,
        f'environment = "production"\nsecret_key = "{SECRET}"\n'
        '[node]\nkey_file = "absent.pem"\n[node.tables.cart]\nfile = "data/missing.csv"\n',
    )
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:4: node.key_file: " in result.output
    assert f"{config}:5: node.tables.cart: " in result.output


def test_check_names_the_line_of_a_bad_setting_and_the_variable_that_overrides_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, 'node_name = "sgh"\n\nsession_minutes = 0\nlog_level = "INFO"\n')
    monkeypatch.setenv("CONSORTIA_SERVER_THREADS", "0")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:3: session_minutes: " in result.output
    assert "CONSORTIA_SERVER_THREADS: server_threads: " in result.output


def test_check_accepts_a_good_configuration(tmp_path: Path) -> None:
    save_key(generate_key(), tmp_path / "node_key.pem")
    config = _write(
        tmp_path,
        f'environment = "production"\nsecret_key = "{SECRET}"\n[node]\nkey_file = "node_key.pem"\n',
    )
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.output


def test_check_reports_toml_that_does_not_parse_with_its_line(tmp_path: Path) -> None:
    config = _write(tmp_path, 'node_name = "sgh"\nsession_minutes = \n')
    result = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}:2" in result.output
    assert "Traceback" not in result.output


def test_a_node_naming_a_yaml_config_is_refused_until_import_node_yaml_moves_it_into_node(
    tmp_path: Path,
) -> None:
    from consortia.config import load_settings
    from consortia.federation.node_yaml import read_node_yaml
    from consortia.federation.nodeconfig import node_config_from_settings
    from consortia.federation.signing import public_key_b64

    federation = tmp_path / "federation"
    save_key(generate_key(), federation / "keys" / "node.pem")
    (federation / "data").mkdir()
    (federation / "data" / "trial.csv").write_text("mrn,days\n1,3\n", encoding="utf-8")
    lead = public_key_b64(generate_key())
    node_yaml = federation / "node.yaml"
    node_yaml.write_text(
        "name: sgh\nurl: https://sgh.example\nkey_file: keys/node.pem\n"
        "lead_url: https://lead.example\nwitness_interval_seconds: 0\n"
        f"peers:\n  - {{name: lead, url: 'https://lead.example', public_key: '{lead}'}}\n"
        "tables:\n  trial: {file: data/trial.csv, identifiers: [mrn], columns: {days: integer}}\n"
        "  cart: {edc: CART-LBCL, sites: [SGH]}\n"
        "policy: {min_cell_count: 8, analyses: [describe], tables: {trial: {columns: [days]}}}\n",
        encoding="utf-8",
    )
    config = _write(
        tmp_path, f'# my node\nenvironment = "development"\nfederation_config = "{node_yaml}"\n'
    )
    refused = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert refused.exit_code == 1
    fix = f"run `consortia config import-node-yaml {node_yaml} --config {config}`"
    assert f"error: {config}:3: federation_config: " in refused.output
    assert fix in refused.output
    served = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert served.exit_code == 1
    assert fix in served.output
    assert "Traceback" not in refused.output + served.output
    result = CliRunner().invoke(
        app, ["config", "import-node-yaml", str(node_yaml), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    settings = load_settings(config)
    assert "# federation_config: moved into [node] below" in config.read_text()
    assert settings.node_name == "sgh"
    assert settings.node_url == "https://sgh.example"
    imported = node_config_from_settings(settings)
    original = read_node_yaml(node_yaml)
    assert imported is not None
    fields = ["name", "url", "lead_url", "peers", "policy", "witness_interval_seconds"]
    for field in fields:
        assert getattr(imported, field) == getattr(original, field), field
    assert imported.resolve(imported.key_file) == original.resolve(original.key_file)
    assert imported.tables["cart"] == original.tables["cart"]
    trial = imported.tables["trial"]
    assert imported.resolve(trial.file) == federation / "data" / "trial.csv"  # type: ignore[union-attr]
    checked = CliRunner().invoke(app, ["config", "check", "--config", str(config)])
    assert checked.exit_code == 0, checked.output


def test_import_node_yaml_refuses_a_yaml_naming_another_node_and_changes_nothing(
    tmp_path: Path,
) -> None:
    save_key(generate_key(), tmp_path / "node.pem")
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text("name: nuh\nkey_file: node.pem\n", encoding="utf-8")
    config = _write(tmp_path, 'node_name = "sgh"\n')
    before = config.read_bytes()
    result = CliRunner().invoke(
        app, ["config", "import-node-yaml", str(node_yaml), "--config", str(config)]
    )
    assert result.exit_code == 1
    assert f"{config}:1: node_name: 'sgh', but {node_yaml} names the node 'nuh'" in result.output
    assert config.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["consortia.toml", "node.pem", "node.yaml"]


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        (
            "name: sgh\npeers: &p [{name: a}]\nmore: *p\n",
            2,
            "aliases (*name) are not allowed in a node",
        ),
        ("name: sgh\nkey_file: !!python/object:os.system node.pem\n", 2, "YAML tag"),
        ("name: sgh\nname: nuh\n", 2, "duplicate key 'name'"),
        ("name: sgh\npolicy:\n  min_cell_count: -3\n", 3, "policy.min_cell_count"),
        ("name: sgh\n" + "x: " + "[" * 200 + "]" * 200 + "\n", 2, "nesting"),
    ],
)
def test_import_node_yaml_refuses_a_hostile_or_bad_yaml_with_its_line_and_changes_nothing(
    tmp_path: Path, text: str, line: int, complaint: str
) -> None:
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text(text, encoding="utf-8")
    config = _write(tmp_path, 'node_name = "sgh"\n')
    before = config.read_bytes()
    result = CliRunner().invoke(
        app, ["config", "import-node-yaml", str(node_yaml), "--config", str(config)]
    )
    assert result.exit_code == 1
    assert f"{node_yaml}:{line}:" in result.output
    assert complaint in result.output
    assert "Traceback" not in result.output
    assert config.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["consortia.toml", "node.yaml"]
