"""``consortia study performance STUDY [--json]``: the node's own view of a study's site
performance from the shell, on the small study of tests/site_performance_study.py (every
number worked out by hand there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.services.site_performance import metrics_json
from consortia.storage.db import make_engine
from site_performance_study import OVERALL, SG01, SH01, STUDY, build_study, install_clock

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    engine = make_engine(url)
    try:
        build_study(engine, install_clock(monkeypatch))
    finally:
        engine.dispose()
    return tmp_path


def test_json_holds_every_site_and_the_pooled_metrics(node: Path) -> None:
    result = runner.invoke(app, ["study", "performance", STUDY, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["sites"] == [metrics_json(SG01), metrics_json(SH01)]
    assert body["overall"] == metrics_json(OVERALL)


def test_the_table_has_a_line_per_metric_and_a_column_per_site(node: Path) -> None:
    result = runner.invoke(app, ["study", "performance", STUDY])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line.split() for line in result.output.splitlines()}
    assert lines["metric"][1:] == ["SG01", "SH01", "all", "shown"]
    assert "3/4 (75.0%)" in " ".join(lines["enrolled/target"])
    assert " ".join(lines["screen failures"]).endswith("1/4 (25.0%) 1/2 (50.0%) 2/6 (33.3%)")
    assert lines["days to entry"][-6:] == ["3", "(n=5)", "1.5", "(n=2)", "3", "(n=7)"]
    assert lines["queries/100 values"][-3:] == ["50.0", "33.3", "45.5"]
    assert "not recorded" in " ".join(lines["deviations"])


def test_an_unknown_study_is_one_line_and_exit_1(node: Path) -> None:
    result = runner.invoke(app, ["study", "performance", "NOPE"])
    assert result.exit_code == 1
    assert "NOPE" in result.output
    assert "Traceback" not in result.output
