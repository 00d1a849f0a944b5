"""Analyses of this node's own captured data, for statisticians: aggregates only.

``run_analysis`` builds the study's EDC table from the sites where the caller may run
analyses (one row per subject: derived variables and non-identifier items, see
:mod:`consortia.federation.edc_tables`) and runs the request through the same signed
protocol, node policy and disclosure control as a federated analysis, with this node as
the only member: a statistician gets exactly what a lead node would, never a record or an
identifier. Each run is audited with the request and what was released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.exceptions import Problem, ValidationError
from consortia.federation.audit import MemoryAuditSink
from consortia.federation.coordinator import Coordinator
from consortia.federation.edc_tables import EdcTableSpec, read_edc_table
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.services.common import audit, require_in_study, visible_study
from consortia.storage.db import READ_ONLY

__all__ = ["THIS_NODE", "run_analysis"]

THIS_NODE = "this-node"


async def _run(request: Mapping[str, Any], runner: NodeRunner, lead: Coordinator) -> Any:
    return await lead.run_analysis(
        request, [NodeHandle(runner.name)], InProcessTransport({runner.name: runner})
    )


def run_analysis(
    engine: Engine,
    principal: Principal,
    study: str,
    request: Mapping[str, Any],
    *,
    policy: NodePolicy | None = None,
) -> dict[str, Any]:
    """Run an analysis request (the JSON of DESIGN.md) on the study's data at this node.

    The request's ``table`` names the EDC table of the study (any name). ``policy`` is the
    node's disclosure policy (DESIGN.md's defaults when ``None``); a refusal names its rule.
    """
    visible_study(principal, study)
    require_in_study(principal, Action.ANALYSIS_RUN, study)
    table_name = request.get("table")
    if not isinstance(table_name, str) or not table_name:
        raise ValidationError([Problem("table", "name the table the request reads")])
    scope = site_scope(principal, study, Action.ANALYSIS_RUN)
    spec = EdcTableSpec(edc=study, sites=None if scope.every_site else sorted(scope.sites))
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        table = read_edc_table(connection, table_name, spec)
    lead = Coordinator("statistician", generate_key(), TrustStore())
    key = generate_key()
    runner = NodeRunner(
        THIS_NODE,
        key,
        TrustStore([Peer(name=lead.name, public_key=lead.public_key)]),
        {table_name: table},
        policy=policy,
        audit=MemoryAuditSink(),
    )
    lead.trust.add(Peer(name=THIS_NODE, public_key=public_key_b64(key)))
    outcome: dict[str, Any]
    try:
        result = dict(asyncio.run(_run(request, runner, lead)))
    except Exception as error:  # audited as refused, then reported as it is
        outcome = {"refused": str(error)}
        raise
    else:
        outcome = {key: result.get(key) for key in ("kind", "exact", "nodes", "estimates")}
        return result
    finally:
        with engine.begin() as connection:
            audit(
                connection,
                principal,
                "analysis.run",
                "analysis",
                str(request.get("kind", "?")),
                chain=study,
                after={"request": dict(request), "sites": spec.sites, **outcome},
            )
