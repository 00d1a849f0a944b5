"""The ``consortia`` command line: parse arguments, call the library, render the result.

Errors from the library are printed as ``file:line:col: path: message`` lines and the
command exits 1; nothing prints a stack trace to a user.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consortia.commands.deferred import deferring
from consortia.commands.outputs import check_output_file, write_atomically, writing
from consortia.commands.registry import NODE_COMMANDS, NODE_GROUP_COMMANDS, STUDY_COMMANDS
from consortia.exceptions import ConsortiaError, _ProblemsError

if TYPE_CHECKING:
    from consortia.services.federated import AnalysisResult

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
audit_app = typer.Typer(help="Inspect and verify the audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
node_app = typer.Typer(
    help="A member node's federation identity, trust, approvals and server.",
    no_args_is_help=True,
    cls=deferring(NODE_GROUP_COMMANDS),
)
app.add_typer(node_app, name="node")
approvals_app = typer.Typer(
    help="The data steward's queue of analysis requests (manual approval mode).",
    no_args_is_help=True,
)
node_app.add_typer(approvals_app, name="approvals")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", help="The node's consortia.toml (its [node] section)."),
]


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


NodeConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--node-config",
        help="The node's consortia.toml ([node] section): name, key, peers.",
    ),
]


@audit_app.command("verify")
def audit_verify(
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: CONSORTIA_DATABASE_URL or the node's)."),
    ] = None,
    chain: Annotated[str | None, typer.Option(help="Verify one chain (a study) only.")] = None,
    node_config: NodeConfigOption = None,
    state: Annotated[
        bool,
        typer.Option(
            "--state", help="Also replay the trail and compare it with the current tables."
        ),
    ] = False,
) -> None:
    """Recompute the audit trail's hash chain; report the first broken link (exit 1).

    With --node-config, also compare the chains with the heads the node's peers witnessed
    (truncated, forked or missing chains: exit 1; no peer answered: exit 3). With --state,
    replay the trail and report every difference with the tables (exit 1).
    """
    from consortia.config import Settings
    from consortia.services.audit_trail import verify_trail
    from consortia.services.database import open_database

    exit_code = 0
    try:
        config = _node_config(node_config) if node_config is not None else None
        url = database_url or (config.database() if config is not None else None)
        engine = open_database(url or Settings().database_url)
        try:
            report = verify_trail(engine, chain=chain)
            typer.echo(str(report))
            if not report.ok:
                exit_code = 1
            if config is not None:
                exit_code = max(exit_code, _verify_witnessed(config, engine))
            if state:
                exit_code = max(exit_code, _verify_state(engine))
        finally:
            engine.dispose()
    except ConsortiaError as error:
        raise fail(error) from None
    if exit_code:
        raise typer.Exit(1 if exit_code == 1 else 3)


def _verify_witnessed(config: Any, engine: Any) -> int:
    """Print the comparison with the witnessed heads; 1 for a finding, 3 for no witness."""
    from consortia.services.node_admin import verify_witnessed_heads

    report = verify_witnessed_heads(config, engine)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        return 1
    return 0 if report.witnessed else 3


def _verify_state(engine: Any) -> int:
    from consortia.services.audit_trail import state_differences

    differences = state_differences(engine)
    for difference in differences:
        typer.echo(str(difference))
    if differences:
        typer.echo(f"state differs from the audit trail: {len(differences)} differences")
        return 1
    typer.echo("state matches the audit trail")
    return 0


@audit_app.command("witness")
def audit_witness(
    node_config: Annotated[
        Path,
        typer.Option("--node-config", help="The node's consortia.toml ([node] section)."),
    ],
) -> None:
    """Sign this node's chain heads and hand them to its peers, which keep them (exit 3 if
    a peer did not take them)."""
    from consortia.services.node_admin import witness_heads

    try:
        outcomes = witness_heads(_node_config(node_config))
    except ConsortiaError as error:
        raise fail(error) from None
    if not outcomes:
        typer.echo("no trusted peer with a URL to hand the heads to")
        raise typer.Exit(3)
    for outcome in outcomes:
        typer.echo(f"peer {outcome.peer}: {outcome.detail}")
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(3)


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
    _write_atomically(path, image)


@app.command("analyze")
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


def _node_config(config: Path) -> Any:
    """The federation config of a node: the [node] section of its consortia.toml (a YAML
    node config is refused with the command that moves it there)."""
    from consortia.services.node_admin import node_config

    return node_config(config)


@node_app.command("keygen")
def node_keygen(
    out: Annotated[Path, typer.Argument(help="Where to write the Ed25519 key (PEM, mode 0600).")],
) -> None:
    """Create a node signing key; refuses to overwrite an existing one."""
    from consortia.services.node_admin import create_node_key

    try:
        public_key = create_node_key(out)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"wrote {out}; public key {public_key}")


@node_app.command("identity")
def node_identity_command(config: ConfigOption) -> None:
    """Print this node's name, URL and public key, to give to partner nodes."""
    from consortia.services.node_admin import node_identity

    try:
        typer.echo(node_identity(_node_config(config)))
    except ConsortiaError as error:
        raise fail(error) from None


