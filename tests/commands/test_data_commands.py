"""``consortia study load`` and ``consortia data import|export`` from the shell."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", f"sqlite:///{tmp_path / 'node.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cart.yaml").write_text(template_text("cart-lbcl"), encoding="utf-8")
    return tmp_path


def test_a_database_that_is_not_set_up_gets_a_hint_not_a_traceback(node: Path) -> None:
    result = runner.invoke(app, ["study", "load", "cart.yaml"])
    assert result.exit_code == 1
    assert "consortia db upgrade" in result.output
    assert "Traceback" not in result.output


def test_load_import_and_export_from_the_shell(node: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    loaded = runner.invoke(app, ["study", "load", "cart.yaml"])
    assert loaded.exit_code == 0, loaded.output
    assert "CART-LBCL loaded version 1" in loaded.output
    again = runner.invoke(app, ["study", "load", "cart.yaml"])
    assert "unchanged: version 1" in again.output
    records = synthesize("cart-lbcl", subjects=5, site="SG01", seed=4).write_csv(
        node / "records.csv"
    )
    imported = runner.invoke(app, ["data", "import", "CART-LBCL", str(records)])
    assert imported.exit_code == 0, imported.output
    assert "(5 new subjects" in imported.output
    exported = runner.invoke(
        app, ["data", "export", "CART-LBCL", "--format", "csv", "--out", str(node / "out")]
    )
    assert exported.exit_code == 0, exported.output
    with (node / "out" / "demographics.csv").open(encoding="utf-8") as stream:
        header = next(csv.reader(stream))
    assert "age" in header
    assert "hospital_number" not in header
    refused = runner.invoke(
        app,
        ["data", "export", "CART-LBCL", "--out", str(node / "x"), "--include-identifiers"],
    )
    assert refused.exit_code == 1
    assert "reason" in refused.output


def test_a_bad_file_prints_each_problem_with_its_line_and_imports_nothing(node: Path) -> None:
    runner.invoke(app, ["db", "upgrade"])
    runner.invoke(app, ["study", "load", "cart.yaml"])
    bad = node / "bad.csv"
    bad.write_text(
        "subject_id,site,redcap_event_name,ecog,histology\n"
        "SG01-1,SG01,screening,9,dlbcl_nos\n"
        "SG01-2,SG01,screening,1,lymphoma\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["data", "import", "CART-LBCL", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output
    assert "forms.eligibility.ecog: 9 is outside 0–5" in result.output
    assert f"{bad}:3:" in result.output
    assert "nothing was imported" in result.output
    exported = runner.invoke(
        app, ["data", "export", "CART-LBCL", "--format", "csv-long", "--out", "v.csv"]
    )
    assert "values: 0 rows" in exported.output
