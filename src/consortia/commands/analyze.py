"""``consortia analyze``: a federated analysis over local files, member nodes, or at a hub
across a study's members.

Registered deferred (:mod:`consortia.commands.registry`); the command imports the services
it calls when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from consortia.commands.outputs import fail, write_atomically
from consortia.exceptions import ConsortiaError

if TYPE_CHECKING:
    from consortia.services.federated import AnalysisResult

__all__ = ["analyze"]


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise typer.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint=option)
        if name in pairs:
            raise typer.BadParameter(f"node {name!r} is given twice", param_hint=option)
        pairs[name] = target
    return pairs


def _local_table(spec: Path, request: object, table: str | None) -> str | None:
    """The table every --local file is served as: --table, else the request's table."""
    requested = request.get("table") if isinstance(request, dict) else None
    if not isinstance(requested, str) or not requested:
        return table  # the request is refused for its missing table, naming the field
    if table is not None and table != requested:
        raise typer.BadParameter(
            f"{table!r}, but {spec} reads table {requested!r}; give --table {requested}",
            param_hint="--table",
        )
    return requested


def _write_plot(result: AnalysisResult, path: Path) -> None:
    from consortia.services.federated import KaplanMeierEstimates
    from consortia.stats.plots import kaplan_meier_plot

    image_format = path.suffix.lower().lstrip(".")
    if image_format not in ("png", "svg"):
        raise typer.BadParameter(f"{path}: the plot's name must end in .png or .svg")
    if not isinstance(result.estimates, KaplanMeierEstimates):
        raise typer.BadParameter(f"--plot draws kaplan_meier results, not {result.kind}")
    try:
        image = kaplan_meier_plot(
            result.estimates.curves,
            image_format="svg" if image_format == "svg" else "png",
            time_label="Days",
        )
    except ConsortiaError as error:
        raise fail(error) from None
    write_atomically(path, image)


def analyze(
    spec: Annotated[
        Path | None, typer.Argument(help="The analysis request (JSON), with --local or --node.")
    ] = None,
    local: Annotated[
        list[str] | None,
        typer.Option("--local", help="NAME=FILE.csv: an in-process node over a local file."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="The table each --local file is served as (default: the request's)."),
    ] = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="NAME=URL: a member node to push to.")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON policy for --local nodes (a node config's policy section)."),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="The lead's Ed25519 key (PEM) for --node.")
    ] = None,
    trust: Annotated[
        Path | None, typer.Option(help="Trust store (YAML) with the member nodes' keys.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Kaplan-Meier: also draw the curves with numbers at risk (.png/.svg)."),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="At a hub: the published study whose members take part.")
    ] = None,
    plan: Annotated[
        str | None, typer.Option(help="At a hub: the analysis of the study's plan to run.")
    ] = None,
    request_file: Annotated[
        Path | None, typer.Option("--request", help="At a hub: an ad-hoc request (JSON).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="At a hub: its consortia.toml.")
    ] = None,
) -> None:
    """Run a federated analysis: over local files (--local), member nodes (--node), or at
    a hub across a study's members (--study with --plan, or --request)."""
    import json

    if study is not None or plan is not None or request_file is not None:
        from consortia.commands.hub import hub_analyze

        if spec is not None or local or node:
            raise typer.BadParameter("at a hub, give --study/--plan or --request, not a SPEC")
        hub_analyze(config, study, plan, request_file, as_json=as_json)
        return
    if spec is None:
        raise typer.BadParameter("give the request SPEC.json (or, at a hub, --study --plan)")

    import yaml
    from pydantic import ValidationError as PydanticValidationError

    from consortia.services.federated import analyze_files, analyze_nodes

    try:
        try:
            request = json.loads(spec.read_text(encoding="utf-8"))
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {spec}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            typer.echo(f"{spec}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}", err=True)
            raise typer.Exit(1) from None
        if bool(local) == bool(node):
            raise typer.BadParameter("give either --local NAME=FILE ... or --node NAME=URL ...")
        if local:
            document = None
            if policy is not None:
                document = yaml.safe_load(policy.read_text(encoding="utf-8")) or {}
            result = analyze_files(
                request,
                _pairs(local, "--local"),
                document,
                table_name=_local_table(spec, request, table),
            )
        else:
            if table is not None:
                raise typer.BadParameter("--table names --local files; a --node serves its own")
            if key is None or trust is None:
                raise typer.BadParameter("--node needs --key (the lead's key) and --trust")
            result = analyze_nodes(
                request, _pairs(node or [], "--node"), key_file=key, trust_file=trust
            )
    except ConsortiaError as error:
        raise fail(error) from None
    except PydanticValidationError as error:
        typer.echo(f"{policy}: invalid policy: {error}", err=True)
        raise typer.Exit(1) from None
    if plot is not None:
        _write_plot(result, plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        typer.echo(result.summary())
    if not result.complete:
        raise typer.Exit(3)
