"""``consortia study load`` and ``consortia data import|export``: study data from the shell.

These commands act on the node's database as the node operator (see
:func:`~consortia.services.common.cli_operator`), with the data roles each needs; every
change and every export is audited under ``cli:<user>``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from consortia.auth.principal import Role
from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.commands.outputs import check_output_file, check_output_folder
from consortia.exceptions import ConsortiaError, InterchangeError, Problem
from consortia.services import exports, imports, studies
from consortia.services.common import cli_operator

__all__ = ["data_app", "load_study_command"]

data_app = typer.Typer(help="Import and export a study's captured data.", no_args_is_help=True)


def load_study_command(
    file: Annotated[Path, typer.Argument(help="The study YAML.", exists=True, dir_okay=False)],
    config: ConfigOption = None,
) -> None:
    """Load a study definition into the node (a new version when the text changed)."""
    from consortia.services.hub_studies import refuse_unsigned_study

    with reporting():
        refuse_unsigned_study(node_settings(config).node)
    with reporting(), open_engine(node_settings(config)) as engine:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InterchangeError([Problem("", f"cannot read it: {error}", str(file))]) from None
        record, changed = studies.load_definition(
            engine, cli_operator(Role.STUDY_ADMIN), text, file=str(file)
        )
    state = "loaded" if changed else "unchanged:"
    typer.echo(f"{record.study} {state} version {record.version} (sha256 {record.sha256[:12]})")


class _Bar:
    """A progress bar on stderr (a line per phase when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.phase = ""
        self.shown = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase == self.phase and done < total and now - self.shown < 0.2:
            return
        if phase != self.phase and self.phase and self.tty:
            sys.stderr.write("\n")
        self.phase, self.shown = phase, now
        share = done / total if total else 1.0
        filled = int(share * 30)
        line = f"{phase:>5} [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%}"
        if self.tty:
            sys.stderr.write("\r" + line)
        elif done >= total:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.phase:
            sys.stderr.write("\n")


def _print_problems(error: ConsortiaError) -> typer.Exit:
    problems = getattr(error, "problems", ())
    for problem in problems:
        typer.echo(str(problem), err=True)
    if not problems:
        typer.echo(f"error: {error}", err=True)
    typer.echo("nothing was imported", err=True)
    return typer.Exit(1)


@data_app.command("import")
def import_data(
    study: Annotated[str, typer.Argument(help="The study's code.")],
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV (REDCap record export, or long), or ODM 1.3.2 ClinicalData.",
            exists=True,
            dir_okay=False,
        ),
    ],
    site: Annotated[
        str | None, typer.Option(help="The site of new subjects when the file names none.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import a file: every row checked first, then all of it in one transaction or none."""
    bar = _Bar()
    settings = node_settings(config)
    with open_engine(settings) as engine:
        try:
            report = imports.import_file(
                engine,
                cli_operator(Role.COORDINATOR),
                study,
                file,
                site=site,
                progress=bar,
            )
        except ConsortiaError as error:
            bar.end()
            raise _print_problems(error) from None
    bar.end()
    typer.echo(
        f"imported {report.values} values in {report.forms} forms "
        f"({report.subjects_created} new subjects, {report.queries_opened} queries opened) "
        f"from {report.file} ({report.format})"
    )


@data_app.command("export")
def export_data(
    study: Annotated[str, typer.Argument(help="The study's code.")],
    out: Annotated[
        Path, typer.Option(help="A folder (csv, parquet, xpt) or a file (csv-long, odm).")
    ],
    format: Annotated[
        exports.ExportFormat, typer.Option("--format", help="What to write.")
    ] = exports.ExportFormat.CSV,
    include_identifiers: Annotated[
        bool, typer.Option(help="Include identifier (PHI) items; needs --reason.")
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why identifiers leave the node (audited).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Export the study's data, streamed in constant memory; identifiers only with a reason."""
    if format in (exports.ExportFormat.ODM, exports.ExportFormat.CSV_LONG):
        check_output_file(out)
    else:
        check_output_folder(out)
    request = exports.ExportRequest(format, include_identifiers, reason)
    operator = cli_operator(Role.DATA_MANAGER, Role.AUDITOR, Role.STUDY_ADMIN)
    with reporting(), open_engine(node_settings(config)) as engine:
        counts = exports.export_study(engine, operator, study, request, out)
    for table, rows in counts.items():
        typer.echo(f"{table}: {rows} rows")
    typer.echo(f"written to {out}")
