"""``backup`` under a steady stream of saves, and ``restore`` into an empty node: every
record and every chain head of the restored node is the source's at the snapshot's point;
a changed byte, a broken chain or a non-empty target is refused and changes nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.config import load_settings
from consortia.domain.templates import template_text
from consortia.federation.signing import TrustStore, generate_key, save_key
from consortia.services import data_entry, studies, subjects
from consortia.services.backup import BackupError, backup_node, restore_node
from consortia.services.data_entry import FormSave
from consortia.storage.audit import audit_event, verify_trail
from consortia.storage.backup import digest
from consortia.storage.db import is_sqlite, make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.replay import compare_state

STUDY = "CART-LBCL"
COORDINATOR = Principal(
    11,
    "coord@sg.example",
    "Coordinator",
    frozenset({Grant(STUDY, "SG01", Role.COORDINATOR), Grant(STUDY, "*", Role.STUDY_ADMIN)}),
)


@pytest.fixture(autouse=True)
def no_node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def _empty_database(database_url: str, tmp_path: Path, name: str) -> Iterator[str]:
    """Another empty database on the same server as ``database_url`` (or a new SQLite path)."""
    if is_sqlite(database_url):
        yield f"sqlite:///{tmp_path / name / 'consortia.db'}"
        return
    url = sa.engine.make_url(database_url)
    database = f"{url.database}_{name}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    try:
        yield url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def target_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    yield from _empty_database(database_url, tmp_path, "restored")


def _make_node(folder: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node folder as ``consortia init`` leaves it: consortia.toml, node key, database."""
    folder.mkdir(mode=0o700)
    lines = ['environment = "development"', 'node_name = "sg"', 'node_dir = "."']
    if is_sqlite(database_url):
        lines.append('database_url = "sqlite:///consortia.db"')
    else:  # a PostgreSQL URL stays in the environment, as docs/node.md says
        monkeypatch.setenv("CONSORTIA_DATABASE_URL", database_url)
    config = folder / "consortia.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o600)
    save_key(generate_key(), folder / "node_key.pem")
    return config


