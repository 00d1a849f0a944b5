"""The hub's analyses across its members: which members take part, the request (a study's
plan or an ad-hoc one), and each run kept with its result at the hub.

:func:`run_analysis` is ``consortia analyze --study S --plan P`` at a hub: it records the
analysis (``hub.analysis.start``), runs it as the lead over the signed protocol, each member
reached the way it joined (pushed, or queued in the hub's database for a member that
polls), and keeps the result or the failure (``hub.analysis.finish``), on the hub's ``hub``
chain.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import ConfigurationError, NotFoundError, Problem, ValidationError
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.hub import DatabaseBroker, HubIdentity, HubTransport, MemberTrust
from consortia.federation.transport import NodeHandle, PushTransport
from consortia.services import centre_enforcement
from consortia.services.common import require, utc_now
from consortia.services.hub import HUB_CHAIN, list_members
from consortia.services.unit_of_work import SYSTEM, reading, writing
from consortia.storage.hub import AnalysisRecord, HubRepository, MemberRecord

__all__ = [
    "AnalysisRecord",
    "finish_analysis",
    "get_analysis",
    "list_analyses",
    "plan_request",
    "run_analysis",
    "start_analysis",
    "study_members",
]


def study_members(engine: Engine, study: str) -> list[MemberRecord]:
    """The active members hosting a site of the published study (read as the hub itself:
    it is whom the hub sends the study's analyses to, whoever asks)."""
    with reading(engine, SYSTEM) as work:
        repository = HubRepository(work.connection)
        hosts = set(repository.sites(study).values())
        return [m for m in repository.members() if m.name in hosts and m.status == "active"]


def plan_request(engine: Engine, principal: Principal, study: str, plan: str) -> dict[str, Any]:
    """The analysis ``plan`` of the newest published version of ``study``."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal, statements=True) as work:
        version = HubRepository(work.connection).latest_study(study)
    if version is None:
        raise NotFoundError(f"study {study} has not been published by this hub")
    parsed = load_study_text(version.source, f"{study} v{version.label}")
    request = parsed.analysis_plan.get(plan)
    if request is None:
        raise NotFoundError(
            f"study {study} v{version.label} has no analysis {plan!r} in its plan "
            f"(it has: {', '.join(parsed.analysis_plan) or 'none'})"
        )
    return request.model_dump(mode="json")


def start_analysis(
    engine: Engine,
    principal: Principal,
    *,
    study: str | None,
    plan: str | None,
    request: dict[str, Any],
    transport: dict[str, str],
) -> str:
    """Record an analysis the hub starts across ``transport``'s members; its id."""
    require(principal, Action.HUB_MANAGE, Resource())
    analysis_id = secrets.token_hex(8)
    with writing(engine, principal) as work:
        HubRepository(work.connection).start_analysis(
            analysis_id,
            study=study,
            plan=plan,
            request=request,
            transport=transport,
            by=principal.email,
            now=utc_now(),
        )
        work.audit(
            "hub.analysis.start",
            "analysis",
            analysis_id,
            chain=HUB_CHAIN,
            after={"study": study, "plan": plan, "request": request, "members": transport},
        )
    return analysis_id


def finish_analysis(
    engine: Engine,
    principal: Principal,
    analysis_id: str,
    *,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    """Keep an analysis's result (or why it failed), with its audit event."""
    with writing(engine, principal) as work:
        repository = HubRepository(work.connection)
        now = utc_now()
        repository.finish_analysis(analysis_id, result=result, error=error, now=now)
        for node in (result or {}).get("nodes", []):  # they answered, signed
            repository.seen(str(node["name"]), now)
        summary: dict[str, Any] = {"error": error}
        if result is not None:
            summary = {
                key: result.get(key)
                for key in ("kind", "exact", "complete", "nodes", "missing_nodes", "refusals")
            }
        work.audit(
            "hub.analysis.finish",
            "analysis",
            analysis_id,
            chain=HUB_CHAIN,
            after=json.loads(json.dumps(summary, default=str)),
        )


def list_analyses(engine: Engine, principal: Principal) -> list[AnalysisRecord]:
    """The hub's analyses, newest first (at most 100)."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return HubRepository(work.connection).analyses()


def get_analysis(engine: Engine, principal: Principal, analysis_id: str) -> AnalysisRecord:
    """One of the hub's analyses, with its result."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal, statements=True) as work:
        record = HubRepository(work.connection).analysis(analysis_id)
    if record is None:
        raise NotFoundError(f"analysis {analysis_id!r} does not exist")
    return record


def run_analysis(
    engine: Engine,
    principal: Principal,
    hub: HubIdentity,
    *,
    study: str | None,
    plan: str | None,
    request: dict[str, Any] | None,
    clock_skew_seconds: float,
) -> tuple[str, dict[str, Any]]:
    """Run an analysis across the members hosting ``study``'s sites (every active member
    without a study): the ``plan`` of the study's newest published version, or ``request``.
    Kept at the hub, finished with its result or, when it fails, with the error (and each
    member's refusal with its rule) before the error is raised again. The analysis's id
    and its result (as JSON)."""
    if plan is not None:
        if study is None:
            raise ValidationError(
                [Problem("plan", "a plan is an analysis of a study's plan: name the study")]
            )
        request = plan_request(engine, principal, study, plan)
    if request is None:
        raise ValidationError([Problem("request", "name a study's plan or give a request")])
    if study is not None:
        chosen = study_members(engine, study)
        if not chosen:
            raise ConfigurationError(
                f"study {study} has no active member hosting its sites: publish it with "
                "`consortia hub publish STUDY.yaml --site SITE=MEMBER`"
            )
        centre_enforcement.check_analysis_agreements(engine, study, [m.name for m in chosen])
    else:
        chosen = [m for m in list_members(engine, principal) if m.status == "active"]
    transport = {m.name: m.transport for m in chosen}
    analysis_id = start_analysis(
        engine, principal, study=study, plan=plan, request=request, transport=transport
    )
    try:
        result = asyncio.run(_run(engine, hub, request, chosen, clock_skew_seconds))
    except BaseException as exc:  # kept as failed, then raised as usual
        error = f"{type(exc).__name__}: {exc}"[:2000]
        refused = None
        if isinstance(exc, AnalysisRefused):  # each member's refusal with its rule
            refused = {
                "kind": request.get("kind"),
                "complete": False,
                "nodes": [],
                "missing_nodes": [],
                "refusals": exc.refusals,
            }
        finish_analysis(engine, principal, analysis_id, result=refused, error=error)
        raise
    finish_analysis(engine, principal, analysis_id, result=result, error=None)
    return analysis_id, result


async def _run(
    engine: Engine,
    hub: HubIdentity,
    request: dict[str, Any],
    chosen: list[MemberRecord],
    clock_skew_seconds: float,
) -> dict[str, Any]:
    coordinator = Coordinator(
        hub.name, hub.key, MemberTrust(engine), clock_skew_seconds=clock_skew_seconds
    )
    async with PushTransport() as push:
        transport = HubTransport(
            [(m.name, m.transport) for m in chosen], push, DatabaseBroker(engine)
        )
        result = await coordinator.run_analysis(
            request, [NodeHandle(m.name, m.url) for m in chosen], transport
        )
    return result.to_dict()  # stored at the hub and returned as JSON
