"""The repository keeps a node's files out of git, and its documents agree with each other."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import sqlalchemy as sa

from consortia.domain.study_yaml import load_study
from consortia.domain.templates import load_template
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent


def _ignored_names() -> list[str]:
    """The .gitignore patterns that match a file by its name wherever it is."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith(("#", "!")) and "/" not in line]


def test_every_file_a_node_writes_beside_its_database_is_ignored(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'consortia.db'}")
    try:
        upgrade(engine)
        with engine.begin() as connection:  # a write takes the writer lock
            connection.execute(sa.text("CREATE TABLE scratch (x INTEGER)"))
        written = sorted(path.name for path in tmp_path.iterdir())
    finally:
        engine.dispose()
    assert "consortia.db-writer.lock" in written
    patterns = _ignored_names()
    unignored = [name for name in written if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert unignored == [], f"add them to .gitignore: {unignored}"


def test_the_docs_agree_on_where_browsers_keep_the_secure_session_cookie() -> None:
    # Chromium keeps it on http://127.0.0.1 (tests/web/test_browser_pages.py signs in so)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    node = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    for text in (readme, node):
        assert "`http://127.0.0.1`" in text
    assert "only over HTTPS" not in node


def test_the_example_study_is_not_mistaken_for_the_cart_template() -> None:
    """One CAR-T study is the product's template (CART-LBCL); the example in examples/ is
    a short tour of the language, named and titled so, and every reference says so."""
    examples = sorted(path.name for path in (ROOT / "examples").glob("*.yaml"))
    assert examples == ["cart-tour.yaml"]
    tour = load_study(ROOT / "examples" / "cart-tour.yaml")
    template = load_template("cart-lbcl")
    assert tour.study.id == "CART-TOUR"
    assert tour.study.id != template.study.id
    assert tour.study.title.en.startswith("A tour of the study language")
    assert tour.study.title.en != template.study.title.en
    tracked = [
        path
        for pattern in ("*.md", "docs/*.md", "src/**/*.py", "tests/**/*.py", "bench/**/*.py")
        for path in ROOT.glob(pattern)
        if path != Path(__file__)  # this test names the old ones to look for them
    ]
    stale = [
        str(path.relative_to(ROOT))
        for path in tracked
        if "examples/cart-lbcl" in (text := path.read_text(encoding="utf-8"))
        or '"examples" / "cart-lbcl' in text
        or "CART-LBCL-01" in text
    ]
    assert stale == []


def test_no_tracked_file_holds_a_merge_conflict_marker() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    markers = re.compile(rb"^(<<<<<<< |>>>>>>> |=======$)", re.MULTILINE)
    marked = [
        name.decode()
        for name in listed
        if name
        and (ROOT / name.decode()).is_file()
        and markers.search((ROOT / name.decode()).read_bytes())
    ]
    assert marked == []
