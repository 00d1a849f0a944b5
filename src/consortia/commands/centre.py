"""``consortia centre ...``: the innovation centre at a hub, from its shell.

* ``partner add|list``, ``programme add``, ``agreement add|list|set|attach``;
* ``committee add``, ``project add|list|gate|link`` (a gate that is not the next one, or a
  decision without the committee's quorum, is refused with its reason);
* ``idea submit|list|triage|accept|decline``, ``ip add|portfolio``;
* ``person add|affiliate``, ``placement add``, ``training add``, ``study-training STUDY``;
* ``expiring``: agreements and training that end within 30 days (printed; not emailed).

Each command acts as the node's operator (a node administrator at its shell) through the
centre's services; every change is audited on the hub's chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.domain.centre import MAX_DOCUMENT_BYTES, parse_day
from consortia.exceptions import ConfigurationError, Problem, ValidationError
from consortia.services import centre, centre_ideas, centre_people, centre_projects, node_admin
from consortia.services.common import cli_operator

__all__ = ["centre_app"]

centre_app = typer.Typer(
    help="The innovation centre: partners, agreements, projects, ideas, IP, people.",
    no_args_is_help=True,
)
partner_app = typer.Typer(help="The centre's partners.", no_args_is_help=True)
agreement_app = typer.Typer(help="Agreements between partners.", no_args_is_help=True)
programme_app = typer.Typer(help="Programmes and their studies.", no_args_is_help=True)
committee_app = typer.Typer(help="Steering committees.", no_args_is_help=True)
project_app = typer.Typer(help="Projects through their stage gates.", no_args_is_help=True)
idea_app = typer.Typer(help="Doctor-led ideas.", no_args_is_help=True)
ip_app = typer.Typer(help="Invention disclosures and patent filings.", no_args_is_help=True)
person_app = typer.Typer(help="Staff and their affiliations.", no_args_is_help=True)
placement_app = typer.Typer(help="Exchange placements.", no_args_is_help=True)
training_app = typer.Typer(help="Training records (GCP, protocol).", no_args_is_help=True)
for _name, _group in (
    ("partner", partner_app),
    ("agreement", agreement_app),
    ("programme", programme_app),
    ("committee", committee_app),
    ("project", project_app),
    ("idea", idea_app),
    ("ip", ip_app),
    ("person", person_app),
    ("placement", placement_app),
    ("training", training_app),
):
    centre_app.add_typer(_group, name=_name)

Many = Annotated[list[str] | None, typer.Option()]


@contextmanager
def _centre(config: Path | None) -> Iterator[Engine]:
    """The hub's engine, inside the reporting of errors."""
    with reporting():
        settings = node_settings(config)
        node = node_admin.node_config_of(settings)
        if node is None or node.role != "hub":
            raise ConfigurationError(
                "the innovation centre lives at the hub: this node's [node] section does not "
                'say role = "hub"'
            )
        with open_engine(settings) as engine:
            yield engine


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_day(value, option)
    except ValueError as error:
        raise ValidationError([Problem(option, str(error).split(": ", 1)[1])]) from None


def _required(value: str, option: str) -> date:
    day = _day(value, option)
    assert day is not None
    return day


# ------------------------------------------------------------------ partners, agreements
@partner_app.command("add")
def partner_add(
    code: Annotated[str, typer.Argument(help="A short code, e.g. SGH.")],
    name: Annotated[str, typer.Option(help="The institution's name.")],
    kind: Annotated[str, typer.Option(help="hospital, university, company or government.")],
    country: Annotated[str, typer.Option(help="Its country (SG, CN …).")],
    member: Annotated[str | None, typer.Option(help="The hub member node it runs.")] = None,
    config: ConfigOption = None,
) -> None:
    """Record a partner of the centre."""
    with _centre(config) as engine:
        record = centre.add_partner(
            engine, cli_operator(), code=code, name=name, kind=kind, country=country, member=member
        )
    typer.echo(f"partner {record.code}: {record.name} ({record.kind}, {record.country})")


