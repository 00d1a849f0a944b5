"""``consortia data export`` that cannot finish: one precise line, exit 1, no file left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consortia.cli import app
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.storage.db import make_engine
from consortia.storage.tables import event_instance, form_instance, item_value, subject

runner = CliRunner()
SOURCE = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node on SQLite with cart-lbcl and three synthetic subjects imported."""
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", f"sqlite:///{tmp_path / 'node.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cart.yaml").write_text(template_text("cart-lbcl"), encoding="utf-8")
    records = synthesize("cart-lbcl", subjects=3, site="SG01", seed=4).write_csv(
        tmp_path / "records.csv"
    )
    for command in (
        ["db", "upgrade"],
        ["study", "load", "cart.yaml"],
        ["data", "import", "CART-LBCL", str(records)],
    ):
        done = runner.invoke(app, command)
        assert done.exit_code == 0, done.output
    return tmp_path


def _store_directly(node: Path, text: str) -> str:
    """Put ``text`` into the first ae_term, as an older version could have; its path."""
    engine = make_engine(os.environ["CONSORTIA_DATABASE_URL"])
    try:
        with engine.begin() as connection:
            row = connection.execute(
                sa.select(item_value.c.id, item_value.c.group_instance, subject.c.subject_id)
                .join(form_instance, form_instance.c.id == item_value.c.form_pk)
                .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
                .join(subject, subject.c.id == form_instance.c.subject_pk)
                .where(item_value.c.item == "ae_term", event_instance.c.instance == 1)
                .order_by(subject.c.subject_id, item_value.c.id)
                .limit(1)
            ).one()
            connection.execute(
                item_value.update().where(item_value.c.id == row.id).values(value_text=text)
            )
    finally:
        engine.dispose()
    return f"{row.subject_id}/ae_log/ae/events[{row.group_instance}].ae_term"


@pytest.mark.parametrize("text", ["Neutro\x00penia", "Neutro\x1bpenia"])
def test_an_odm_export_of_a_value_xml_cannot_hold_names_it_exits_1_and_leaves_no_file(
    node: Path, text: str
) -> None:
    path = _store_directly(node, text)
    out = node / "out"
    out.mkdir()
    before = sorted(node.iterdir())
    # as a person runs it: a process of its own, whose stderr is all they see
    done = subprocess.run(
        [sys.executable, "-m", "consortia", "data", "export", "CART-LBCL",
         "--format", "odm", "--out", str(out / "data.xml")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},  # this tree's code, from any folder
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    character = f"U+{ord(text[6]):04X}"
    assert done.stderr.splitlines()[0] == (
        f"error: {path}: character {character} is not allowed (XML 1.0 cannot hold it); tabs "
        "and newlines are allowed; it was stored before such characters were refused: "
        "correct it, then export again"
    )
    assert list(out.iterdir()) == []  # neither data.xml nor data.xml.partial
    assert sorted(node.iterdir()) == before


def test_a_folder_export_that_fails_half_way_leaves_none_of_its_files(node: Path) -> None:
    # XPT holds at most 200 bytes of text: a longer value stored by an older version fails
    # the ae table, written after the tables of the forms before it
    _store_directly(node, "x" * 250)
    result = runner.invoke(app, ["data", "export", "CART-LBCL", "--format", "xpt", "--out", "t"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output
    assert list((node / "t").iterdir()) == []  # no table of it, whole or .partial


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--format", "odm", "--out", "missing/data.xml"],
            "error: missing/data.xml: the folder missing does not exist; create it first, "
            "or write somewhere that exists",
        ),
        (
            ["--format", "csv-long", "--out", "."],
            "error: . is a folder; give the name of a file (inside it, or elsewhere)",
        ),
        (["--format", "csv", "--out", "cart.yaml"], "error: cart.yaml is a file; give a folder"),
    ],
    ids=["missing folder", "a folder for a file", "a file for a folder"],
)
def test_an_export_path_that_will_not_do_says_what_is_wrong_and_writes_nothing(
    node: Path, arguments: list[str], message: str
) -> None:
    before = sorted(node.rglob("*"))
    result = runner.invoke(app, ["data", "export", "CART-LBCL", *arguments])
    assert result.exit_code == 1
    assert result.output.splitlines() == [message]
    assert sorted(node.rglob("*")) == before
