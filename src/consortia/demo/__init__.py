"""``consortia demo``: a consortium of real processes on loopback, built the way users build one.

1. a hub (the coordinating centre) and two hospital nodes, Singapore and Shanghai (fictional
   hospitals), each made by ``consortia init`` in its own folder with its own
   ``consortia.toml``, signing key and SQLite database, and served by its own ``consortia
   serve`` process on a free loopback port; the hospitals join by invitation (``consortia
   init DIR --join INVITATION``), Singapore reached by push, Shanghai polling its hub
   (``transport = "pull"``: it only connects out);
2. the hub publishes ``cart-lbcl`` (sites SG01 and SH01) and ``glucose-iso15197`` (SG01),
   signed; Singapore's administrator accepts each version, Shanghai's policy accepts its
   hub's versions; accepting declares the tables the study's plan reads; the hub seals
   cart-lbcl's randomisation lists;
3. each hospital's people (a coordinator, an investigator, a monitor) get accounts, and
   the coordinator enters synthetic subjects (``domain/synthetic.py``) through the node's
   HTTP API with an API token: subjects enrolled, every form saved and checked (soft
   problems open queries), statuses changed through their gates, cart-lbcl's subjects
   randomised through the hub (the form's arm is the allocation's); the investigator signs
   each subject's screening form (eligibility; demographics for the glucose study) as one
   series per site and study, ``POST .../signatures`` with the password once (up to
   ``MAX_SIGNED_AT_ONCE`` forms a call, one signature and audit event each), and the
   monitor raises a query the coordinator answers, so the audit trails hold real work;
4. every analysis of both studies' plans runs from the hub across the members hosting the
   study, and its result is kept at the hub (its pages show it). With the default
   :data:`SUBJECTS_PER_SITE` every one is released; with fewer subjects a hospital's
   disclosure policy may refuse one (a count below its minimum cell count), and the demo
   says so under it.

It prints the URLs and the logins (passwords made at run time, shown once) and serves until
Ctrl-C, then stops every process it started; with ``serve=False`` it stops them after the
analyses. Whatever happens, no process is left behind: each child is terminated, waited
for and killed if it must be, and asked by the kernel to die with the demo (Linux). A
second run rebuilds the folder (a folder the demo did not make is never deleted).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consortia.auth.principal import Role
from consortia.demo.entry import STUDIES, enter_site, new_password, people, sqlite_url
from consortia.demo.processes import (
    START_SECONDS,
    DemoError,
    DemoNode,
    Processes,
    run_consortia,
    settings_of,
    stopped_on_sigterm,
)
from consortia.domain.templates import load_template, template_text
from consortia.exceptions import ConsortiaError, PolicyRefusal
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, hub_studies, node_admin, randomisation_hub
from consortia.services.common import cli_operator
from consortia.services.database import opened_database

__all__ = ["DemoError", "DemoNode", "DemoReport", "run_demo"]

MARKER = ".consortia-demo"
#: Subjects per site and study by default: the fewest for which, with the default seed,
#: every count each plan's analysis releases at a hospital reaches the policy's minimum
#: cell count (5): pfs_cox releases each hospital's censored subjects (2 of 20, 6 and 7 of
#: 40), cr_day28 its complete responses at day 28 (2 of 20 at Shanghai, 15 of 40).
SUBJECTS_PER_SITE = 40
#: What the demo says under an analysis a hospital's disclosure policy refused.
WHY_REFUSED = {
    "min_cell_count": (
        "the hospitals' disclosure policy refuses to release a count below its minimum "
        "cell count: this is the rule at work on few subjects, not a fault; more subjects "
        "per site (--subjects) give larger counts"
    ),
}
_Echo = Callable[[str], object]


@dataclass
class DemoReport:
    """What the demo did: its nodes, and each analysis's result (by study and plan)."""

    nodes: list[DemoNode]
    results: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subjects: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, study) -> n


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_folder(folder: Path) -> None:
    """Make ``folder`` empty for a new run: a folder an earlier demo made is rebuilt; one
    holding anything else is refused, never deleted."""
    if folder.exists():
        if not folder.is_dir():
            raise DemoError(f"{folder} is a file: choose another --folder")
        if any(folder.iterdir()) and not (folder / MARKER).exists():
            raise DemoError(
                f"{folder} holds files the demo did not make: choose another --folder "
                "(a folder an earlier demo made is rebuilt)"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `consortia demo`; rebuilt at each run\n")


def _init(node: DemoNode, *extra: str) -> str:
    """``consortia init`` for ``node``, its administrator's password made now."""
    email, password = f"admin@{node.name}.demo", new_password()
    node.logins["node_admin"] = (email, password)
    secret = node.folder.parent / f".{node.name}-password"
    descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    try:
        return run_consortia(
            "init",
            str(node.folder),
            "--node-name",
            node.name,
            "--node-url",
            node.url,
            "--admin-email",
            email,
            "--admin-name",
            f"Administrator, {node.institution}",
            "--admin-password-file",
            str(secret),
            "--environment",
            "development",
            *extra,
            what=f"creating {node.name}",
        )
    finally:
        secret.unlink(missing_ok=True)


def _publish(hub: DemoNode, template: str, sites: dict[str, str], echo: _Echo) -> None:
    """Sign a study version at the hub and deliver it to the members hosting its sites."""
    settings = settings_of(hub)
    config = node_admin.node_config_of(settings)
    assert config is not None
    identity = hub_service.hub_identity(settings, config)
    path = hub.folder.parent / "studies" / f"{template}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(template_text(template), encoding="utf-8")
    with opened_database(sqlite_url(hub)) as engine:
        operator = cli_operator()
        record, _, targets = hub_studies.publish_study(
            engine, operator, identity, path.read_text(encoding="utf-8"), sites, file=str(path)
        )
        answers = hub_studies.deliver_study(
            engine,
            identity,
            record,
            sites,
            targets,
            wait=START_SECONDS,
            clock_skew_seconds=settings.clock_skew_seconds,
        )
        for member, status, detail in answers:
            hub_studies.record_delivery(engine, record.study, record.sha256, member, status, detail)
    said = ", ".join(f"{member}: {status}" for member, status, _ in answers)
    echo(f"  published {record.study} v{record.label} to {', '.join(sites.values())} ({said})")
    refused = [f"{m} ({status}: {detail})" for m, status, detail in answers if status == "refused"]
    if refused or any(status not in ("pending", "accepted") for _, status, _ in answers):
        raise DemoError(f"{record.study} was not taken by every member: {answers}")


def _seal(hub: DemoNode, study: str, seed: int, echo: _Echo) -> None:
    """Generate and seal the study's randomisation lists at the hub, so the hospitals
    randomise their subjects through it (the arm is never typed)."""
    with opened_database(sqlite_url(hub)) as engine:
        randomisation_hub.generate(engine, cli_operator(Role.UNBLINDED_STATISTICIAN), study, seed)
    echo(f"  {study}: randomisation lists sealed at the hub")


def _accept_pending(node: DemoNode, echo: _Echo) -> None:
    """The hospital's administrator accepts each study version its hub sent."""
    settings = settings_of(node)
    config = node_admin.node_config_of(settings)
    assert config is not None
    assert config.hub is not None
    with opened_database(sqlite_url(node)) as engine:
        for offer in hub_studies.list_offers(engine, cli_operator()):
            if offer.status != "pending":
                continue
            hub_studies.accept_offer(
                engine,
                cli_operator(Role.STUDY_ADMIN),
                offer.id,
                node_admin.node_trust(config),
                config.hub,
            )
            tables = ", ".join(hub_studies.offer_tables(offer))
            echo(f"  {node.name}: accepted {offer.study} v{offer.label}; declared table {tables}")


def _analyses(hub: DemoNode, report: DemoReport, echo: _Echo) -> None:
    """Every analysis of both studies' plans, run from the hub and kept there."""
    settings = settings_of(hub)
    config = node_admin.node_config_of(settings)
    assert config is not None
    identity = hub_service.hub_identity(settings, config)
    with opened_database(sqlite_url(hub)) as engine:
        for template, study in STUDIES.items():
            for plan in load_template(template).analysis_plan:
                try:
                    analysis_id, result = hub_analyses.run_analysis(
                        engine,
                        cli_operator(),
                        identity,
                        study=study,
                        plan=plan,
                        request=None,
                        clock_skew_seconds=settings.clock_skew_seconds,
                    )
                except ConsortiaError as error:
                    echo(f"  {study} {plan}: refused: {error}")
                    rule = error.rule if isinstance(error, PolicyRefusal) else None
                    if rule in WHY_REFUSED:
                        echo(f"    {WHY_REFUSED[rule]}")
                    report.results[(study, plan)] = {"error": str(error), "rule": rule}
                    continue
                nodes = ", ".join(f"{n['name']} n={n['n']}" for n in result.get("nodes", []))
                state = "complete" if result.get("complete") else "INCOMPLETE"
                echo(f"  {study} {plan} ({result.get('kind')}): {state}, {nodes}")
                echo(f"    {hub.url}/hub/analyses/{analysis_id}")
                report.results[(study, plan)] = {"analysis": analysis_id, **result}


def _logins(report: DemoReport, echo: _Echo) -> None:
    echo("\nThe consortium is running on loopback:")
    for node in report.nodes:
        how = "hub" if not node.site else f"{node.transport}, site {node.site}"
        echo(f"  {node.name:4} {node.url}  {node.institution} ({how})")
        for role, (email, password) in node.logins.items():
            echo(f"         {role:12} {email:28} {password}")
    echo("Passwords were made for this run and are shown only here.")


def run_demo(
    folder: Path,
    *,
    subjects_per_site: int = SUBJECTS_PER_SITE,
    seed: int = 2026,
    serve: bool = True,
    echo: _Echo = print,
) -> DemoReport:
    """Build the demo consortium in ``folder``, enter data, run the plans' analyses from
    the hub; serve until interrupted (``serve``) and stop every process."""
    folder = folder.resolve()
    _fresh_folder(folder)
    hub = DemoNode("hub", "Lion City–Huangpu Cell Therapy Consortium", "SG", folder / "hub", 0)
    sgh = DemoNode(
        "sgh", "Merlion General Hospital (fictional)", "SG", folder / "sgh", 0, site="SG01"
    )
    shh = DemoNode(
        "shh",
        "Huangpu River Hospital (fictional)",
        "CN",
        folder / "shh",
        0,
        site="SH01",
        transport="pull",
        accept_studies="auto",
    )
    for node in (hub, sgh, shh):
        node.port = _free_port()
    report = DemoReport([hub, sgh, shh])
    processes = Processes()
    with stopped_on_sigterm():
        try:
            _build(report, processes, subjects_per_site, seed, echo)
            _logins(report, echo)
            if serve:
                echo("Serving until Ctrl-C.")
                while not processes.exited():
                    time.sleep(0.5)
                raise DemoError(f"{', '.join(processes.exited())} stopped unexpectedly")
        except KeyboardInterrupt:
            echo("\nstopping the consortium's processes")
        finally:
            processes.stop()
    return report


def _build(report: DemoReport, processes: Processes, subjects: int, seed: int, echo: _Echo) -> None:
    hub, sgh, shh = report.nodes
    echo(f"1. The hub and two hospitals, each its own process ({hub.folder.parent})")
    said = _init(hub, "--hub", "--name", hub.institution)
    echo("  " + said.split("hub key fingerprint ")[1].splitlines()[0].join(["hub key ", ""]))
    processes.serve(hub)
    with opened_database(sqlite_url(hub)) as engine:
        settings = settings_of(hub)
        config = node_admin.node_config_of(settings)
        assert config is not None
        identity = hub_service.hub_identity(settings, config)
        invitations = {
            member.name: hub_service.create_invitation(
                engine, cli_operator(), identity, member.name, hours=1
            )[0].encode()
            for member in (sgh, shh)
        }
    for member in (sgh, shh):
        extra = ["--transport", member.transport, "--accept-studies", member.accept_studies]
        said = _init(
            member,
            "--join",
            invitations[member.name],
            "--institution",
            member.institution,
            "--country",
            member.country,
            *extra,
        )
        joined = next(line for line in said.splitlines() if line.startswith("joined hub"))
        echo(f"  {member.name} joined by invitation ({member.transport}): {joined}")
        processes.serve(member)
    echo("2. Studies published from the hub, accepted at the hospitals")
    _publish(hub, "cart-lbcl", {"SG01": "sgh", "SH01": "shh"}, echo)
    _seal(hub, STUDIES["cart-lbcl"], seed, echo)
    _publish(hub, "glucose-iso15197", {"SG01": "sgh"}, echo)
    _accept_pending(sgh, echo)
    echo(f"3. Synthetic subjects entered through each hospital's API ({subjects} per study)")
    studies_at = {"sgh": ["CART-LBCL", "GLUCOSE-ISO15197"], "shh": ["CART-LBCL"]}
    staff = {node.name: people(node, studies_at[node.name]) for node in (sgh, shh)}
    jobs = [(sgh, "cart-lbcl", 0), (shh, "cart-lbcl", 1), (sgh, "glucose-iso15197", 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            (node.name, STUDIES[template]): pool.submit(
                enter_site, node, template, subjects, seed + offset, staff[node.name]
            )
            for node, template, offset in jobs
        }
        for key, future in futures.items():
            report.subjects[key] = future.result()
            echo(f"  {key[0]}: {report.subjects[key]} subjects of {key[1]}")
    echo("4. The plans' analyses, run from the hub")
    _analyses(hub, report, echo)