@partner_app.command("list")
def partner_list(config: ConfigOption = None) -> None:
    """List the centre's partners."""
    with _centre(config) as engine:
        for p in centre.list_partners(engine, cli_operator()):
            typer.echo(f"{p.code}\t{p.kind}\t{p.country}\t{p.member or '-'}\t{p.name}")


@programme_app.command("add")
def programme_add(
    code: Annotated[str, typer.Argument(help="A short code, e.g. CGT.")],
    name: Annotated[str, typer.Option(help="The programme's name.")],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    study: Many = None,
    config: ConfigOption = None,
) -> None:
    """Record a programme and the studies it runs (--study, repeated)."""
    with _centre(config) as engine:
        view = centre.add_programme(
            engine, cli_operator(), code=code, name=name, description=description,
            studies=study or [],
        )  # fmt: skip
    typer.echo(f"programme {view.programme.code}: studies {', '.join(view.studies) or 'none'}")


@agreement_app.command("add")
def agreement_add(
    code: Annotated[str, typer.Argument(help="A short code, e.g. DSA-2026-01.")],
    title: Annotated[str, typer.Option(help="Its title.")],
    kind: Annotated[
        str, typer.Option(help="mou, collaboration, data_sharing, data_transfer, clinical_trial.")
    ],
    starts: Annotated[str, typer.Option(help="First day in force (YYYY-MM-DD).")],
    party: Annotated[list[str], typer.Option(help="A party's partner code (repeat).")],
    ends: Annotated[str | None, typer.Option(help="Last day in force (YYYY-MM-DD).")] = None,
    status: Annotated[str, typer.Option(help="active, draft or terminated.")] = "active",
    study: Many = None,
    programme: Many = None,
    config: ConfigOption = None,
) -> None:
    """Record an agreement; a data-sharing one names the studies or programmes it covers."""
    with _centre(config) as engine:
        view = centre.add_agreement(
            engine, cli_operator(), code=code, title=title, kind=kind, status=status,
            starts_on=_required(starts, "--starts"), ends_on=_day(ends, "--ends"),
            parties=party, studies=study or [], programmes=programme or [],
        )  # fmt: skip
    typer.echo(f"agreement {view.agreement.code}: {view.state}")


@agreement_app.command("list")
def agreement_list(config: ConfigOption = None) -> None:
    """List the agreements with their state today."""
    with _centre(config) as engine:
        for v in centre.list_agreements(engine, cli_operator()):
            a = v.agreement
            covers = ",".join(v.studies + v.programmes) or "-"
            typer.echo(
                f"{a.code}\t{a.kind}\t{v.state}\t{a.starts_on}..{a.ends_on or ''}\t"
                f"{','.join(v.parties)}\t{covers}\t{a.title}"
            )


@agreement_app.command("set")
def agreement_set(
    code: Annotated[str, typer.Argument(help="The agreement.")],
    status: Annotated[str | None, typer.Option(help="active, draft or terminated.")] = None,
    ends: Annotated[str | None, typer.Option(help="A new last day (a renewal).")] = None,
    config: ConfigOption = None,
) -> None:
    """Change an agreement's status or its last day."""
    with _centre(config) as engine:
        view = centre.set_agreement_status(
            engine, cli_operator(), code, status=status, ends_on=_day(ends, "--ends")
        )
    typer.echo(f"agreement {code}: {view.state}, ends {view.agreement.ends_on or 'never'}")


@agreement_app.command("attach")
def agreement_attach(
    code: Annotated[str, typer.Argument(help="The agreement.")],
    file: Annotated[Path, typer.Argument(help="A PDF, Word, PNG, JPEG or text file.")],
    config: ConfigOption = None,
) -> None:
    """Attach a document to an agreement; it is kept with its SHA-256."""
    with _centre(config) as engine:
        if not file.is_file():
            raise ValidationError([Problem(str(file), "no such file")])
        if file.stat().st_size > MAX_DOCUMENT_BYTES:
            raise ValidationError([Problem(str(file), "larger than 10 MiB")])
        record = centre.attach_document(
            engine, cli_operator(), owner_type="agreement", owner=code, filename=file.name,
            content=file.read_bytes(),
        )  # fmt: skip
    typer.echo(f"document {record.id}: {record.filename} sha256 {record.sha256}")


