"""The ``consortia`` command line: parse arguments, call the library, render the result.

This is the root app: it wires the command groups (listed in
:mod:`consortia.commands.registry`, each kept in its ``consortia/commands/`` module and
imported when it runs) and holds ``consortia study ...`` and ``consortia demo``.

Errors from the library are printed as ``file:line:col: path: message`` lines and the
command exits 1; nothing prints a stack trace to a user.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from consortia.commands.deferred import deferring
from consortia.commands.outputs import check_output_file, fail, write_atomically, writing
from consortia.commands.registry import NODE_COMMANDS, STUDY_COMMANDS
from consortia.exceptions import ConsortiaError

app = typer.Typer(
    name="consortia",
    help="Consortia: studies as code, data capture at each hospital, federated analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # the node commands, imported when they run (commands/registry.py); a path that will not
    # do: one line and exit 1 (commands/outputs.py)
    cls=deferring(NODE_COMMANDS),
)
study_app = typer.Typer(
    help="Check, show and convert study definitions.",
    no_args_is_help=True,
    cls=deferring(STUDY_COMMANDS),
)
app.add_typer(study_app, name="study")


def _version(value: bool) -> None:
    if value:
        from consortia import __version__

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
    from consortia.domain.study_yaml import load_study

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
    from consortia.domain.study import schedule_table
    from consortia.domain.study_yaml import load_study

    try:
        study = load_study(path)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{study.study.id} v{study.study.version}: {study.study.title.get(lang)}")
    typer.echo(_render_table(schedule_table(study, lang)))


_write_atomically = write_atomically


def _print_warnings(warnings: tuple[object, ...]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def _write_imported(out: Path, study: Any, warnings: tuple[object, ...]) -> None:
    """Write an imported study as YAML after listing what did not carry over."""
    from consortia.domain.study_yaml import study_to_yaml

    _print_warnings(warnings)
    _write_atomically(out, study_to_yaml(study).encode("utf-8"))
    typer.echo(f"wrote {out}: {study.summary()}")


@study_app.command("export-odm")
def study_export_odm(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="The ODM 1.3.2 XML file to write.")],
) -> None:
    """Write a study's metadata as CDISC ODM 1.3.2 XML."""
    from consortia.domain.study_yaml import load_study
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
    from consortia.standards.odm import import_odm

    try:
        result = import_odm(path)
    except ConsortiaError as error:
        raise fail(error) from None
    _write_imported(out, result.study, result.warnings)


@study_app.command("import-redcap")
def study_import_redcap(
    path: Annotated[Path, typer.Argument(help="A REDCap data dictionary (CSV).")],
    out: Annotated[Path, typer.Option("--out", help="The study YAML file to write.")],
    study_id: Annotated[
        str | None, typer.Option("--study-id", help="The study id (default: the file name).")
    ] = None,
) -> None:
    """Read a REDCap data dictionary into a study YAML file; untranslatable logic warns."""
    from consortia.standards.redcap_import import import_redcap

    try:
        result = import_redcap(path, study_id=study_id)
    except ConsortiaError as error:
        raise fail(error) from None
    _write_imported(out, result.study, result.warnings)


@study_app.command("export-redcap")
def study_export_redcap(
    path: Annotated[Path, typer.Argument(help="The study YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="The data dictionary CSV to write.")],
) -> None:
    """Write a study as a REDCap data dictionary; what REDCap cannot hold is listed, each
    with its file and line."""
    from consortia.domain.study_yaml import study_from_document
    from consortia.domain.yamlsource import load_yaml_file
    from consortia.standards.redcap_export import export_redcap

    try:
        source = load_yaml_file(path)
        exported = export_redcap(study_from_document(source), source)
    except ConsortiaError as error:
        raise fail(error) from None
    _print_warnings(exported.warnings)
    # REDCap's own downloads begin with a UTF-8 BOM; Excel needs it to read Chinese text
    _write_atomically(out, exported.text.encode("utf-8-sig"))
    typer.echo(f"wrote {out}")


@study_app.command("templates")
def study_templates() -> None:
    """List the study templates shipped with Consortia."""
    from consortia.domain.templates import list_templates

    for info in list_templates():
        typer.echo(f"{info.name:<18} {info.title_en}")
        typer.echo(f"{'':<18} {info.title_zh}")


@study_app.command("new")
def study_new(
    template: Annotated[str, typer.Option("--template", help="A template name (see templates).")],
    out: Annotated[Path, typer.Option("--out", help="The study YAML file to write.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Start a study from a template: writes its YAML, ready to edit and validate."""
    from consortia.domain.templates import template_text

    check_output_file(out)
    if out.exists() and not force:
        typer.echo(f"error: {out} exists; choose another name or pass --force", err=True)
        raise typer.Exit(1)
    try:
        text = template_text(template)
    except ConsortiaError as error:
        raise fail(error) from None
    _write_atomically(out, text.encode("utf-8"))
    typer.echo(f"wrote {out} from template {template}")


@study_app.command("synthesize")
def study_synthesize(
    template: Annotated[str, typer.Argument(help="A template name (see templates).")],
    subjects: Annotated[int, typer.Option(help="How many subjects (or sessions/cases).")],
    site: Annotated[str, typer.Option(help="The site code the subjects belong to.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")],
    out: Annotated[Path, typer.Option("--out", help="Records CSV (wide, REDCap-style).")],
    analysis_out: Annotated[
        Path | None,
        typer.Option(help="Also write the analysis table (derived variables, no identifiers)."),
    ] = None,
) -> None:
    """Generate plausible synthetic records for a template (they pass the study's checks)."""
    from consortia.domain.synthetic import synthesize

    for path in (out, analysis_out):  # both will do, or nothing is written
        if path is not None:
            check_output_file(path)
    try:
        data = synthesize(template, subjects=subjects, site=site, seed=seed)
        with writing(out):
            data.write_csv(out)
        if analysis_out is not None:
            with writing(analysis_out):
                data.write_analysis_csv(analysis_out)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"wrote {out}: {len(data.records)} records for {subjects} subjects at {site}")
    if analysis_out is not None:
        typer.echo(f"wrote {analysis_out}: analysis table {data.analysis_table}")


@app.command("demo")
def demo(
    folder: Annotated[Path, typer.Option(help="Where the demo builds its nodes.")] = Path(
        "consortia-demo"
    ),
    subjects: Annotated[int, typer.Option(help="Synthetic subjects per site and study.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2026,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after the analyses.")
    ] = True,
) -> None:
    """A consortium on loopback: a hub and two hospitals as processes, data entered, analyses."""
    from consortia import __version__
    from consortia.demo import run_demo

    typer.echo(f"Consortia {__version__} demo")
    try:
        run_demo(folder, subjects_per_site=subjects, seed=seed, serve=serve, echo=typer.echo)
    except ConsortiaError as error:
        raise fail(error) from None


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
