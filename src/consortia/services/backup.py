"""Back up a live node, and restore a backup into an empty node.

A backup folder (mode 0700, every file 0600) holds:

* ``database.sqlite3`` (SQLite's online backup API) or ``database.pgdump``
  (``pg_dump --format=custom``): one consistent snapshot, taken while the node runs;
* the node's configuration file, its signing key (``node_key.pem``, or the ``[node]``
  section's ``key_file``) and trust file, when they exist: the folder holds the node's
  secrets;
* ``manifest.json``: every file's size and sha256, the database kind, the schema
  revision, and each audit chain's head (length, last hash) read inside the snapshot.

Restore checks the manifest (every file's size and sha256, no file missing or added),
that the target node holds nothing, that the database's audit trail verifies and that
its chain heads are exactly the manifest's, before it answers; when any check fails it
removes what it wrote and the target is as it was.

Each is audited through the unit of work, by the node's operator: a backup's ``backup``
event is committed last, and a backup whose event cannot be written is removed; a
restore's ``restore`` event is written into the restored database before the restore
counts (on SQLite before the file takes its place), and a restore whose event cannot be
written leaves the target as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from consortia import __version__
from consortia.config import CONFIG_FILE_NAME, Settings, load_settings
from consortia.services.common import cli_operator
from consortia.services.unit_of_work import writing
from consortia.storage.backup import (
    BackupError,
    DatabaseState,
    database_is_empty,
    digest,
    dump_postgres,
    empty_postgres,
    restore_postgres,
    restore_sqlite,
    snapshot_sqlite,
    sqlite_file,
)
from consortia.storage.db import is_sqlite, make_engine

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BackupError",
    "Manifest",
    "backup_node",
    "read_manifest",
    "restore_node",
]

FORMAT: Final = "consortia-backup/1"
MANIFEST: Final = "manifest.json"
KEY_FILE: Final = "node_key.pem"
_DATABASE_FILES: Final = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}

Say = Callable[[str], object]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A backup's manifest as written to ``manifest.json``."""

    data: dict[str, Any]
    sha256: str

    @property
    def heads(self) -> dict[str, tuple[int, str]]:
        return {
            chain: (int(head["length"]), str(head["hash"]))
            for chain, head in self.data["chains"].items()
        }


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _copy_private(source: Path, target: Path) -> None:
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out, source.open("rb") as handle:
        shutil.copyfileobj(handle, out)
        out.flush()
        os.fsync(out.fileno())


def _node_files(settings: Settings, config_file: Path | None) -> list[tuple[str, Path]]:
    """(name in the backup, file) of the configuration and keys that exist."""
    files: list[tuple[str, Path]] = []
    if config_file is not None:
        files.append((CONFIG_FILE_NAME, config_file))
    key = settings.node_dir / KEY_FILE
    if key.is_file():
        files.append((KEY_FILE, key))
    for field in ("key_file", "trust_file"):  # what the [node] section names
        named = (settings.node or {}).get(field)
        if not isinstance(named, str):
            continue
        path = Path(named) if Path(named).is_absolute() else settings.node_dir / named
        if not path.is_file() or any(path.resolve() == known.resolve() for _, known in files):
            continue
        if not _inside(path, settings.node_dir):
            raise BackupError(
                f"{path}: node.{field} is outside the node's folder {settings.node_dir}; "
                "move it inside (a relative path) so a backup can carry it"
            )
        files.append((path.resolve().relative_to(settings.node_dir.resolve()).as_posix(), path))
    return files