@centre_app.command("expiring")
def expiring(config: ConfigOption = None) -> None:
    """List the agreements and training that end within 30 days (not emailed: no SMTP)."""
    with _centre(config) as engine:
        agreements = centre.expiring_agreements(engine, cli_operator())
        training = centre_people.expiring_training(engine, cli_operator())
    for v in agreements:
        typer.echo(f"agreement {v.agreement.code} ends {v.agreement.ends_on}: {v.agreement.title}")
    for t in training:
        typer.echo(f"training {t.email} {t.kind} {t.study or ''} expires {t.expires_on}: {t.title}")
    if not agreements and not training:
        typer.echo("nothing ends within 30 days")


# ------------------------------------------------------------------ committees, projects
@committee_app.command("add")
def committee_add(
    code: Annotated[str, typer.Argument(help="A short code, e.g. SC.")],
    name: Annotated[str, typer.Option(help="Its name.")],
    quorum: Annotated[int, typer.Option(help="Members present for a decision to stand.")],
    member: Annotated[list[str], typer.Option(help="A member's email (repeat).")],
    config: ConfigOption = None,
) -> None:
    """Record a steering committee (its members are people of the centre)."""
    with _centre(config) as engine:
        view = centre_projects.add_committee(
            engine, cli_operator(), code=code, name=name, quorum=quorum, members=member
        )
    typer.echo(f"committee {view.committee.code}: quorum {view.committee.quorum} of "
               f"{len(view.members)}")  # fmt: skip


@project_app.command("add")
def project_add(
    code: Annotated[str, typer.Argument(help="A short code.")],
    title: Annotated[str, typer.Option(help="Its title.")],
    committee: Annotated[str, typer.Option(help="The steering committee's code.")],
    programme: Annotated[str | None, typer.Option(help="Its programme's code.")] = None,
    config: ConfigOption = None,
) -> None:
    """Start a project at the first gate (idea)."""
    with _centre(config) as engine:
        view = centre_projects.add_project(
            engine, cli_operator(), code=code, title=title, committee=committee,
            programme=programme,
        )  # fmt: skip
    typer.echo(f"project {view.project.code} at {view.project.stage}; next {view.next_stage}")


@project_app.command("list")
def project_list(config: ConfigOption = None) -> None:
    """List the projects with their stage and status."""
    with _centre(config) as engine:
        for v in centre_projects.list_projects(engine, cli_operator()):
            p = v.project
            typer.echo(f"{p.code}\t{p.stage}\t{p.status}\t{v.committee}\t{p.title}")


@project_app.command("gate")
def project_gate(
    code: Annotated[str, typer.Argument(help="The project.")],
    to: Annotated[str, typer.Option("--to", help="The gate (only the next one).")],
    decision: Annotated[str, typer.Option(help="go, hold or stop.")],
    rationale: Annotated[str, typer.Option(help="Why.")],
    present: Annotated[list[str], typer.Option(help="A member present (repeat).")],
    document: Many = None,
    on: Annotated[str | None, typer.Option(help="The day decided (default today).")] = None,
    config: ConfigOption = None,
) -> None:
    """Record the steering committee's decision on a project's next gate."""
    with _centre(config) as engine:
        view = centre_projects.record_gate(
            engine, cli_operator(), code, to_stage=to, decision=decision, rationale=rationale,
            present=present, documents=document or [], decided_on=_day(on, "--on"),
        )  # fmt: skip
    typer.echo(f"project {code}: {decision}; now at {view.project.stage} ({view.project.status})")


@project_app.command("link")
def project_link(
    code: Annotated[str, typer.Argument(help="The project.")],
    kind: Annotated[str, typer.Option(help="study, partner, person, agreement or ip.")],
    target: Annotated[str, typer.Option(help="Its code, email or id.")],
    config: ConfigOption = None,
) -> None:
    """Link a project to a study, partner, person, agreement or IP record."""
    with _centre(config) as engine:
        centre_projects.link_project(engine, cli_operator(), code, kind=kind, target=target)
    typer.echo(f"project {code} linked to {kind} {target}")


