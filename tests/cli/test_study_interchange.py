"""The interchange commands end to end: files in, files out, nothing written on errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from consortia.cli import app
from consortia.domain.study_yaml import load_study

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cart-tour.yaml"
runner = CliRunner()


def test_odm_export_then_import_gives_a_study_that_validates(tmp_path: Path) -> None:
    xml = tmp_path / "study.xml"
    result = runner.invoke(app, ["study", "export-odm", str(EXAMPLE), "--out", str(xml)])
    assert result.exit_code == 0, result.output
    assert xml.read_bytes().startswith(b"<?xml")
    back = tmp_path / "back.yaml"
    result = runner.invoke(app, ["study", "import-odm", str(xml), "--out", str(back)])
    assert result.exit_code == 0, result.output
    again = load_study(back)
    original = load_study(EXAMPLE)
    assert list(again.forms) == list(original.forms)
    assert [name for *_, name, _ in again.iter_items()] == [
        name for *_, name, _ in original.iter_items()
    ]
    validate = runner.invoke(app, ["study", "validate", str(back)])
    assert validate.exit_code == 0, validate.output


def test_a_billion_laughs_odm_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    ]
    bomb.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE ODM [\n'
        + "\n".join(entities)
        + '\n]>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">&lol9;</ODM>\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["study", "import-odm", str(bomb), "--out", str(out)])
    assert result.exit_code == 1
    assert not out.exists()
    assert "Traceback" not in result.output


def test_export_of_an_invalid_study_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("ratio: 1}", "ratio: 0}", 1))
    out = tmp_path / "out.xml"
    result = runner.invoke(app, ["study", "export-odm", str(bad), "--out", str(out)])
    assert result.exit_code == 1
    assert "arms.car_t.ratio" in result.output
    assert not out.exists()


def test_redcap_export_then_import_keeps_forms_fields_and_logic(tmp_path: Path) -> None:
    dictionary = tmp_path / "dict.csv"
    result = runner.invoke(app, ["study", "export-redcap", str(EXAMPLE), "--out", str(dictionary)])
    assert result.exit_code == 0, result.output
    # each warning names the study file and the line of what it is about
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings
    assert "<input>" not in result.output
    source = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for warning in warnings:
        assert warning.startswith(f"warning: {EXAMPLE}:"), warning
        line = int(warning.removeprefix(f"warning: {EXAMPLE}:").split(":")[0])
        key = warning.split(": ")[2].split(".")[-1]  # the last key of the warning's path
        assert key == "labels" or source[line - 1].lstrip().startswith(f"{key}:"), warning
    assert dictionary.read_bytes().startswith(b"\xef\xbb\xbf")
    back = tmp_path / "back.yaml"
    result = runner.invoke(
        app, ["study", "import-redcap", str(dictionary), "--out", str(back), "--study-id", "X1"]
    )
    assert result.exit_code == 0, result.output
    again = load_study(back)
    original = load_study(EXAMPLE)
    assert again.study.id == "X1"
    assert again.item("pregnant").show_if == original.item("pregnant").show_if
    assert set(again.derived) == set(original.derived)
    validate = runner.invoke(app, ["study", "validate", str(back)])
    assert validate.exit_code == 0, validate.output


def test_a_semicolon_dictionary_is_refused_with_its_line(tmp_path: Path) -> None:
    dictionary = tmp_path / "semi.csv"
    dictionary.write_text(
        "Variable / Field Name;Form Name;Section Header;Field Type;Field Label\n"
        "record_id;demo;;text;Record ID\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["study", "import-redcap", str(dictionary), "--out", str(out)])
    assert result.exit_code == 1
    assert f"{dictionary}:1" in result.output
    assert not out.exists()


def test_templates_are_listed_written_and_valid(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["study", "templates"])
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines() if not line.startswith(" ")]
    assert names == ["cart-lbcl", "ortho-3dp", "glucose-iso15197", "ai-diagnostic"]
    for name in names:
        out = tmp_path / f"{name}.yaml"
        written = runner.invoke(app, ["study", "new", "--template", name, "--out", str(out)])
        assert written.exit_code == 0, written.output
        assert runner.invoke(app, ["study", "validate", str(out)]).exit_code == 0
        for command, suffix in (("export-odm", "xml"), ("export-redcap", "csv")):
            target = tmp_path / f"{name}.{suffix}"
            exported = runner.invoke(app, ["study", command, str(out), "--out", str(target)])
            assert exported.exit_code == 0, exported.output
    again = runner.invoke(
        app, ["study", "new", "--template", "cart-lbcl", "--out", str(tmp_path / "cart-lbcl.yaml")]
    )
    assert again.exit_code == 1
    unknown = runner.invoke(
        app, ["study", "new", "--template", "nope", "--out", str(tmp_path / "n.yaml")]
    )
    assert unknown.exit_code == 1
    assert "known templates" in unknown.output


def test_synthesize_writes_reproducible_records_and_an_analysis_table(tmp_path: Path) -> None:
    outputs = []
    for attempt in range(2):
        records = tmp_path / f"records{attempt}.csv"
        table = tmp_path / f"table{attempt}.csv"
        result = runner.invoke(
            app,
            [
                "study",
                "synthesize",
                "glucose-iso15197",
                "--subjects",
                "20",
                "--site",
                "SG01",
                "--seed",
                "3",
                "--out",
                str(records),
                "--analysis-out",
                str(table),
            ],
        )
        assert result.exit_code == 0, result.output
        outputs.append((records.read_bytes(), table.read_bytes()))
    assert outputs[0] == outputs[1]
    bad = runner.invoke(
        app,
        [
            "study",
            "synthesize",
            "cart-lbcl",
            "--subjects",
            "5",
            "--site",
            "XX99",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "x.csv"),
        ],
    )
    assert bad.exit_code == 1
    assert not (tmp_path / "x.csv").exists()
