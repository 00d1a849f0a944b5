"""Synchronous entry points: run the federated protocol over local files or remote nodes.

:func:`analyze_local` is what ``consortia analyze SPEC.json --local NAME=FILE.csv …`` calls:
one in-process node per file, each with its own fresh key, policy and audit trail, the
same signed protocol and the same code path as a real federation. Each node serves its file
under ``table_name`` when given (the command line gives ``--table``, or else the request's
``table``), otherwise under the file's stem (``data/a/trial.csv`` → ``trial``).

:func:`analyze_remote` pushes the request to member nodes over HTTP(S).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortia.exceptions import FederationError
from consortia.federation.audit import AuditSink, JsonlAuditSink, MemoryAuditSink
from consortia.federation.coordinator import Coordinator
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.results import AnalysisResult
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64
from consortia.federation.tables import read_table
from consortia.federation.transport import InProcessTransport, NodeHandle, PushTransport

__all__ = [
    "analyze_local",
    "analyze_local_async",
    "analyze_remote",
    "analyze_remote_async",
    "local_nodes",
    "parse_local_tables",
]

T = TypeVar("T")
LEAD = "lead"


def _run(coroutine: Coroutine[Any, Any, T], name: str) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise FederationError(f"{name} cannot run inside an event loop; await {name}_async instead")


def parse_local_tables(specs: Sequence[str]) -> dict[str, Path]:
    """Parse ``--local NAME=FILE`` options into ``{node name: file}``.

    >>> parse_local_tables(["sgh=data/sgh/trial.csv", "nuh=trial.csv"])
    {'sgh': PosixPath('data/sgh/trial.csv'), 'nuh': PosixPath('trial.csv')}
    """
    tables: dict[str, Path] = {}
    for spec in specs:
        name, separator, file = spec.partition("=")
        if not separator or not name.strip() or not file.strip():
            raise FederationError(f"--local {spec!r}: expected NAME=FILE, such as sgh=trial.csv")
        if name.strip() in tables:
            raise FederationError(f"--local {spec!r}: node {name.strip()!r} is given twice")
        tables[name.strip()] = Path(file.strip())
    return tables


def local_nodes(
    tables: Mapping[str, str | Path],
    lead: Coordinator,
    *,
    policy: NodePolicy | None = None,
    audit_dir: Path | None = None,
    table_name: str | None = None,
) -> dict[str, NodeRunner]:
    """In-process nodes over local files, each trusting ``lead`` and trusted by it.

    Each file is served as the table ``table_name`` (default: the file's stem).
    """
    lead_peer = Peer(name=lead.name, public_key=lead.public_key)
    runners: dict[str, NodeRunner] = {}
    for name, path in tables.items():
        table = read_table(Path(path), name=table_name)
        key = generate_key()
        audit: AuditSink = (
            JsonlAuditSink(audit_dir / f"{name}.jsonl", fsync=False)
            if audit_dir is not None
            else MemoryAuditSink()
        )
        runners[name] = NodeRunner(
            name,
            key,
            TrustStore([lead_peer]),
            {table.name: table},
            policy=policy,
            audit=audit,
            clock_skew_seconds=lead.clock_skew_seconds,
        )
        lead.trust.add(Peer(name=name, public_key=public_key_b64(key)))
    return runners


async def analyze_local_async(
    request: Mapping[str, Any],
    tables: Mapping[str, str | Path],
    policy: NodePolicy | None = None,
    *,
    audit_dir: Path | None = None,
    round_timeout: float = 60.0,
    table_name: str | None = None,
) -> AnalysisResult:
    """The coroutine behind :func:`analyze_local`."""
    if not tables:
        raise FederationError("a local analysis needs at least one NAME=FILE table")
    coordinator = Coordinator(LEAD, generate_key(), TrustStore(), round_timeout=round_timeout)
    runners = local_nodes(
        tables, coordinator, policy=policy, audit_dir=audit_dir, table_name=table_name
    )
    return await coordinator.run_analysis(
        request, [NodeHandle(name) for name in runners], InProcessTransport(runners)
    )


def analyze_local(
    request: Mapping[str, Any],
    tables: Mapping[str, str | Path],
    policy: NodePolicy | None = None,
    *,
    audit_dir: Path | None = None,
    round_timeout: float = 60.0,
    table_name: str | None = None,
) -> AnalysisResult:
    """Run ``request`` federated over in-process nodes, one per local CSV/Parquet file.

    ``tables`` maps node names to files; each node serves its file as the table
    ``table_name``, or, when that is ``None``, as a table named after the file's stem.
    ``policy`` applies to every node (DESIGN.md's defaults when ``None``); with
    ``audit_dir`` each node writes ``NAME.jsonl`` there.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name, ages in {"a": range(20, 40), "b": range(30, 50)}.items():
    ...     _ = (folder / name).mkdir()
    ...     _ = (folder / name / "t.csv").write_text("age\\n" + "\\n".join(map(str, ages)))
    >>> result = analyze_local({"kind": "describe", "table": "t", "variable": "age"},
    ...                        {"a": folder / "a" / "t.csv", "b": folder / "b" / "t.csv"})
    >>> result.complete, result.n_by_node, result.estimates.mean
    (True, {'a': 20, 'b': 20}, 34.5)
    """
    return _run(
        analyze_local_async(
            request,
            tables,
            policy,
            audit_dir=audit_dir,
            round_timeout=round_timeout,
            table_name=table_name,
        ),
        "analyze_local",
    )


async def analyze_remote_async(
    request: Mapping[str, Any],
    nodes: Mapping[str, str],
    *,
    key: Ed25519PrivateKey,
    trust: TrustStore,
    lead_name: str = LEAD,
    round_timeout: float = 30.0,
    clock_skew_seconds: float = 300.0,
    client: httpx.AsyncClient | None = None,
) -> AnalysisResult:
    """The coroutine behind :func:`analyze_remote`."""
    coordinator = Coordinator(
        lead_name,
        key,
        trust,
        round_timeout=round_timeout,
        clock_skew_seconds=clock_skew_seconds,
    )
    handles = [NodeHandle(name, url) for name, url in nodes.items()]
    async with PushTransport(client) as transport:
        return await coordinator.run_analysis(request, handles, transport)


def analyze_remote(
    request: Mapping[str, Any],
    nodes: Mapping[str, str],
    *,
    key: Ed25519PrivateKey,
    trust: TrustStore,
    lead_name: str = LEAD,
    round_timeout: float = 30.0,
    clock_skew_seconds: float = 300.0,
) -> AnalysisResult:
    """Push ``request`` to member nodes (``{name: url}``) over HTTP(S) as the lead.

    ``key`` is the lead's key (its public key must be in each node's trust store, under
    ``lead_name``); ``trust`` holds the nodes' public keys, by the same names.
    """
    return _run(
        analyze_remote_async(
            request,
            nodes,
            key=key,
            trust=trust,
            lead_name=lead_name,
            round_timeout=round_timeout,
            clock_skew_seconds=clock_skew_seconds,
        ),
        "analyze_remote",
    )
