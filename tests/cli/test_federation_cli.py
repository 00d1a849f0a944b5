"""consortia analyze and consortia node … end to end through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from consortia.cli import app
from consortia.stats import fit_cox, kaplan_meier
from nodetoml import write_node_toml

runner = CliRunner()


@pytest.fixture
def node_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    files = {}
    for name in ("sgh", "ruijin", "nuh"):
        n = 60
        arm = rng.choice(["car_t", "soc"], n)
        t = np.ceil(rng.exponential(np.where(arm == "car_t", 300, 120)))
        c = rng.uniform(0, 700, n)
        age = rng.integers(20, 80, n)
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "trial.csv"
        lines = ["time,event,arm,age"]
        lines += [f"{int(min(t[i], c[i]))},{int(t[i] <= c[i])},{arm[i]},{age[i]}" for i in range(n)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[name] = path
    return files


def _pooled(files: dict[str, Path]) -> dict[str, np.ndarray]:
    rows = [
        line.split(",") for path in files.values() for line in path.read_text().splitlines()[1:]
    ]
    return {
        "time": np.array([float(r[0]) for r in rows]),
        "event": np.array([int(r[1]) for r in rows]),
        "arm": np.array([r[2] for r in rows]),
        "age": np.array([float(r[3]) for r in rows]),
    }


def _local_args(files: dict[str, Path]) -> list[str]:
    args = []
    for name, path in files.items():
        args += ["--local", f"{name}={path}"]
    return args


def test_analyze_local_prints_a_table_and_json_equal_to_pooling(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    spec = tmp_path / "cox.json"
    request = {
        "kind": "cox",
        "table": "trial",
        "time": "time",
        "event": "event",
        "covariates": ["age"],
        "ties": "efron",
        "time_bin": 7,
    }
    spec.write_text(json.dumps(request))
    # 7-day per-time sums of 60 rows hold a few subjects each, which the default policy
    # refuses (rows per released time); this test is about the arithmetic.
    policy = tmp_path / "policy.yaml"
    policy.write_text("policy: {min_cell_count: 1}\n")
    local = [*_local_args(node_files), "--policy", str(policy)]
    text = runner.invoke(app, ["analyze", str(spec), *local])
    assert text.exit_code == 0, text.output
    assert "cox: exact (equals pooling)" in text.output
    assert "sgh (n=60), ruijin (n=60), nuh (n=60)" in text.output
    assert "HR 95% lower" in text.output  # the Cox table: a row per covariate
    result = runner.invoke(app, ["analyze", str(spec), "--json", *local])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    pooled = _pooled(node_files)
    binned = np.floor(pooled["time"] / 7) * 7
    reference = fit_cox(binned, pooled["event"], {"age": pooled["age"]}, ties="efron")
    assert data["estimates"]["coef"]["age"] == pytest.approx(reference.coef[0], rel=1e-8)
    assert data["estimates"]["se"]["age"] == pytest.approx(reference.se[0], rel=1e-8)
    assert data["exact"] is True
    assert [node["n"] for node in data["nodes"]] == [60, 60, 60]


def test_analyze_local_kaplan_meier_medians_match_the_pooled_curve(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    spec = tmp_path / "km.json"
    spec.write_text(
        json.dumps(
            {
                "kind": "kaplan_meier",
                "table": "trial",
                "time": "time",
                "event": "event",
                "group": "arm",
            }
        )
    )
    result = runner.invoke(app, ["analyze", str(spec), "--json", *_local_args(node_files)])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)["estimates"]["groups"]
    pooled = _pooled(node_files)
    reference = kaplan_meier(pooled["time"], pooled["event"], pooled["arm"], time_bin=7)
    for curve in reference.curves:
        assert groups[str(curve.group)]["median"] == curve.median


def test_a_policy_refusal_names_the_rule_and_exits_1(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    spec = tmp_path / "cox.json"
    spec.write_text(
        json.dumps(
            {
                "kind": "cox",
                "table": "trial",
                "time": "time",
                "event": "event",
                "covariates": ["age"],
            }
        )
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"policy": {"analyses": ["describe"]}}))
    result = runner.invoke(
        app, ["analyze", str(spec), "--policy", str(policy), *_local_args(node_files)]
    )
    assert result.exit_code == 1
    assert "analysis_not_allowed" in result.output


def test_a_spec_that_is_not_json_reports_its_line_and_column(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text('{"kind": "cox",\n  "table": }\n')
    result = runner.invoke(app, ["analyze", str(spec), *_local_args(node_files)])
    assert result.exit_code == 1
    assert f"{spec}:2:12: not valid JSON" in result.output


def test_node_keygen_identity_and_trust(tmp_path: Path) -> None:
    key = tmp_path / "node.pem"
    assert runner.invoke(app, ["node", "keygen", str(key)]).exit_code == 0
    again = runner.invoke(app, ["node", "keygen", str(key)])
    assert again.exit_code == 1
    config = write_node_toml(
        tmp_path,
        {
            "name": "sgh",
            "url": "https://sgh.example",
            "key_file": "node.pem",
            "trust_file": "trust.yaml",
        },
    )
    identity = runner.invoke(app, ["node", "identity", "--config", str(config)])
    assert identity.exit_code == 0, identity.output
    name, url, public_key = identity.output.split()
    assert (name, url) == ("sgh", "https://sgh.example")
    trusted = runner.invoke(
        app, ["node", "trust", "lead", "https://lead.example", public_key, "--config", str(config)]
    )
    assert trusted.exit_code == 0, trusted.output
    peers = yaml.safe_load((tmp_path / "trust.yaml").read_text())["peers"]
    assert peers[0]["name"] == "lead"
    bad = runner.invoke(app, ["node", "trust", "eve", "", "not-a-key", "--config", str(config)])
    assert bad.exit_code == 1


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_analyze_draws_the_federated_kaplan_meier_curves(
    tmp_path: Path, node_files: dict[str, Path], suffix: str
) -> None:
    spec = tmp_path / "km.json"
    spec.write_text(
        json.dumps(
            {
                "kind": "kaplan_meier",
                "table": "trial",
                "time": "time",
                "event": "event",
                "group": "arm",
            }
        )
    )
    image = tmp_path / f"km.{suffix}"
    result = runner.invoke(
        app, ["analyze", str(spec), "--plot", str(image), *_local_args(node_files)]
    )
    assert result.exit_code == 0, result.output
    data = image.read_bytes()
    if suffix == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert b"<svg" in data[:2000]
        assert b"car_t" in data


def test_local_files_are_served_as_the_table_the_request_names_whatever_their_names(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    renamed = {}
    for letter, (name, path) in zip("abc", node_files.items(), strict=True):
        renamed[name] = tmp_path / f"{letter}.csv"
        renamed[name].write_bytes(path.read_bytes())
    spec = tmp_path / "km.json"
    spec.write_text(json.dumps({"kind": "kaplan_meier", "table": "trial", "time": "time",
                                "event": "event", "group": "arm"}))  # fmt: skip
    result = runner.invoke(app, ["analyze", str(spec), "--json", *_local_args(renamed)])
    assert result.exit_code == 0, result.output
    assert [node["n"] for node in json.loads(result.output)["nodes"]] == [60, 60, 60]
    stated = runner.invoke(
        app, ["analyze", str(spec), "--json", "--table", "trial", *_local_args(renamed)]
    )
    assert stated.exit_code == 0, stated.output
    assert json.loads(stated.output)["estimates"] == json.loads(result.output)["estimates"]


def test_a_stated_table_other_than_the_requests_is_refused_naming_both(
    tmp_path: Path, node_files: dict[str, Path]
) -> None:
    spec = tmp_path / "km.json"
    spec.write_text(json.dumps({"kind": "kaplan_meier", "table": "trial", "time": "time",
                                "event": "event"}))  # fmt: skip
    result = runner.invoke(app, ["analyze", str(spec), "--table", "cart", *_local_args(node_files)])
    message = " ".join(result.output.replace("│", " ").split())  # the error box wraps lines
    assert result.exit_code == 2
    assert "'cart', but" in message  # then the spec's path, which the box may fold
    assert "reads table 'trial'; give --table trial" in message
    assert "Traceback" not in result.output
    remote = runner.invoke(app, ["analyze", str(spec), "--table", "trial", "--node", "a=http://a"])
    assert remote.exit_code == 2
    assert "--table names --local files" in " ".join(remote.output.replace("│", " ").split())
