"""The node operator's federation use cases: its configuration, key, peers and witnesses.

``consortia node``, ``consortia audit`` and ``consortia config`` call these; they never
reach into ``federation`` themselves (tests/test_layers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from consortia.config import CONFIG_FILE_NAME, Settings, load_settings
from consortia.exceptions import ConfigurationError, ConsortiaError
from consortia.federation import hub, node_yaml, nodeconfig, signing
from consortia.federation.hub import JoinAnswer
from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.protocol import PROTOCOL_VERSION
from consortia.federation.tables import TableSpec, load_table
from consortia.federation.witness import (
    HeadWitness,
    PeerOutcome,
    WitnessReport,
    push_heads,
    verify_heads,
)

__all__ = [
    "PROTOCOL",
    "JoinAnswer",
    "NodeConfig",
    "create_node_key",
    "hub_of_invitation",
    "join_consortium",
    "key_fingerprint",
    "new_node_key",
    "node_config",
    "node_config_of",
    "node_identity",
    "node_problems",
    "node_trust",
    "open_node_database",
    "read_node_yaml",
    "trust_peer",
    "verify_node_audit",
    "verify_witnessed_heads",
    "witness_heads",
]


def node_config(path: Path) -> NodeConfig:
    """The federation config of a node: the [node] section of its consortia.toml (a YAML
    node config is refused with the command that moves it there)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ConfigurationError(
            f"{path}: a node's federation configuration is the [node] section of its "
            f"{CONFIG_FILE_NAME}, no longer a YAML file; run `consortia config "
            f"import-node-yaml {path}` to move it there, then pass the {CONFIG_FILE_NAME}"
        )
    node = nodeconfig.node_config_from_settings(load_settings(path))
    if node is None:
        raise ConfigurationError(f"{path}: has no [node] section (docs/settings.md)")
    return node


def node_config_of(settings: Settings) -> NodeConfig | None:
    """The node's federation config from its settings; None for a node without one."""
    return nodeconfig.node_config_from_settings(settings)


def node_trust(config: NodeConfig) -> signing.TrustStore:
    """The peers the node trusts (its trust file and ``[[node.peers]]``), its hub among them."""
    return nodeconfig.node_trust(config)


def read_node_yaml(path: Path) -> NodeConfig:
    """A node.yaml's federation config (the input of ``consortia config import-node-yaml``
    only), validated (every problem as ``file: field: message``)."""
    return node_yaml.read_node_yaml(path)


def node_problems(node: NodeConfig) -> list[tuple[list[str | int], str]]:
    """What the [node] section names that cannot be used: (its setting's path, the problem)
    for the key, the trust file and each table file."""
    problems: list[tuple[list[str | int], str]] = []
    try:
        signing.load_key(node.resolve(node.key_file))
    except ConsortiaError as error:
        problems.append((["node", "key_file"], f"node.key_file: {error}"))
    if node.trust_file is not None:
        try:
            signing.TrustStore.load(node.resolve(node.trust_file))
        except ConsortiaError as error:
            problems.append((["node", "trust_file"], f"node.trust_file: {error}"))
    for name, spec in node.tables.items():
        if not isinstance(spec, TableSpec):
            continue  # built from the database when the node starts
        try:
            load_table(
                name, spec, base_dir=node.base_dir, identifiers=node.policy.identifier_columns
            )
        except ConsortiaError as error:
            problems.append((["node", "tables", name], f"node.tables.{name}: {error}"))
    return problems


def open_node_database(config: NodeConfig) -> Engine:
    """An engine for the node database (at the newest schema); the caller disposes of it."""
    return nodeconfig.open_node_database(config)


def create_node_key(path: Path, key: Ed25519PrivateKey | None = None) -> str:
    """Write ``key`` (default: a new Ed25519 signing key) to ``path`` (mode 0600; never over
    an existing file); return its public key (base64), to give to partner nodes."""
    key = key or signing.generate_key()
    signing.save_key(key, path)
    return signing.public_key_b64(key)


def node_identity(config: NodeConfig) -> str:
    """The node's name, URL and public key, as partner nodes take them."""
    return signing.node_identity(config.name, config.url, _key(config))


def trust_peer(config: NodeConfig, name: str, url: str, public_key: str) -> Path:
    """Add (or replace) a peer in the node's trust file; return the file's path.

    A malformed peer raises pydantic's ``ValidationError``, naming the field.
    """
    if config.trust_file is None:
        raise ConfigurationError(
            'the node config has no trust_file; add `trust_file = "trust.yaml"` to [node]'
        )
    path = config.resolve(config.trust_file)
    store = signing.TrustStore.load(path) if path.exists() else signing.TrustStore()
    store.add(signing.Peer(name=name, url=url, public_key=public_key))
    store.save(path)
    return path


def verify_node_audit(config: NodeConfig) -> str:
    """Verify the node's federation audit; one line saying what was checked."""
    return nodeconfig.verify_node_audit(config)


def verify_witnessed_heads(config: NodeConfig, engine: Engine) -> WitnessReport:
    """Compare the node's chain heads with those its peers witnessed."""
    return verify_heads(_witness(config, engine))


def witness_heads(config: NodeConfig) -> list[PeerOutcome]:
    """Sign the node's chain heads and hand them to its peers; one outcome per peer."""
    engine = nodeconfig.open_node_database(config)
    try:
        return push_heads(_witness(config, engine))
    finally:
        engine.dispose()


def _key(config: NodeConfig) -> Ed25519PrivateKey:
    return signing.load_key(config.resolve(config.key_file))


def _witness(config: NodeConfig, engine: Engine) -> HeadWitness:
    return HeadWitness(engine, config.name, _key(config), nodeconfig.node_trust(config))


def new_node_key() -> Ed25519PrivateKey:
    """A new Ed25519 signing key for a node (written by :func:`create_node_key`)."""
    return signing.generate_key()


def key_fingerprint(key: Ed25519PrivateKey) -> str:
    """The fingerprint of ``key``'s public half, as the hub and its members show it."""
    return hub.fingerprint(signing.public_key_b64(key))


def hub_of_invitation(invitation: str) -> tuple[str, str, str]:
    """``(hub name, hub URL, hub public key)`` of ``invitation`` (its one-line text): the
    key the hub shows, checked against the invitation's fingerprint. Nothing is sent to
    the hub, so a node is built before it registers (:func:`join_consortium`)."""
    decoded = hub.Invitation.decode(invitation)
    return decoded.hub, decoded.url, asyncio.run(hub.pinned_hub_key(decoded))


def join_consortium(
    invitation: str, key: Ed25519PrivateKey, member: Mapping[str, str]
) -> JoinAnswer:
    """Join the hub of ``invitation`` (its one-line text) as ``member`` with ``key``: the
    hub's key is checked against the invitation's fingerprint before the secret is sent."""
    decoded = hub.Invitation.decode(invitation)
    return asyncio.run(hub.join_hub(decoded, key, {**member, "protocol_version": PROTOCOL}))


#: The federation protocol version this node speaks (sent to the hub when joining).
PROTOCOL: str = str(PROTOCOL_VERSION)
