"""Files the command line writes, and what a person reads when a path will not do.

One place for every command: :class:`CommandGroup` (the ``consortia`` app's group) turns an
``OSError`` that escapes a command into one line saying what is wrong with which path and
what would be right, and exit status 1, never an "internal error":

* a folder that does not exist: ``error: missing/dir/x.csv: the folder missing/dir does not
  exist; create it first, or write somewhere that exists``;
* a path that is a folder where a file is wanted, or a file standing where a folder is
  wanted;
* a path the node's user may not write (permission denied, a read-only file system, a full
  disk).

Folders are not created for an output *file*: a mistyped folder would otherwise be made
silently. Commands that write several files check each path with :func:`check_output_file`
before writing anything, and :func:`write_atomically` writes a whole file or none.

:func:`fail` prints a library error from a command of the shell (``consortia study``,
``audit``, ``node``, ``analyze``) as ``file:line:col: path: message`` lines.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from consortia.exceptions import ConsortiaError, _ProblemsError

__all__ = [
    "CommandGroup",
    "check_output_file",
    "check_output_folder",
    "explain",
    "fail",
    "write_atomically",
    "writing",
]


def fail(error: ConsortiaError) -> typer.Exit:
    """Print a library error for a person and return the exit to raise."""
    if isinstance(error, _ProblemsError):
        for problem in error.problems:
            typer.echo(str(problem), err=True)
        count = len(error.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
    else:
        typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


def _raise(code: int, path: Path) -> None:
    raise OSError(code, os.strerror(code), str(path))


def check_output_file(path: Path) -> None:
    """Raise the ``OSError`` writing ``path`` would meet: it is a folder, its folder does not
    exist (or is a file), or the folder may not be written in."""
    if path.is_dir():
        _raise(errno.EISDIR, path)
    folder = path.parent
    if not folder.is_dir():
        _raise(errno.ENOTDIR if folder.exists() else errno.ENOENT, path)
    if not os.access(folder, os.W_OK | os.X_OK):
        _raise(errno.EACCES, path)


def check_output_folder(path: Path) -> None:
    """Raise the ``OSError`` writing into the folder ``path`` would meet: a file stands there.
    A folder that does not exist yet is made by the command."""
    if path.exists() and not path.is_dir():
        _raise(errno.ENOTDIR, path)


def write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a crash or a refusal never leaves half a file behind,
    nor the temporary one."""
    check_output_file(path)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        code = error.errno or errno.EIO
        # told about the file asked for, not the temporary one
        raise OSError(code, error.strerror or os.strerror(code), str(path)) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """The block writes ``path``: an ``OSError`` in it that names no file (a full disk found
    on closing the file) is told as one about ``path``."""
    try:
        yield path
    except OSError as error:
        if error.filename is not None:
            raise
        code = error.errno or errno.EIO
        raise OSError(code, error.strerror or os.strerror(code), str(path)) from None


def _nearest_existing(path: Path) -> Path:
    for ancestor in path.parents:
        if ancestor.exists():
            return ancestor
    return Path(path.anchor or ".")


def explain(error: OSError) -> str:
    """What is wrong, as one line: ``<path>: <what is wrong>; <what would be right>``.

    >>> explain(FileNotFoundError(errno.ENOENT, "No such file", "/nonexistent/x.csv"))[:58]
    '/nonexistent/x.csv: the folder /nonexistent does not exist'
    >>> explain(IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"))
    '/tmp is a folder; give the name of a file (inside it, or elsewhere)'
    """
    name = error.filename2 if error.errno == errno.EISDIR and error.filename2 else error.filename
    if name is None:
        return error.strerror or str(error)
    path = Path(os.fsdecode(name))
    code = error.errno
    if code == errno.ENOTDIR and path.exists() and not path.is_dir():
        return f"{path} is a file; give a folder"
    if code in (errno.ENOENT, errno.ENOTDIR):
        found = _nearest_existing(path)
        if found != path.parent and not found.is_dir():
            return f"{path}: {found} is a file, not a folder"
        if found != path.parent:
            missing = found / path.relative_to(found).parts[0]
            return (
                f"{path}: the folder {missing} does not exist; create it first, or write "
                "somewhere that exists"
            )
        if code == errno.ENOTDIR or not found.is_dir():
            return f"{path}: {path.parent} is a file, not a folder"
        return f"{path}: no such file"
    if code == errno.EISDIR:
        return f"{path} is a folder; give the name of a file (inside it, or elsewhere)"
    if code in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied; choose a place this user may write in"
    if code == errno.EROFS:
        return f"{path}: the file system is read-only; choose another place"
    if code == errno.ENOSPC:
        return f"{path}: no space left on the device"
    return f"{path}: {error.strerror or error}"


class CommandGroup(TyperGroup):
    """The ``consortia`` group: a path that will not do ends a command with one line
    (:func:`explain`) and exit status 1. A broken pipe is left to click (``| head``)."""

    def invoke(self, ctx: Any) -> Any:  # typer's click Context (vendored in recent typer)
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise
            typer.echo(f"error: {explain(error)}", err=True)
            raise typer.Exit(1) from None
