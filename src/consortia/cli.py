"""The ``consortia`` command line: parse arguments, call the library, render the result.

Errors from the library are printed as ``file:line:col: path: message`` lines and the
command exits 1; nothing prints a stack trace to a user.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from consortia import __version__
from consortia.exceptions import ConsortiaError, _ProblemsError

app = typer.Typer(
    name="consortia",
    help="Consortia: studies as code, data capture at each hospital, federated analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
study_app = typer.Typer(help="Check, show and convert study definitions.", no_args_is_help=True)
app.add_typer(study_app, name="study")
audit_app = typer.Typer(help="Inspect and verify the audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"consortia {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Consortia: studies as code, data capture at each hospital, federated analysis."""


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


def _render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


@study_app.command("validate")
def study_validate(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
) -> None:
    """Check a study file; print a summary, or every problem as PATH:LINE:COL: path: message."""
    from consortia.domain.study import load_study

    try:
        study = load_study(path)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{path}: ok: {study.summary()}")


@study_app.command("show")
def study_show(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
    lang: Annotated[str, typer.Option(help="Label language: en or zh.")] = "en",
) -> None:
    """Print the schedule of a study: events x forms."""
    from consortia.domain.study import load_study, schedule_table

    try:
        study = load_study(path)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{study.study.id} v{study.study.version}: {study.study.title.get(lang)}")
    typer.echo(_render_table(schedule_table(study, lang)))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a crash never leaves half a file behind."""
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    temporary.replace(path)


def _print_warnings(warnings: tuple[object, ...]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


@study_app.command("export-odm")
def study_export_odm(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="The ODM 1.3.2 XML file to write.")],
) -> None:
    """Write a study's metadata as CDISC ODM 1.3.2 XML."""
    from consortia.domain.study import load_study
    from consortia.standards.odm import export_odm

    try:
        _write_atomically(out, export_odm(load_study(path)))
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"wrote {out}")


@study_app.command("import-odm")
def study_import_odm(
    path: Annotated[Path, typer.Argument(help="A CDISC ODM 1.3.2 XML file with metadata.")],
    out: Annotated[Path, typer.Option("--out", help="The study YAML file to write.")],
) -> None:
    """Read ODM 1.3.2 metadata (ours, OpenClinica, REDCap, ...) into a study YAML file."""
    from consortia.domain.study import study_to_yaml
    from consortia.standards.odm import import_odm

    try:
        result = import_odm(path)
    except ConsortiaError as error:
        raise fail(error) from None
    _print_warnings(result.warnings)
    _write_atomically(out, study_to_yaml(result.study).encode("utf-8"))
    typer.echo(f"wrote {out}: {result.study.summary()}")


@study_app.command("import-redcap")
def study_import_redcap(
    path: Annotated[Path, typer.Argument(help="A REDCap data dictionary (CSV).")],
    out: Annotated[Path, typer.Option("--out", help="The study YAML file to write.")],
    study_id: Annotated[
        str | None, typer.Option("--study-id", help="The study id (default: the file name).")
    ] = None,
) -> None:
    """Read a REDCap data dictionary into a study YAML file; untranslatable logic warns."""
    from consortia.domain.study import study_to_yaml
    from consortia.standards.redcap import import_redcap

    try:
        result = import_redcap(path, study_id=study_id)
    except ConsortiaError as error:
        raise fail(error) from None
    _print_warnings(result.warnings)
    _write_atomically(out, study_to_yaml(result.study).encode("utf-8"))
    typer.echo(f"wrote {out}: {result.study.summary()}")


@study_app.command("export-redcap")
def study_export_redcap(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="The data dictionary CSV to write.")],
) -> None:
    """Write a study as a REDCap data dictionary; what REDCap cannot hold is listed."""
    from consortia.domain.study import load_study
    from consortia.standards.redcap import export_redcap

    try:
        exported = export_redcap(load_study(path))
    except ConsortiaError as error:
        raise fail(error) from None
    _print_warnings(exported.warnings)
    # REDCap's own downloads begin with a UTF-8 BOM; Excel needs it to read Chinese text
    _write_atomically(out, exported.text.encode("utf-8-sig"))
    typer.echo(f"wrote {out}")


@audit_app.command("verify")
def audit_verify(
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: CONSORTIA_DATABASE_URL or the node's)."),
    ] = None,
    chain: Annotated[str | None, typer.Option(help="Verify one chain (a study) only.")] = None,
) -> None:
    """Recompute the audit trail's hash chain; report the first broken link (exit 1)."""
    from consortia.config import Settings
    from consortia.storage.audit import verify_chain
    from consortia.storage.db import make_engine

    try:
        engine = make_engine(database_url or Settings().database_url)
        with engine.connect() as connection:
            report = verify_chain(connection, chain=chain)
        engine.dispose()
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(str(report))
    if not report.ok:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    example: Annotated[Path, typer.Option(help="The study to demonstrate.")] = Path(
        "examples/cart-lbcl.yaml"
    ),
) -> None:
    """Validate the bundled example study and show its schedule."""
    from consortia.domain.study import load_study, schedule_table

    try:
        study = load_study(example)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"Consortia {__version__} demo")
    typer.echo(f"{example}: ok: {study.summary()}")
    typer.echo(_render_table(schedule_table(study)))


def main() -> None:
    """Entry point: run the app; an unexpected error prints one line, not a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except ConsortiaError as error:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except Exception as error:
        typer.echo(f"internal error: {type(error).__name__}: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