@node_app.command("trust")
def node_trust(
    name: Annotated[str, typer.Argument(help="The peer's node name.")],
    url: Annotated[str, typer.Argument(help="The peer's URL.")],
    public_key: Annotated[str, typer.Argument(help="The peer's public key (base64).")],
    config: ConfigOption,
) -> None:
    """Trust a peer: add (or replace) it in the node's trust file."""
    from pydantic import ValidationError as PeerError

    from consortia.services.node_admin import trust_peer

    try:
        node = _node_config(config)
        if node.trust_file is None:
            raise typer.BadParameter(
                f'{config} has no trust_file; add `trust_file = "trust.yaml"` to [node]'
            )
        path = trust_peer(node, name, url, public_key)
    except ConsortiaError as error:
        raise fail(error) from None
    except PeerError as error:
        typer.echo(f"error: {error.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"trusted {name} at {url} ({path})")


@node_app.command("serve", hidden=True, context_settings={"ignore_unknown_options": True})
def node_serve(
    args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Removed: `consortia serve` serves the federation endpoints with the pages."""
    typer.echo(
        "error: `consortia node serve` is gone: `consortia serve` serves the federation "
        "endpoints on the same port as the pages, from the [node] section of consortia.toml; "
        "move a node.yaml there with `consortia config import-node-yaml node.yaml`",
        err=True,
    )
    raise typer.Exit(1)


@contextmanager
def _node_database(config: Path) -> Iterator[Any]:
    """The engine of the node database the federation config names (disposed after)."""
    from consortia.services.node_admin import open_node_database

    engine = open_node_database(_node_config(config))
    try:
        yield engine
    finally:
        engine.dispose()


AsOption = Annotated[
    str,
    typer.Option(
        "--as",
        help="The account deciding: an active node administrator of this node (its email).",
    ),
]


@approvals_app.command("list")
def approvals_list(
    config: ConfigOption,
    all_entries: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
) -> None:
    """List requests waiting for a decision (or all with --all)."""
    import json

    from consortia.services.approvals import ApprovalStatus, list_approvals
    from consortia.services.common import cli_operator

    try:
        with _node_database(config) as engine:
            status = None if all_entries else ApprovalStatus.PENDING
            entries = list_approvals(engine, cli_operator(), status)
    except ConsortiaError as error:
        raise fail(error) from None
    if not entries:
        typer.echo("no requests waiting" if not all_entries else "no requests")
    for entry in entries:
        typer.echo(
            f"{entry.id}  {entry.status.value:<8} {entry.submitted_at.isoformat()}  "
            f"from {entry.requester}: {json.dumps(entry.request, sort_keys=True)}"
        )


def _decide(config: Path, entry_id: str, email: str, approve: bool, reason: str) -> Any:
    """Decide through the one approval service, as the named account (policy-checked,
    audited on the node chain)."""
    from consortia.services.approvals import decide, decider_named

    with _node_database(config) as engine:
        return decide(engine, decider_named(engine, email), entry_id, approve, reason)


@approvals_app.command("approve")
def approvals_approve(
    entry_id: Annotated[str, typer.Argument(help="The request's id (from list).")],
    config: ConfigOption,
    decider: AsOption,
    reason: Annotated[str, typer.Option(help="Why (optional).")] = "",
) -> None:
    """Approve a waiting request; the lead's next try goes ahead."""
    try:
        entry = _decide(config, entry_id, decider, True, reason)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{entry.id} approved by {entry.decided_by}")


@approvals_app.command("deny")
def approvals_deny(
    entry_id: Annotated[str, typer.Argument(help="The request's id (from list).")],
    config: ConfigOption,
    decider: AsOption,
    reason: Annotated[str, typer.Option(help="Why; the lead is told.")],
) -> None:
    """Deny a waiting request with a reason."""
    try:
        entry = _decide(config, entry_id, decider, False, reason)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{entry.id} denied by {entry.decided_by}: {entry.reason}")


@node_app.command("audit-verify")
def node_audit_verify(config: ConfigOption) -> None:
    """Verify the hash chain of the node's federation audit (database chain or log file)."""
    from consortia.services.node_admin import verify_node_audit

    try:
        line = verify_node_audit(_node_config(config))
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(line)


@app.command("demo")
def demo(
    folder: Annotated[Path, typer.Option(help="Where the demo writes its files.")] = Path(
        "consortia-demo"
    ),
    subjects: Annotated[int, typer.Option(help="Synthetic subjects per hospital.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2026,
) -> None:
    """A CAR-T study run by two hospitals: synthetic data, federated analyses, audit trail."""
    from consortia import __version__
    from consortia.demo import run_demo

    typer.echo(f"Consortia {__version__} demo")
    try:
        run_demo(folder, subjects_per_site=subjects, seed=seed, echo=typer.echo)
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