class Saver(threading.Thread):
    """Enrols a subject and saves a form, again and again, through the services."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.saves = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._progress = threading.Condition()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                subject = f"SG01-{self.saves + 1:03d}"
                subjects.enrol_subject(
                    self.engine,
                    COORDINATOR,
                    STUDY,
                    subjects.SubjectInput(subject, "SG01", screening_date=date(2025, 1, 6)),
                )
                data_entry.save_form(
                    self.engine,
                    COORDINATOR,
                    STUDY,
                    subject,
                    "end_of_study",
                    "status",
                    FormSave(version=0, values={"last_contact": "2025-07-01"}),
                )
                with self._progress:
                    self.saves += 1
                    self._progress.notify_all()
        except BaseException as error:  # reported by the test
            self.error = error
            with self._progress:
                self._progress.notify_all()

    def wait_for(self, saves: int) -> None:
        with self._progress:
            done = self._progress.wait_for(
                lambda: self.saves >= saves or self.error is not None, timeout=120
            )
        assert done, f"{self.saves} saves after two minutes"
        assert self.error is None, self.error


def _rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            name: sorted((tuple(row) for row in connection.execute(sa.select(table))), key=repr)
            for name, table in metadata.tables.items()
        }


def _events(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    chains: dict[str, list[tuple[Any, ...]]] = {}
    columns = [c for c in audit_event.c if c.name != "id"]
    with engine.connect() as connection:
        for row in connection.execute(
            sa.select(*columns).order_by(audit_event.c.chain, audit_event.c.seq)
        ):
            chains.setdefault(row.chain, []).append(tuple(row))
    return chains


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_under_saves_restores_the_snapshot_exactly(
    database_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _make_node(tmp_path / "source", database_url, monkeypatch)
    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    studies.load_definition(engine, COORDINATOR, template_text("cart-lbcl"))
    saver = Saver(engine)
    saver.start()
    try:
        saver.wait_for(15)
        before = saver.saves
        manifest = backup_node(settings, config, tmp_path / "backup", say=print)
        during = saver.saves - before
        saver.wait_for(saver.saves + 5)  # the source goes on past the snapshot
    finally:
        saver.stop.set()
        saver.join()
    assert saver.error is None, saver.error
    print(f"saves while the backup ran: {during}")

    backup = tmp_path / "backup"
    assert _mode(backup) == 0o700
    files = sorted(p for p in backup.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"manifest.json", "consortia.toml", "node_key.pem"}
    assert all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}
    heads = manifest.heads
    source_events = _events(engine)
    # the snapshot is a point of the live trail: each of its heads is an event of the source
    # and the source went on past it
    for chain, (length, last_hash) in heads.items():
        assert source_events[chain][length - 1][-1] == last_hash
    assert len(source_events[STUDY]) > heads[STUDY][0]

    if not is_sqlite(database_url):
        monkeypatch.setenv("CONSORTIA_DATABASE_URL", target_url)
    restore_node(backup, tmp_path / "restored", say=print)
    restored = make_engine(load_settings(tmp_path / "restored" / "consortia.toml").database_url)
    try:
        with restored.connect() as connection:
            assert verify_trail(connection).ok
        assert compare_state(restored) == []  # the tables are what the trail says
        restored_events = _events(restored)
        # every chain equals the source's first N events, N the backup's recorded length;
        # the restored node adds one event, its restore, to chain "node"
        assert set(restored_events) == set(heads) | {"node"}
        node_length = heads.get("node", (0, ""))[0]
        assert [e[4] for e in restored_events["node"][node_length:]] == ["restore"]
        restored_events["node"] = restored_events["node"][:node_length]
        for chain, (length, last_hash) in heads.items():
            got = restored_events[chain]
            assert got == source_events[chain][:length], chain
            assert got[-1][-1] == last_hash
        # every record: the subjects, forms and item values of the snapshot's point, which
        # are the source's records made by the study chain's first N events
        source_rows, restored_rows = _rows(engine), _rows(restored)
        assert set(source_rows) == set(restored_rows)
        differing = []
        for table, rows in restored_rows.items():
            if table in {"audit_event", "audit_head"}:
                continue
            missing = [row for row in rows if row not in source_rows[table]]
            if missing:
                differing.append((table, missing[:2]))
        assert not differing, differing
        subject_rows = restored_rows["subject"]
        assert len(subject_rows) == heads_subjects(restored_events[STUDY])
        assert 0 < len(subject_rows) < len(source_rows["subject"])
    finally:
        restored.dispose()
        engine.dispose()
    for name in ("consortia.toml", "node_key.pem"):
        assert (tmp_path / "restored" / name).read_bytes() == (
            tmp_path / "source" / name
        ).read_bytes()
        assert _mode(tmp_path / "restored" / name) == 0o600


def heads_subjects(events: list[tuple[Any, ...]]) -> int:
    """How many subjects the study chain's events enrolled."""
    return sum(1 for e in events if e[5] == "subject" and e[4] == "subject.create")


