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
``coordinator``, ``apps`` (FastAPI; ``consortia serve`` mounts a node's endpoints),
``nodeconfig`` (the ``[node]`` section of consortia.toml), ``node_yaml`` (the YAML config
of earlier releases, read only to migrate it), ``local``.

The names below are imported from their modules when first used (``__getattr__``), so
importing one module (``consortia.federation.signing``) does not import every other one:
the apps (FastAPI), the transports (httpx) and the analysis kinds (scipy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consortia.lazy_names import lazy_names

if TYPE_CHECKING:
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
        node_config_from_settings,
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
    "node_config_from_settings",
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

#: The module that defines each public name, imported on first use (:func:`__getattr__`).
_MODULES: dict[str, str] = {
    "ApprovalEntry": "consortia.federation.approval",
    "Approvals": "consortia.federation.approval",
    "ApprovalStatus": "consortia.federation.approval",
    "DatabaseApprovals": "consortia.federation.approval",
    "create_lead_app": "consortia.federation.apps",
    "create_node_app": "consortia.federation.apps",
    "AuditChainError": "consortia.federation.audit",
    "AuditSink": "consortia.federation.audit",
    "JsonlAuditSink": "consortia.federation.audit",
    "MemoryAuditSink": "consortia.federation.audit",
    "verify_audit_log": "consortia.federation.audit",
    "AnalysisRefused": "consortia.federation.coordinator",
    "Coordinator": "consortia.federation.coordinator",
    "FEDERATION_CHAIN": "consortia.federation.database_audit",
    "DatabaseAuditSink": "consortia.federation.database_audit",
    "EdcTableSpec": "consortia.federation.edc_tables",
    "NodeTables": "consortia.federation.edc_tables",
    "read_edc_table": "consortia.federation.edc_tables",
    "KINDS": "consortia.federation.kinds",
    "AnalysisKind": "consortia.federation.kinds",
    "InvalidRequest": "consortia.federation.kinds",
    "register_kind": "consortia.federation.kinds",
    "analyze_local": "consortia.federation.local",
    "analyze_local_async": "consortia.federation.local",
    "analyze_remote": "consortia.federation.local",
    "analyze_remote_async": "consortia.federation.local",
    "NodeRunner": "consortia.federation.node",
    "NodeConfig": "consortia.federation.nodeconfig",
    "build_node": "consortia.federation.nodeconfig",
    "node_config_from_settings": "consortia.federation.nodeconfig",
    "verify_node_audit": "consortia.federation.nodeconfig",
    "NodePolicy": "consortia.federation.policy",
    "Release": "consortia.federation.policy",
    "TableAccess": "consortia.federation.policy",
    "PROTOCOL_VERSION": "consortia.federation.protocol",
    "canonical_json": "consortia.federation.protocol",
    "PullBroker": "consortia.federation.pull",
    "run_pull_worker": "consortia.federation.pull",
    "AnalysisResult": "consortia.federation.results",
    "NodeCount": "consortia.federation.results",
    "Refusal": "consortia.federation.results",
    "MessageRejected": "consortia.federation.signing",
    "Peer": "consortia.federation.signing",
    "TrustStore": "consortia.federation.signing",
    "Verifier": "consortia.federation.signing",
    "generate_key": "consortia.federation.signing",
    "load_key": "consortia.federation.signing",
    "node_identity": "consortia.federation.signing",
    "public_key_b64": "consortia.federation.signing",
    "save_key": "consortia.federation.signing",
    "sign_message": "consortia.federation.signing",
    "ColumnType": "consortia.federation.tables",
    "Table": "consortia.federation.tables",
    "TableSpec": "consortia.federation.tables",
    "read_table": "consortia.federation.tables",
    "InProcessTransport": "consortia.federation.transport",
    "NodeHandle": "consortia.federation.transport",
    "PushTransport": "consortia.federation.transport",
    "Transport": "consortia.federation.transport",
}


__getattr__, __dir__ = lazy_names(__name__, _MODULES, __all__)
