"""``consortia study performance STUDY``: the study's site performance from the shell.

The command reads as the node operator with the study administrator's role at every site
(:func:`~consortia.services.common.cli_operator`): the node's own view of every site it
hosts, computed from its EDC, never sent anywhere (docs/site-performance.md).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from consortia.auth.principal import Role
from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.services.common import cli_operator
from consortia.services.site_performance import (
    SitePerformance,
    performance_json,
    performance_table,
    read_site_performance,
)

__all__ = ["performance_command"]


def _text(performance: SitePerformance) -> str:
    """One line per metric, one column per site and one for the sites pooled."""
    rows = performance_table(performance)
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[0][0] = "metric"
    widths = [max(len(cell) for cell in column) for column in zip(*columns, strict=True)]
    lines = [
        f"{performance.study} site performance (study version {performance.definition_version},"
        f" as of {performance.as_of:%Y-%m-%d %H:%M} UTC)"
    ]
    for index, row in enumerate(columns):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def performance_command(
    study: Annotated[str, typer.Argument(help="The study's code.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics as JSON instead of a table.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show a study's site performance: enrolment, screen failures, timeliness, queries,
    missing data and visit windows per site (docs/site-performance.md)."""
    with reporting(), open_engine(node_settings(config)) as engine:
        performance = read_site_performance(engine, cli_operator(Role.STUDY_ADMIN), study)
    if as_json:
        typer.echo(json.dumps(performance_json(performance), indent=2))
    else:
        typer.echo(_text(performance))
