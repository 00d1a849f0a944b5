"""``analyze_local`` (what ``consortia analyze SPEC --local NAME=FILE.csv`` calls) and a
node built from the [node] section of its consortia.toml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from consortia.config import load_settings
from consortia.exceptions import ConfigurationError, FederationError, InterchangeError
from consortia.federation.audit import verify_audit_log
from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.local import analyze_local
from consortia.federation.nodeconfig import NodeConfig, build_node, node_config_from_settings
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import generate_key, public_key_b64, save_key
from consortia.federation.tables import Table
from consortia.stats.survival import kaplan_meier
from nodetoml import write_node_toml

KM = {
    "kind": "kaplan_meier",
    "table": "trial",
    "time": "pfs_days",
    "event": "pfs_event",
    "group": "arm",
}


def test_a_local_analysis_over_csv_files_equals_the_pooled_computation(
    trial_files: dict[str, Path], pooled: Table, tmp_path: Path
) -> None:
    result = analyze_local(KM, trial_files, audit_dir=tmp_path / "audit").to_dict()
    assert result["complete"] is True
    assert result["exact"] is True
    assert [node["name"] for node in result["nodes"]] == list(trial_files)
    expected = kaplan_meier(
        pooled.numeric("pfs_days"), pooled.numeric("pfs_event"), pooled.column("arm"), time_bin=7
    )
    for group, curve in expected.groups.items():
        np.testing.assert_allclose(
            result["estimates"]["groups"][group]["survival"], curve.survival, rtol=1e-8
        )
    for name in trial_files:
        assert verify_audit_log(tmp_path / "audit" / f"{name}.jsonl") == 1


def test_a_local_table_is_named_after_its_file_stem(trial_files: dict[str, Path]) -> None:
    with pytest.raises(AnalysisRefused) as refused:
        analyze_local({**KM, "table": "cart_efficacy"}, trial_files)
    assert refused.value.rule == "invalid_request"
    assert "table 'cart_efficacy' does not exist" in str(refused.value)


def test_a_local_analysis_applies_the_given_policy(trial_files: dict[str, Path]) -> None:
    with pytest.raises(AnalysisRefused) as refused:
        analyze_local(KM, trial_files, NodePolicy(min_cell_count=100))
    assert refused.value.rule == "min_cell_count"


def test_the_synchronous_entry_point_refuses_to_run_inside_an_event_loop(
    trial_files: dict[str, Path],
) -> None:
    async def main() -> None:
        with pytest.raises(FederationError, match="analyze_local_async"):
            analyze_local(KM, trial_files)

    asyncio.run(main())


def node_config(folder: Path, trial_file: Path, *, mrn_column: bool) -> NodeConfig:
    """The node config read from a consortia.toml, its file tables alone (no database)."""
    save_key(generate_key(), folder / "keys" / "node.pem")
    columns = {"age": "integer", "arm": "text", **({"mrn": "text"} if mrn_column else {})}
    fields = {
        "name": "sgh",
        "url": "http://127.0.0.1:9",
        "key_file": "keys/node.pem",
        "peers": [{"name": "lead", "public_key": public_key_b64(generate_key())}],
        "tables": {"trial": {"file": str(trial_file), "columns": columns, "identifiers": ["mrn"]}},
        "policy": {"min_cell_count": 10, "identifier_columns": ["name"]},
    }
    config = node_config_from_settings(load_settings(write_node_toml(folder, fields)))
    assert config is not None
    return config.model_copy(update={"database_url": None})


def test_a_node_is_built_from_its_config_file(tmp_path: Path, trial_files: dict[str, Path]) -> None:
    config = node_config(tmp_path, trial_files["sgh"], mrn_column=True)
    with pytest.raises(InterchangeError, match=r"trial\.mrn: is declared as an identifier"):
        build_node(config)  # mrn is declared both as a column and identifier
    node = build_node(node_config(tmp_path / "again", trial_files["sgh"], mrn_column=False))
    assert node.name == "sgh"
    assert node.policy.min_cell_count == 10
    assert list(node.tables["trial"].columns) == ["age", "arm"]
    assert node.identifiers == {"mrn"}
    assert node.trust.get("lead") is not None


def test_a_bad_node_config_names_every_wrong_field(tmp_path: Path) -> None:
    path = tmp_path / "consortia.toml"
    path.write_text('node_name = "sgh"\n[node.policy]\nmin_cell_count = 0\ncolour = "red"\n')
    with pytest.raises(ConfigurationError) as error:
        node_config_from_settings(load_settings(path))
    assert f"{path}:3: node.policy.min_cell_count:" in str(error.value)
    assert f"{path}:4: node.policy.colour: Extra inputs are not permitted" in str(error.value)