# ------------------------------------------------------------------ ideas, IP
@idea_app.command("submit")
def idea_submit(
    title: Annotated[str, typer.Option(help="A short title.")],
    problem: Annotated[str, typer.Option(help="The clinical problem.")],
    solution: Annotated[str, typer.Option(help="The proposed solution.")],
    patients: Annotated[str, typer.Option(help="The patients affected.")],
    needs: Annotated[str, typer.Option(help="What is needed.")],
    config: ConfigOption = None,
) -> None:
    """Submit an idea (as the operator)."""
    with _centre(config) as engine:
        view = centre_ideas.submit_idea(
            engine, cli_operator(), title=title, problem=problem, solution=solution,
            patients=patients, needs=needs,
        )  # fmt: skip
    typer.echo(f"idea {view.idea.id}: {view.idea.status}")


@idea_app.command("list")
def idea_list(config: ConfigOption = None) -> None:
    """List the ideas, newest first."""
    with _centre(config) as engine:
        for v in centre_ideas.list_ideas(engine, cli_operator()):
            i = v.idea
            typer.echo(f"{i.id}\t{i.status}\t{i.clinician}\t{v.project or '-'}\t{i.title}")


@idea_app.command("triage")
def idea_triage(
    idea: Annotated[int, typer.Argument(help="The idea's number.")],
    programme: Annotated[str | None, typer.Option(help="The programme's code.")] = None,
    partner: Many = None,
    config: ConfigOption = None,
) -> None:
    """Match an idea to partners (--partner, repeated) and a programme."""
    with _centre(config) as engine:
        view = centre_ideas.triage_idea(
            engine, cli_operator(), idea, programme=programme, partners=partner or []
        )
    typer.echo(f"idea {idea}: {view.idea.status}; partners {', '.join(view.partners) or 'none'}")


@idea_app.command("accept")
def idea_accept(
    idea: Annotated[int, typer.Argument(help="The idea's number.")],
    project: Annotated[str, typer.Option(help="The new project's code.")],
    committee: Annotated[str, typer.Option(help="Its steering committee.")],
    config: ConfigOption = None,
) -> None:
    """Make a triaged idea a project at the first gate."""
    with _centre(config) as engine:
        centre_ideas.accept_idea(engine, cli_operator(), idea, project=project, committee=committee)
    typer.echo(f"idea {idea} became project {project}")


@idea_app.command("decline")
def idea_decline(
    idea: Annotated[int, typer.Argument(help="The idea's number.")],
    reason: Annotated[str, typer.Option(help="Why (the clinician reads it).")],
    config: ConfigOption = None,
) -> None:
    """Decline an idea with its reason."""
    with _centre(config) as engine:
        centre_ideas.decline_idea(engine, cli_operator(), idea, reason=reason)
    typer.echo(f"idea {idea} declined")


@ip_app.command("add")
def ip_add(
    kind: Annotated[str, typer.Option(help="disclosure or patent.")],
    title: Annotated[str, typer.Option(help="The invention's title.")],
    inventor: Annotated[list[str], typer.Option(help="An inventor (repeat).")],
    status: Annotated[str, typer.Option(help="disclosed, filed, published, granted …")],
    number: Annotated[str | None, typer.Option(help="The application number.")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="SG, CN, EP, WO …")] = None,
    filed: Annotated[str | None, typer.Option(help="Filing day (YYYY-MM-DD).")] = None,
    granted: Annotated[str | None, typer.Option(help="Grant day (YYYY-MM-DD).")] = None,
    family: Annotated[str | None, typer.Option(help="The patent family.")] = None,
    project: Annotated[str | None, typer.Option(help="The project's code.")] = None,
    config: ConfigOption = None,
) -> None:
    """Record an invention disclosure or a patent filing."""
    with _centre(config) as engine:
        view = centre_ideas.add_ip(
            engine, cli_operator(), kind=kind, title=title, inventors=inventor, status=status,
            application_number=number, jurisdiction=jurisdiction,
            filed_on=_day(filed, "--filed"), granted_on=_day(granted, "--granted"),
            family=family, project=project,
        )  # fmt: skip
    typer.echo(f"{view.ip.kind} {view.ip.id}: {view.ip.status}")


