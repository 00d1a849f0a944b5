"""Federated analyses run from the operator's shell (``consortia analyze``, the demo): over
local files, one in-process node per file, or as the lead over member nodes by HTTP.

Both go through the same signed protocol, node policy and disclosure control as a node
serving a lead; these functions only gather what the shell gives (files, a policy
document, key and trust files) into the federation's objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from consortia.federation.kinds.survival import KaplanMeierEstimates
from consortia.federation.local import analyze_local, analyze_remote
from consortia.federation.policy import NodePolicy
from consortia.federation.results import AnalysisResult
from consortia.federation.signing import TrustStore, load_key
from consortia.services.unit_of_work import SYSTEM, writing

__all__ = [
    "AnalysisResult",
    "KaplanMeierEstimates",
    "analyze_files",
    "analyze_nodes",
    "audit_analysis_run",
]


def analyze_files(
    request: Mapping[str, Any],
    tables: Mapping[str, str | Path],
    policy: Mapping[str, Any] | None = None,
    *,
    table_name: str | None = None,
) -> AnalysisResult:
    """Run ``request`` over in-process nodes, one per file (``{node: file}``).

    ``policy`` is a node policy document (a node config's ``policy`` section, or the
    section itself) applied to every node; DESIGN.md's defaults when ``None``. A malformed
    policy raises pydantic's ``ValidationError``, naming the field.
    """
    node_policy = None
    if policy is not None:
        node_policy = NodePolicy.model_validate(policy.get("policy", policy))
    return analyze_local(request, tables, node_policy, table_name=table_name)


def analyze_nodes(
    request: Mapping[str, Any], nodes: Mapping[str, str], *, key_file: Path, trust_file: Path
) -> AnalysisResult:
    """Push ``request`` to member nodes (``{name: url}``) as the lead, signing with the key
    in ``key_file`` and checking the nodes' keys against ``trust_file``."""
    return analyze_remote(request, nodes, key=load_key(key_file), trust=TrustStore.load(trust_file))


def audit_analysis_run(
    engine: Engine, chain: str, *, actor: str, name: str, after: Mapping[str, Any]
) -> None:
    """Append an ``analysis.run`` event (the request and what came of it) to ``chain``."""
    with writing(engine, SYSTEM) as work:
        work.audit("analysis.run", "analysis", name, chain=chain, actor=actor, after=dict(after))