def backup_node(
    settings: Settings, config_file: Path | None, directory: Path, *, say: Say
) -> Manifest:
    """Write a backup of the node to ``directory`` (new or empty); its manifest."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{directory}: exists and is not an empty folder; choose a new one")
    made_dir = not directory.exists()
    _private_dir(directory)
    try:
        return _backup_into(settings, config_file, directory, say)
    except BaseException:
        _remove_written(directory, made_dir)
        raise


def _remove_written(directory: Path, made_dir: bool) -> None:
    if made_dir:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _backup_into(
    settings: Settings, config_file: Path | None, directory: Path, say: Say
) -> Manifest:
    url = settings.database_url
    kind = "sqlite" if is_sqlite(url) else "postgresql"
    database_name = _DATABASE_FILES[kind]
    started = datetime.now(UTC)
    engine = make_engine(url)
    try:
        if kind == "sqlite":
            state = snapshot_sqlite(sqlite_file(url), directory / database_name)
        else:
            state = dump_postgres(engine, url, directory / database_name)
        if not state.report.ok:
            say(f"warning: the snapshot's {state.report}; a restore will refuse this backup")
        files = {database_name: _file_entry(directory / database_name, "database")}
        for name, source in _node_files(settings, config_file):
            target = directory / name
            _private_dir(target.parent)
            _copy_private(source, target)
            role = "config" if name == CONFIG_FILE_NAME else "key" if name == KEY_FILE else "file"
            files[name] = _file_entry(target, role)
        data: dict[str, Any] = {
            "format": FORMAT,
            "consortia_version": __version__,
            "created_at": started.isoformat(timespec="seconds"),
            "node_name": settings.node_name,
            "database": {"kind": kind, "file": database_name, "revision": state.revision},
            "audit_events": state.report.events,
            "chains": {
                head.chain: {"length": head.length, "hash": head.hash} for head in state.heads
            },
            "files": files,
        }
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        manifest_path = directory / MANIFEST
        descriptor = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        manifest = Manifest(data, digest(manifest_path)[1])
        with writing(engine, cli_operator()) as work:  # the copy is an access to every record
            work.audit(
                "backup",
                "node",
                settings.node_name,
                after={"folder": str(directory.absolute()), "manifest_sha256": manifest.sha256},
            )
        return manifest
    finally:
        engine.dispose()


def _file_entry(path: Path, role: str) -> dict[str, Any]:
    size, sha256 = digest(path)
    return {"role": role, "size": size, "sha256": sha256}


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the backup in ``directory``, every file checked against it."""
    path = directory / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackupError(f"{path}: cannot read the backup's manifest ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{path}: format: expected {FORMAT!r}, found {_format_of(data)!r}")
    for key in ("database", "chains", "files"):
        if not isinstance(data.get(key), dict):
            raise BackupError(f"{path}: {key}: missing or not an object")
    database = data["database"]
    if database.get("kind") not in _DATABASE_FILES or database.get("file") not in data["files"]:
        raise BackupError(f"{path}: database: kind must be sqlite or postgresql, with its file")
    files: dict[str, Any] = data["files"]
    for name, entry in sorted(files.items()):
        file = directory / name
        if not _inside(file, directory):
            raise BackupError(f"{path}: files.{name}: a file outside the backup folder")
        if not file.is_file():
            raise BackupError(f"{file}: listed in the manifest but missing")
        size, sha256 = digest(file)
        if size != entry.get("size"):
            raise BackupError(
                f"{file}: {size} bytes, the manifest says {entry.get('size')}: "
                "the backup was changed or is incomplete"
            )
        if sha256 != entry.get("sha256"):
            raise BackupError(
                f"{file}: sha256 {sha256} does not match the manifest's {entry.get('sha256')}: "
                "the backup was changed"
            )
    listed = {directory / name for name in files} | {path}
    for extra in sorted(p for p in directory.rglob("*") if p.is_file()):
        if extra not in listed:
            raise BackupError(f"{extra}: not in the manifest; the backup was changed")
    for chain, head in data["chains"].items():
        if not (isinstance(head, dict) and isinstance(head.get("length"), int)):
            raise BackupError(f"{path}: chains.{chain}: needs length and hash")
    return Manifest(data, digest(path)[1])


def _format_of(data: Any) -> Any:
    return data.get("format") if isinstance(data, dict) else type(data).__name__


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _compare(state: DatabaseState, manifest: Manifest) -> str | None:
    """What differs between a restored database and its manifest, or ``None``."""
    if not state.report.ok:
        return str(state.report)
    revision = manifest.data["database"].get("revision")
    if state.revision != revision:
        return f"the database is at revision {state.revision}, the manifest says {revision}"
    if state.differences:
        count = len(state.differences)
        return (
            f"the tables differ from a replay of the audit trail in {count} "
            f"place{'s' if count != 1 else ''}, first {state.differences[0]} "
            "(`consortia audit verify --state` lists them)"
        )
    found = {head.chain: (head.length, head.hash) for head in state.heads}
    expected = manifest.heads
    for chain in sorted(set(found) | set(expected)):
        if found.get(chain) != expected.get(chain):
            have = found.get(chain)
            want = expected.get(chain)
            return (
                f"chain {chain!r}: the database ends at "
                f"{_head_text(have)}, the manifest says {_head_text(want)}"
            )
    return None


def _head_text(head: tuple[int, str] | None) -> str:
    return "no event" if head is None else f"event {head[0]} ({head[1][:16]}…)"


