"""``consortia hub ...``: the coordinating centre's commands, and a hub's analyses.

At a hub (a node whose ``[node]`` section says ``role = "hub"``):

* ``consortia hub invite NAME...`` prints a one-time invitation for each (they expire);
* ``consortia hub members`` lists the consortium; ``consortia hub remove NAME`` revokes a
  member's key;
* ``consortia hub publish STUDY.yaml --site SG01=MEMBER ...`` signs the study version
  and sends it to the members hosting its sites (pushed, or queued for a member that
  polls), and says what each answered;
* ``consortia analyze --study STUDY --plan NAME`` (or ``--request FILE.json``) runs an
  analysis across the study's members and keeps its result at the hub.

At a member: ``consortia node studies list|accept ID``, the study versions its hub sent.
Each command acts as the node's operator (a node administrator at its shell) and every
action is audited in the node's trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from consortia.auth.principal import Role
from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.config import Settings
from consortia.exceptions import ConfigurationError
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, hub_studies, node_admin
from consortia.services.common import cli_operator
from consortia.services.hub import DEFAULT_INVITATION_HOURS, HubIdentity, MemberRecord
from consortia.services.node_admin import NodeConfig

__all__ = ["hub_analyze", "hub_app", "studies_app"]

hub_app = typer.Typer(
    help="The coordinating centre: invite and remove members, publish studies.",
    no_args_is_help=True,
)
studies_app = typer.Typer(
    help="The study versions this node's hub published to it.", no_args_is_help=True
)


@dataclass
class _Hub:
    settings: Settings
    config: NodeConfig
    identity: HubIdentity
    engine: Engine


@contextmanager
def _hub(config: Path | None) -> Iterator[_Hub]:
    settings = node_settings(config)
    node = node_admin.node_config_of(settings)
    if node is None or node.role != "hub":
        raise ConfigurationError(
            'this node is not a hub: a hub\'s consortia.toml says role = "hub" in its [node] '
            'section (create one with `consortia init DIR --hub --name "..."`)'
        )
    identity = hub_service.hub_identity(settings, node)
    with open_engine(settings) as engine:
        yield _Hub(settings, node, identity, engine)


def _rows(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


@hub_app.command("invite")
def invite(
    names: Annotated[
        list[str], typer.Argument(help="The members' node names (e.g. sgh shh), one or more.")
    ],
    config: ConfigOption = None,
    hours: Annotated[
        float, typer.Option(help="Hours until the invitation expires (at most 720).")
    ] = DEFAULT_INVITATION_HOURS,
) -> None:
    """Print a one-time invitation for each NAME, one a line: give each to its hospital's
    administrator, who runs `consortia init DIR --join INVITATION`."""
    with reporting(), _hub(config) as hub:
        for name in names:
            invitation, record = hub_service.create_invitation(
                hub.engine, cli_operator(), hub.identity, name, hours=hours
            )
            typer.echo(invitation.encode())
            typer.echo(
                f"invitation {record.id} for {name}: one use, expires "
                f"{record.expires_at:%Y-%m-%d %H:%M} UTC; hub key fingerprint "
                f"{hub.identity.fingerprint}",
                err=True,
            )


@hub_app.command("members")
def members(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the consortium's members: institution, transport, key fingerprint, status."""
    with reporting(), _hub(config) as hub:
        found = hub_service.list_members(hub.engine, cli_operator())
    if as_json:
        typer.echo(json.dumps([_member_json(m) for m in found], indent=2))
        return
    if not found:
        typer.echo("no members yet: invite one with `consortia hub invite NAME`")
        return
    rows = [["name", "institution", "country", "transport", "fingerprint", "status", "last seen"]]
    for m in found:
        seen = "" if m.last_seen_at is None else f"{m.last_seen_at:%Y-%m-%d %H:%M}"
        rows.append([m.name, m.institution, m.country, m.transport, m.fingerprint, m.status, seen])
    typer.echo(_rows(rows))


def _member_json(member: MemberRecord) -> dict[str, Any]:
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in asdict(member).items()
    }


@hub_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The member to remove.")],
    config: ConfigOption = None,
) -> None:
    """Remove a member: its key is revoked (its messages are refused) and nothing more is
    sent to it."""
    with reporting(), _hub(config) as hub:
        member = hub_service.remove_member(hub.engine, cli_operator(), name)
    typer.echo(f"removed {member.name}: key {member.fingerprint} revoked")


@hub_app.command("studies")
def studies(config: ConfigOption = None) -> None:
    """The published studies: version, the member hosting each site, what members said."""
    with reporting(), _hub(config) as hub:
        published = hub_studies.list_studies(hub.engine, cli_operator())
    typer.echo(json.dumps(published, indent=2))