@ip_app.command("portfolio")
def ip_portfolio(config: ConfigOption = None) -> None:
    """Count the disclosures and patents by status and by jurisdiction."""
    with _centre(config) as engine:
        counts = centre_ideas.portfolio(engine, cli_operator())
    typer.echo(f"total {counts.total}")
    for status, n in counts.by_status.items():
        typer.echo(f"status {status}\t{n}")
    for place, n in counts.by_jurisdiction.items():
        typer.echo(f"jurisdiction {place}\t{n}")


# ------------------------------------------------------------------ people, training
@person_app.command("add")
def person_add(
    email: Annotated[str, typer.Argument(help="Their email (as on their account).")],
    name: Annotated[str, typer.Option(help="Their name.")],
    config: ConfigOption = None,
) -> None:
    """Record a member of staff."""
    with _centre(config) as engine:
        person = centre_people.add_person(engine, cli_operator(), email=email, name=name)
    typer.echo(f"person {person.email}")


@person_app.command("affiliate")
def person_affiliate(
    email: Annotated[str, typer.Argument(help="The person.")],
    partner: Annotated[str, typer.Option(help="The partner's code.")],
    title: Annotated[str, typer.Option(help="Their title there.")],
    config: ConfigOption = None,
) -> None:
    """Affiliate a person with a partner (a person may hold several)."""
    with _centre(config) as engine:
        view = centre_people.affiliate(
            engine, cli_operator(), email=email, partner=partner, title=title
        )
    typer.echo(f"{email}: " + ", ".join(f"{p} ({t})" for p, t in view.affiliations))


@placement_app.command("add")
def placement_add(
    email: Annotated[str, typer.Argument(help="The person.")],
    source: Annotated[str, typer.Option("--from", help="The partner they leave.")],
    target: Annotated[str, typer.Option("--to", help="The partner they join.")],
    starts: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")],
    ends: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD).")],
    purpose: Annotated[str, typer.Option(help="Why.")],
    config: ConfigOption = None,
) -> None:
    """Record an exchange placement."""
    with _centre(config) as engine:
        record = centre_people.add_placement(
            engine, cli_operator(), email=email, from_partner=source, to_partner=target,
            starts_on=_required(starts, "--starts"), ends_on=_required(ends, "--ends"),
            purpose=purpose,
        )  # fmt: skip
    typer.echo(f"placement {record.id}: {email} {source} -> {target}")


@training_app.command("add")
def training_add(
    email: Annotated[str, typer.Argument(help="The person.")],
    kind: Annotated[str, typer.Option(help="gcp or protocol.")],
    title: Annotated[str, typer.Option(help="The course.")],
    completed: Annotated[str, typer.Option(help="Day completed (YYYY-MM-DD).")],
    expires: Annotated[str | None, typer.Option(help="Day it expires.")] = None,
    study: Annotated[str | None, typer.Option(help="The study (protocol training).")] = None,
    config: ConfigOption = None,
) -> None:
    """Record a GCP certificate or a study's protocol training."""
    with _centre(config) as engine:
        record = centre_people.add_training(
            engine, cli_operator(), email=email, kind=kind, title=title, study=study,
            completed_on=_required(completed, "--completed"),
            expires_on=_day(expires, "--expires"),
        )  # fmt: skip
    typer.echo(f"training {record.id}: {record.email} {record.kind} until {record.expires_on}")


@centre_app.command("study-training")
def study_training(
    study: Annotated[str, typer.Argument(help="The study.")],
    gcp: Annotated[bool, typer.Option("--gcp/--no-gcp", help="Needs a valid GCP.")] = True,
    protocol: Annotated[
        bool, typer.Option("--protocol/--no-protocol", help="Needs its protocol training.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Say what granting a role at STUDY needs (a valid GCP certificate, its protocol training)."""
    with _centre(config) as engine:
        rule = centre_people.set_study_training(
            engine, cli_operator(), study=study, requires_gcp=gcp, requires_protocol=protocol
        )
    typer.echo(
        f"study {rule.study}: GCP {'required' if rule.requires_gcp else 'not required'}, "
        f"protocol training {'required' if rule.requires_protocol else 'not required'}"
    )