@contextmanager
def _undo_on_failure(created: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for path in reversed(created):
            with suppress(OSError):
                if path.is_dir():
                    path.rmdir()  # only if empty: it was made by this restore
                else:
                    path.unlink()
        raise


def restore_node(backup: Path, node_dir: Path, *, say: Say) -> Manifest:
    """Restore the backup in ``backup`` into the empty node folder ``node_dir``.

    The database is the one the restored configuration names (``CONSORTIA_DATABASE_URL``
    winning, as always); it must be empty. Nothing is left behind when a check fails.
    """
    manifest = read_manifest(backup)
    say(f"manifest checked: {len(manifest.data['files'])} files, sha256 {manifest.sha256}")
    names = [name for name, entry in manifest.data["files"].items() if entry["role"] != "database"]
    clashes = [node_dir / name for name in names if (node_dir / name).exists()]
    if clashes:
        raise BackupError(
            f"{node_dir}: not an empty node, it holds {', '.join(str(p) for p in clashes)}; "
            "restore into a new folder"
        )
    if CONFIG_FILE_NAME not in manifest.data["files"]:
        raise BackupError(
            f"{backup}: the backup holds no {CONFIG_FILE_NAME}; it was taken from settings "
            "in the environment alone, so restore cannot tell which database to fill"
        )
    created: list[Path] = []
    with _undo_on_failure(created):
        for folder in [node_dir, *{(node_dir / name).parent for name in names}]:
            if not folder.exists():
                _private_dir(folder)
                created.append(folder)
        for name in sorted(names, key=lambda n: n != CONFIG_FILE_NAME):
            _copy_private(backup / name, node_dir / name)
            created.append(node_dir / name)
        settings = load_settings(node_dir / CONFIG_FILE_NAME)
        _restore_database(backup, manifest, settings, created, say)
    return manifest


def _restore_database(
    backup: Path, manifest: Manifest, settings: Settings, created: list[Path], say: Say
) -> None:
    kind = manifest.data["database"]["kind"]
    dump = backup / manifest.data["database"]["file"]
    url = settings.database_url
    target_kind = "sqlite" if is_sqlite(url) else "postgresql"
    if target_kind != kind:
        raise BackupError(
            f"the backup holds a {kind} database but the restored node's database_url is "
            f"{target_kind}; set CONSORTIA_DATABASE_URL to an empty {kind} database"
        )
    if kind == "sqlite":
        target = sqlite_file(url)
        existing = [
            p for p in (target, Path(f"{target}-wal")) if p.exists() and p.stat().st_size > 0
        ]
        if existing:
            raise BackupError(f"{existing[0]}: the node's database is not empty; refusing it")
        for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            leftover.unlink(missing_ok=True)  # empty files only (checked above)
        staged = target.with_name(f".{target.name}.restoring")
        created.append(staged)
        state = restore_sqlite(dump, staged)
        problem = _compare(state, manifest)
        if problem:
            raise BackupError(f"{backup}: refused: {problem}")
        # the event goes into the restored file before it takes the node's database's place
        staged_lock = Path(f"{staged.absolute()}-writer.lock")  # made by opening it
        created.append(staged_lock)
        _audit_restore(f"sqlite:///{staged.absolute()}", manifest, backup, settings)
        staged_lock.unlink(missing_ok=True)
        staged.replace(target)
        created.append(target)
        say(f"restored {state.report.events} audit events in {len(state.heads)} chains")
        return
    engine = make_engine(url)
    try:
        if not database_is_empty(engine):
            raise BackupError(
                f"the node's PostgreSQL database {engine.url.database!r} is not empty; "
                "restore into a new database (CREATE DATABASE ...)"
            )
        try:
            state = restore_postgres(engine, url, dump)
            problem = _compare(state, manifest)
            if problem:
                raise BackupError(f"{backup}: refused: {problem}")
            _audit_restore(url, manifest, backup, settings)
        except BaseException:
            empty_postgres(engine)  # a restore not audited did not happen
            raise
    finally:
        engine.dispose()
    say(f"restored {state.report.events} audit events in {len(state.heads)} chains")


def _audit_restore(url: str, manifest: Manifest, backup: Path, settings: Settings) -> None:
    engine = make_engine(url)
    try:
        with writing(engine, cli_operator()) as work:
            work.audit(
                "restore",
                "node",
                settings.node_name,
                after={
                    "folder": str(backup.absolute()),
                    "manifest_sha256": manifest.sha256,
                    "backup_created_at": manifest.data.get("created_at"),
                },
            )
    finally:
        engine.dispose()