@hub_app.command("publish")
def publish(
    study_file: Annotated[Path, typer.Argument(help="The study YAML file.")],
    site: Annotated[
        list[str], typer.Option("--site", help="SITE=MEMBER: the member hosting a site.")
    ],
    config: ConfigOption = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for each member's answer.")] = 60.0,
) -> None:
    """Sign a study version and send it to the members hosting its sites; each member's
    administrator accepts it (or its policy does, accept_studies = "auto")."""
    sites: dict[str, str] = {}
    for pair in site:
        code, sep, member = pair.partition("=")
        if not sep or not code or not member:
            raise typer.BadParameter(f"{pair!r}: write SITE=MEMBER", param_hint="--site")
        sites[code] = member
    try:
        source = study_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {study_file}: {exc.strerror}") from None
    with reporting(), _hub(config) as hub:
        record, _, targets = hub_studies.publish_study(
            hub.engine, cli_operator(), hub.identity, source, sites, file=str(study_file)
        )
        typer.echo(
            f"published {record.study} v{record.label} (sha256 {record.sha256[:16]}...) to "
            f"{', '.join(m.name for m in targets)}"
        )
        answers = hub_studies.deliver_study(
            hub.engine,
            hub.identity,
            record,
            sites,
            targets,
            wait=wait,
            clock_skew_seconds=hub.settings.clock_skew_seconds,
        )
        for member, status, detail in answers:
            hub_studies.record_delivery(
                hub.engine, record.study, record.sha256, member, status, detail
            )
            typer.echo(f"  {member}: {status}" + (f" ({detail})" if detail else ""))
    if any(status not in ("pending", "accepted") for _, status, _ in answers):
        raise typer.Exit(3)


# --------------------------------------------------------------------------- analyses


def _summary(analysis_id: str, result: Mapping[str, Any]) -> str:
    nodes = ", ".join(f"{n['name']} (n={n['n']})" for n in result.get("nodes", []))
    lines = [
        f"analysis {analysis_id}: {result.get('kind')} "
        f"{'complete' if result.get('complete') else 'INCOMPLETE'}, "
        f"exact {str(result.get('exact')).lower()}, {result.get('rounds')} rounds",
        f"members: {nodes}",
    ]
    for refusal in result.get("refusals", []):
        lines.append(f"refused by {refusal['node']} ({refusal['rule']}): {refusal['message']}")
    if result.get("missing_nodes"):
        lines.append(f"missing: {', '.join(result['missing_nodes'])}")
    lines.append(json.dumps(result.get("estimates"), indent=2, default=str))
    return "\n".join(lines)


def hub_analyze(
    config: Path | None,
    study: str | None,
    plan: str | None,
    request_file: Path | None,
    *,
    as_json: bool = False,
) -> dict[str, Any]:
    """``consortia analyze --study S --plan P`` (or ``--request FILE``) at a hub."""
    if (plan is None) == (request_file is None):
        raise typer.BadParameter("give either --plan NAME (with --study) or --request FILE.json")
    if plan is not None and study is None:
        raise typer.BadParameter("--plan names an analysis of a study's plan: add --study")
    request: dict[str, Any] | None = None
    if request_file is not None:
        try:
            request = json.loads(request_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {request_file}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            typer.echo(
                f"{request_file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}", err=True
            )
            raise typer.Exit(1) from None
    operator = cli_operator()
    with reporting(), _hub(config) as hub:
        analysis_id, result = hub_analyses.run_analysis(
            hub.engine,
            operator,
            hub.identity,
            study=study,
            plan=plan,
            request=request,
            clock_skew_seconds=hub.settings.clock_skew_seconds,
        )
    result = {"analysis": analysis_id, **result}
    typer.echo(
        json.dumps(result, indent=2, default=str) if as_json else _summary(analysis_id, result)
    )
    if not result.get("complete", True):
        raise typer.Exit(3)
    return result


# --------------------------------------------------------------------------- member side


@contextmanager
def _member(config: Path | None) -> Iterator[tuple[NodeConfig, Engine]]:
    settings = node_settings(config)
    node = node_admin.node_config_of(settings)
    if node is None or node.hub is None:
        raise ConfigurationError(
            "this node has no hub: a member's [node] section names it (hub = ...), as "
            "`consortia init DIR --join INVITATION` writes"
        )
    with open_engine(settings) as engine:
        yield node, engine


@studies_app.command("list")
def offers_list(config: ConfigOption = None) -> None:
    """The study versions the hub sent, and whether each was accepted."""
    with reporting(), _member(config) as (_, engine):
        offers = hub_studies.list_offers(engine, cli_operator())
    if not offers:
        typer.echo("no study versions from the hub yet")
        return
    rows = [["id", "study", "version", "sha256", "received", "status"]]
    for offer in offers:
        rows.append(
            [
                offer.id,
                offer.study,
                offer.label,
                offer.sha256[:16],
                f"{offer.received_at:%Y-%m-%d %H:%M}",
                offer.status,
            ]
        )
    typer.echo(_rows(rows))


@studies_app.command("accept")
def offers_accept(
    offer_id: Annotated[
        str, typer.Argument(help="The offer's id (`consortia node studies list`).")
    ],
    config: ConfigOption = None,
) -> None:
    """Make a study version the hub signed this node's current version of the study."""
    with reporting(), _member(config) as (node, engine):
        offer = hub_studies.accept_offer(
            engine, cli_operator(Role.STUDY_ADMIN), offer_id, node_admin.node_trust(node), node.hub
        )
    typer.echo(f"accepted {offer.study} v{offer.label} (sha256 {offer.sha256[:16]}...)")
    tables = hub_studies.offer_tables(offer)
    if tables:
        typer.echo(
            f"declared table(s) {', '.join(tables)} (edc: {offer.study}) for the hub's analyses"
        )
