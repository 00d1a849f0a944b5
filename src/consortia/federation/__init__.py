"""Federated analysis: signed protocol, node policy and audit, transports, coordinator.

A node never sends a record. The lead's :class:`Coordinator` sends signed analysis tasks;
each member node's :class:`NodeRunner` verifies them, checks them against its
:class:`NodePolicy`, computes aggregates with :mod:`consortia.stats`, audits the release
and signs the reply. Transports (push over HTTP, pull by long-polling, in-process) share
one interface. :func:`analyze_local` runs the whole protocol over local CSV files.

Modules: ``protocol`` (messages, canonical JSON), ``signing`` (keys, trust store,
verification), ``tables`` (CSV/Parquet → numpy), ``edc_tables`` (tables from the node's
captured data), ``policy``, ``audit``, ``database_audit`` (the audit in the node
database), ``approval``,
``kinds`` (one plug-in per analysis kind), ``node``, ``transport``, ``pull``,
``coordinator``, ``apps`` (FastAPI), ``nodeconfig``, ``local``, ``serve``.
"""

from consortia.federation.approval import (
    ApprovalEntry,
    Approvals,
    ApprovalStatus,
    DatabaseApprovals,
)
from consortia.federation.apps import create_lead_app, create_node_app
from consortia.federation.audit import (
    AuditChainError,
    AuditSink,
    JsonlAuditSink,
    MemoryAuditSink,
    verify_audit_log,
)
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.database_audit import FEDERATION_CHAIN, DatabaseAuditSink
from consortia.federation.edc_tables import EdcTableSpec, NodeTables, read_edc_table
from consortia.federation.kinds import KINDS, AnalysisKind, InvalidRequest, register_kind
from consortia.federation.local import (
    analyze_local,
    analyze_local_async,
    analyze_remote,
    analyze_remote_async,
)
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import (
    NodeConfig,
    build_node,
    load_node_config,
    verify_node_audit,
)
from consortia.federation.policy import NodePolicy, Release, TableAccess
from consortia.federation.protocol import PROTOCOL_VERSION, canonical_json
from consortia.federation.pull import PullBroker, run_pull_worker
from consortia.federation.results import AnalysisResult, NodeCount, Refusal
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    load_key,
    node_identity,
    public_key_b64,
    save_key,
    sign_message,
)
from consortia.federation.tables import ColumnType, Table, TableSpec, read_table
from consortia.federation.transport import (
    InProcessTransport,
    NodeHandle,
    PushTransport,
    Transport,
)

__all__ = [
    "FEDERATION_CHAIN",
    "KINDS",
    "PROTOCOL_VERSION",
    "AnalysisKind",
    "AnalysisRefused",
    "AnalysisResult",
    "ApprovalEntry",
    "ApprovalStatus",
    "Approvals",
    "AuditChainError",
    "AuditSink",
    "ColumnType",
    "Coordinator",
    "DatabaseApprovals",
    "DatabaseAuditSink",
    "EdcTableSpec",
    "InProcessTransport",
    "InvalidRequest",
    "JsonlAuditSink",
    "MemoryAuditSink",
    "MessageRejected",
    "NodeConfig",
    "NodeCount",
    "NodeHandle",
    "NodePolicy",
    "NodeRunner",
    "NodeTables",
    "Peer",
    "PullBroker",
    "PushTransport",
    "Refusal",
    "Release",
    "Table",
    "TableAccess",
    "TableSpec",
    "Transport",
    "TrustStore",
    "Verifier",
    "analyze_local",
    "analyze_local_async",
    "analyze_remote",
    "analyze_remote_async",
    "build_node",
    "canonical_json",
    "create_lead_app",
    "create_node_app",
    "generate_key",
    "load_key",
    "load_node_config",
    "node_identity",
    "public_key_b64",
    "read_edc_table",
    "read_table",
    "register_kind",
    "run_pull_worker",
    "save_key",
    "sign_message",
    "verify_audit_log",
    "verify_node_audit",
]