def _backed_up(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = _make_node(tmp_path / "source", database_url, monkeypatch)
    engine = make_engine(load_settings(config).database_url)
    try:
        upgrade(engine)
        studies.load_definition(engine, COORDINATOR, template_text("cart-lbcl"))
        for number in range(1, 4):
            subjects.enrol_subject(
                engine, COORDINATOR, STUDY, subjects.SubjectInput(f"SG01-{number:03d}", "SG01")
            )
        data_entry.save_form(
            engine,
            COORDINATOR,
            STUDY,
            "SG01-001",
            "end_of_study",
            "status",
            FormSave(version=0, values={"last_contact": "2025-07-01"}),
        )
    finally:
        engine.dispose()
    backup_node(load_settings(config), config, tmp_path / "backup", say=print)
    return tmp_path / "backup"


def _reseal(backup: Path, name: str) -> None:
    """Make the manifest agree with a changed file again (as someone covering a change would)."""
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    size, sha256 = digest(backup / name)
    manifest["files"][name].update(size=size, sha256=sha256)
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _restore_refused(
    backup: Path, target: Path, target_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    if not is_sqlite(database_url):
        monkeypatch.setenv("CONSORTIA_DATABASE_URL", target_url)
    existed = target.exists()
    before = sorted(target.rglob("*")) if existed else None
    with pytest.raises(BackupError) as refused:
        restore_node(backup, target, say=print)
    assert target.exists() == existed
    if existed:
        assert sorted(target.rglob("*")) == before
    if not is_sqlite(database_url):
        probe = make_engine(target_url)
        try:
            assert sa.inspect(probe).get_table_names() == [], "the database was left changed"
        finally:
            probe.dispose()
    return str(refused.value)


def test_a_changed_byte_is_refused_and_nothing_is_written(
    database_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _backed_up(database_url, tmp_path, monkeypatch)
    database = next(p for p in backup.iterdir() if p.name.startswith("database."))
    data = bytearray(database.read_bytes())
    data[len(data) // 2] ^= 0x01
    database.write_bytes(bytes(data))
    message = _restore_refused(backup, tmp_path / "new", target_url, database_url, monkeypatch)
    assert f"{database}: sha256 " in message
    assert "does not match the manifest's" in message

    data[len(data) // 2] ^= 0x01
    database.write_bytes(bytes(data))  # as it was
    key = backup / "node_key.pem"
    key.unlink()
    message = _restore_refused(backup, tmp_path / "new", target_url, database_url, monkeypatch)
    assert message.endswith(f"{key}: listed in the manifest but missing")


def test_heads_other_than_the_manifests_are_refused_and_the_database_emptied(
    database_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _backed_up(database_url, tmp_path, monkeypatch)
    manifest = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    length = manifest["chains"][STUDY]["length"]
    manifest["chains"][STUDY]["length"] = length + 1
    (backup / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    message = _restore_refused(backup, tmp_path / "new", target_url, database_url, monkeypatch)
    assert f"chain {STUDY!r}: the database ends at event {length} (" in message
    assert f"the manifest says event {length + 1} (" in message


def test_a_chain_that_does_not_verify_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'unused.db'}"
    backup = _backed_up(database_url, tmp_path, monkeypatch)
    copy = backup / "database.sqlite3"
    with sqlite3.connect(copy) as connection:  # the triggers refuse this on a node
        connection.execute("DROP TRIGGER audit_event_no_update")
        connection.execute(
            "UPDATE audit_event SET actor = 'someone@else.example' WHERE chain = ? AND seq = 2",
            (STUDY,),
        )
    connection.close()
    _reseal(backup, "database.sqlite3")
    message = _restore_refused(backup, tmp_path / "new", "", database_url, monkeypatch)
    assert f"audit trail BROKEN at chain {STUDY!r} event 2: its content does not match" in message


def test_tables_that_differ_from_their_trail_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'unused.db'}"
    backup = _backed_up(database_url, tmp_path, monkeypatch)
    copy = backup / "database.sqlite3"
    with sqlite3.connect(copy) as connection:  # a value changed with no audit event
        changed = connection.execute(
            "UPDATE item_value SET value_text = '2025-08-01' WHERE value_text = '2025-07-01'"
        ).rowcount
    connection.close()
    assert changed == 1
    _reseal(backup, "database.sqlite3")
    message = _restore_refused(backup, tmp_path / "new", "", database_url, monkeypatch)
    assert "the tables differ from a replay of the audit trail in 1 place, first " in message
    assert "table 2025-08-01, trail 2025-07-01" in message, message


def test_a_node_that_is_not_empty_is_refused(
    database_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _backed_up(database_url, tmp_path, monkeypatch)
    held = tmp_path / "held"
    held.mkdir()
    (held / "node_key.pem").write_text("another node's key\n", encoding="utf-8")
    message = _restore_refused(backup, held, target_url, database_url, monkeypatch)
    assert f"{held}: not an empty node, it holds {held / 'node_key.pem'}" in message

    # the database the restored configuration names already holds a node
    if is_sqlite(database_url):
        used_url = f"sqlite:///{tmp_path / 'used' / 'consortia.db'}"
        (tmp_path / "used").mkdir()
    else:
        used_url = target_url
        monkeypatch.setenv("CONSORTIA_DATABASE_URL", target_url)
    used = make_engine(used_url)
    try:
        upgrade(used)
        before = _rows(used)
        with pytest.raises(BackupError) as refused:
            restore_node(backup, tmp_path / "used", say=print)
        assert _rows(used) == before
    finally:
        used.dispose()
    assert "database is not empty" in str(refused.value) or "is not empty;" in str(refused.value)
    if is_sqlite(database_url):
        assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [
            "consortia.db",
            "consortia.db-writer.lock",
        ]
    else:  # the folder the restore made is gone again
        assert not (tmp_path / "used").exists()


def test_a_backup_carries_the_key_and_trust_files_its_node_section_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The federation config is in consortia.toml; the files it names travel with it, and a
    restore puts them where the section says."""
    database_url = f"sqlite:///{tmp_path / 'unused.db'}"
    config = _make_node(tmp_path / "source", database_url, monkeypatch)
    save_key(generate_key(), tmp_path / "source" / "keys" / "federation.pem")
    TrustStore().save(tmp_path / "source" / "trust.yaml")
    with config.open("a", encoding="utf-8") as handle:
        handle.write('[node]\nkey_file = "keys/federation.pem"\ntrust_file = "trust.yaml"\n')
    engine = make_engine(load_settings(config).database_url)
    upgrade(engine)
    engine.dispose()
    manifest = backup_node(load_settings(config), config, tmp_path / "backup", say=print)
    assert {"keys/federation.pem", "trust.yaml", "node_key.pem"} <= set(manifest.data["files"])
    restore_node(tmp_path / "backup", tmp_path / "restored", say=print)
    for name in ("keys/federation.pem", "trust.yaml"):
        restored = tmp_path / "restored" / name
        assert restored.read_bytes() == (tmp_path / "source" / name).read_bytes()
        assert _mode(restored) == 0o600

    outside = tmp_path / "elsewhere.pem"
    save_key(generate_key(), outside)
    config.write_text(
        config.read_text(encoding="utf-8").replace('"keys/federation.pem"', f'"{outside}"'),
        encoding="utf-8",
    )
    with pytest.raises(BackupError, match=f"{outside}: node.key_file is outside the node's"):
        backup_node(load_settings(config), config, tmp_path / "again", say=print)
    assert not (tmp_path / "again").exists()


def _node_actions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [
                row.action
                for row in connection.execute(
                    sa.select(audit_event.c.action)
                    .where(audit_event.c.chain == "node")
                    .order_by(audit_event.c.seq)
                )
            ]
    finally:
        engine.dispose()


def test_a_backup_whose_event_cannot_be_written_is_removed(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refuse_event: Any,
) -> None:
    _backed_up(database_url, tmp_path, monkeypatch)
    settings = load_settings(tmp_path / "source" / "consortia.toml")
    assert _node_actions(settings.database_url) == ["backup"]
    engine = make_engine(settings.database_url)
    try:
        with refuse_event(engine, "backup"), pytest.raises(sa.exc.DBAPIError):
            backup_node(
                settings, tmp_path / "source" / "consortia.toml", tmp_path / "again", say=print
            )
    finally:
        engine.dispose()
    assert not (tmp_path / "again").exists()
    assert _node_actions(settings.database_url) == ["backup"]
    backup_node(settings, tmp_path / "source" / "consortia.toml", tmp_path / "again", say=print)
    assert _node_actions(settings.database_url) == ["backup", "backup"]


def test_a_restore_whose_event_cannot_be_written_leaves_the_target_as_it_was(
    database_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refuse_event: Any,
) -> None:
    _backed_up(database_url, tmp_path, monkeypatch)
    config = tmp_path / "source" / "consortia.toml"
    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    try:  # the source refuses a restore event, and so does every copy of it
        with refuse_event(engine, "restore"):
            backup_node(settings, config, tmp_path / "refusing", say=print)
    finally:
        engine.dispose()
    if not is_sqlite(database_url):
        monkeypatch.setenv("CONSORTIA_DATABASE_URL", target_url)
    with pytest.raises(sa.exc.DBAPIError):
        restore_node(tmp_path / "refusing", tmp_path / "new", say=print)
    assert not (tmp_path / "new").exists(), sorted((tmp_path / "new").rglob("*"))
    if not is_sqlite(database_url):
        probe = make_engine(target_url)
        try:
            assert sa.inspect(probe).get_table_names() == [], "the restored database was kept"
        finally:
            probe.dispose()
