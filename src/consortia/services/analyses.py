"""Analyses of this node's own captured data, for statisticians: aggregates only.

``run_analysis`` builds the study's EDC table from the sites where the caller may run
analyses (one row per subject: derived variables and non-identifier items, see
:mod:`consortia.federation.edc_tables`; an item filled from the allocation holds the
allocation code, or the arm for a caller who may see every arm of those sites) and runs
the request through the same signed protocol, node policy and disclosure control as a
federated analysis, with this node as the only member: a statistician gets exactly what a
lead node would, never a record or an identifier. Each run is audited with the request
and what was released (only the request when the table held arms: :data:`WITHHELD`).

One policy for every path: the node's federation config (the ``[node]`` section of
consortia.toml) gives the policy, the identifier columns and the EDC table declarations,
so the REST endpoint refuses what the federation node refuses. Each release is written
to the node's release ledger and the study's audit chain in one transaction, like a
federated release, and is checked against every earlier release of the study's rows,
whichever path made it (``differencing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.exceptions import Problem, ValidationError
from consortia.federation.approval import DatabaseApprovals
from consortia.federation.coordinator import Coordinator
from consortia.federation.database_audit import DatabaseAuditSink
from consortia.federation.edc_tables import EdcTableSpec, read_edc_table
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.policy import NodePolicy
from consortia.federation.results import AnalysisResult
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.hashchain import sha256_hex
from consortia.services.common import require_in_study, visible_study
from consortia.services.randomisation import sees_arms
from consortia.services.unit_of_work import reading, writing

__all__ = [
    "THIS_NODE",
    "NodeAnalysisConfig",
    "analysis_config",
    "run_analysis",
]

THIS_NODE = "this-node"
#: What the audit trail keeps of the figures of an analysis that showed arms: its readers
#: (auditors, monitors) may be blind, so the request and who ran it, not the figures.
WITHHELD = "withheld: the analysis showed the arms (arm.read); rerun it to see them"
#: Seconds a REST analysis under manual approval waits for the steward before it answers
#: that the request awaits approval (the person asks again once it is approved).
APPROVAL_WAIT = 1.0


async def _run(request: Mapping[str, Any], runner: NodeRunner, lead: Coordinator) -> AnalysisResult:
    return await lead.run_analysis(
        request, [NodeHandle(runner.name)], InProcessTransport({runner.name: runner})
    )


@dataclass(frozen=True)
class NodeAnalysisConfig:
    """What the node's federation config says about analyses of its data."""

    policy: NodePolicy = field(default_factory=NodePolicy)
    tables: Mapping[str, EdcTableSpec] = field(default_factory=dict)
    other_tables: frozenset[str] = frozenset()
    identifiers: frozenset[str] = frozenset()


def analysis_config(config: NodeConfig | None) -> NodeAnalysisConfig:
    """The policy, EDC tables and identifier columns of a node's federation config (the
    ``[node]`` section of consortia.toml); DESIGN.md's default policy for a node without
    one."""
    if config is None:
        return NodeAnalysisConfig()
    edc = {name: spec for name, spec in config.tables.items() if isinstance(spec, EdcTableSpec)}
    identifiers = {name for spec in config.tables.values() for name in spec.identifiers}
    return NodeAnalysisConfig(
        policy=config.policy,
        tables=edc,
        other_tables=frozenset(set(config.tables) - set(edc)),
        identifiers=frozenset(identifiers | set(config.policy.identifier_columns)),
    )


def _table_spec(
    config: NodeAnalysisConfig, study: str, table_name: str, sites: list[str] | None
) -> EdcTableSpec:
    """The table a request names: the node's declaration of it (narrowed to the caller's
    sites) when the node declares one by that name, else the study's whole EDC table."""
    declared = config.tables.get(table_name)
    if declared is None and table_name not in config.other_tables:
        return EdcTableSpec(edc=study, sites=sites)
    if declared is None or declared.edc != study:
        raise ValidationError(
            [Problem("table", f"{table_name!r} is not a table of study {study}'s data")]
        )
    if sites is not None:
        allowed = set(sites) if declared.sites is None else set(sites) & set(declared.sites)
        return declared.model_copy(update={"sites": sorted(allowed)})
    return declared


def _requester(principal: Principal) -> str:
    """The name a person's REST analyses are asked under (a peer name: 200 characters)."""
    name = f"user:{principal.email}"
    return name if len(name) <= 200 else f"user:{sha256_hex(principal.email.encode())}"


def run_analysis(
    engine: Engine,
    principal: Principal,
    study: str,
    request: Mapping[str, Any],
    *,
    policy: NodePolicy | None = None,
    config: NodeAnalysisConfig | None = None,
) -> AnalysisResult:
    """Run an analysis request (the JSON of DESIGN.md) on the study's data at this node.

    The request's ``table`` names a table the node's config declares for the study, or
    any other name for the study's whole table (at the caller's sites). ``config`` is what
    the node's federation config says (:func:`analysis_config`); ``policy``, when
    given, replaces its policy. A refusal names its rule. When the policy asks for manual
    approval, the request waits in the node database's approval queue (shared with its
    federation node and every process of the node) like a federated one: it is answered
    once the data steward approved it, and until then refused as awaiting approval, naming
    the queue entry.
    """
    visible_study(principal, study)
    require_in_study(principal, Action.ANALYSIS_RUN, study)
    config = config or NodeAnalysisConfig()
    if policy is not None:
        config = replace(config, policy=policy)
    table_name = request.get("table")
    if not isinstance(table_name, str) or not table_name:
        raise ValidationError([Problem("table", "name the table the request reads")])
    scope = site_scope(principal, study, Action.ANALYSIS_RUN)
    spec = _table_spec(config, study, table_name, None if scope.every_site else sorted(scope.sites))
    identifiers = config.identifiers | set(spec.identifiers)
    # the arms only for a caller who may see every arm of these sites; codes otherwise
    arms = sees_arms(principal, study, spec.sites)
    with reading(engine, principal) as work:
        table = read_edc_table(
            work.connection, table_name, spec, identifiers=identifiers, arms=arms
        )
    # Each person asks under their own name, so a steward approves a request for them.
    lead = Coordinator(
        _requester(principal),
        generate_key(),
        TrustStore(),
        round_timeout=APPROVAL_WAIT if config.policy.manual_approval else 30.0,
    )
    key = generate_key()
    runner = NodeRunner(
        THIS_NODE,
        key,
        TrustStore([Peer(name=lead.name, public_key=lead.public_key)]),
        {table_name: table},
        policy=config.policy,
        # each release with its ledger rows, on the study's chain, in one transaction
        audit=DatabaseAuditSink(
            engine, chain=study, actor=principal.email, withhold=WITHHELD if arms else None
        ),
        identifiers=identifiers,
        approvals=DatabaseApprovals(engine),
    )
    lead.trust.add(Peer(name=THIS_NODE, public_key=public_key_b64(key)))
    outcome: dict[str, Any]
    try:
        result = asyncio.run(_run(request, runner, lead))
    except Exception as error:  # audited as refused, then reported as it is
        outcome = {"refused": str(error)}
        raise
    else:
        stored = result.to_dict()  # the audit event stores the result's wire form
        outcome = {key: stored[key] for key in ("kind", "exact", "nodes", "estimates")}
        if arms:
            outcome["estimates"] = WITHHELD
        return result
    finally:
        with writing(engine, principal) as work:
            work.audit(
                "analysis.run",
                "analysis",
                str(request.get("kind", "?")),
                chain=study,
                after={"request": dict(request), "sites": spec.sites, **outcome},
            )
