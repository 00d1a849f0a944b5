"""A node's federation config: the ``[node]`` section of consortia.toml, and building
its :class:`NodeRunner` from it.

::

    node_name = "sgh"                       # settings: the node's name, URL and database
    node_url = "https://consortia.sgh.example/"
    database_url = "sqlite:///consortia.db"

    [node]
    key_file = "keys/node.pem"              # Ed25519 PEM, mode 0600
    trust_file = "trust.yaml"               # {peers: [{name, url, public_key}]}, and/or:
    lead_url = "https://lead.example/"      # set to long-poll the lead (pull transport)
    witness_interval_seconds = 60           # hand the signed chain heads to the peers (0: never)
    max_message_bytes = 4194304             # a larger task is refused (413) before it is read

    [[node.peers]]
    name = "lead"
    url = "https://lead.example/"
    public_key = "base64…"

    [node.tables.cart_efficacy]             # a file the hospital brings
    file = "data/cart.csv"
    columns = {pfs_days = "integer", pfs_event = "boolean", arm = "text"}
    identifiers = ["mrn"]

    [node.tables.cart]                      # built from this node's captured data
    edc = "CART-LBCL"

    [node.policy]
    min_cell_count = 5
    time_bin = 7
    manual_approval = false

Relative paths resolve against ``node_dir``. ``CONSORTIA_*`` variables override the
settings (``CONSORTIA_DATABASE_URL`` keeps a PostgreSQL password out of the file). The
YAML file a node kept before this section existed is read only by ``consortia config
import-node-yaml`` (:mod:`consortia.federation.node_yaml`), which moves it here.

A served node writes its federation audit to its database's audit trail (chain
``federation``, :class:`~consortia.federation.database_audit.DatabaseAuditSink`) and may
declare EDC tables (:mod:`consortia.federation.edc_tables`). A :class:`NodeConfig` built in
Python without a database (``database_url=None``: tests, a node living in another
process's memory) writes the JSON-lines ``audit_log`` and serves file tables only.
Manual approval (``policy.manual_approval``) needs the database: the data steward's queue
and decisions are kept there, shared by every process of the node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from consortia.config import Settings
from consortia.exceptions import ConfigurationError
from consortia.federation.approval import DatabaseApprovals
from consortia.federation.audit import (
    AuditChainError,
    AuditSink,
    JsonlAuditSink,
    verify_audit_log,
)
from consortia.federation.database_audit import FEDERATION_CHAIN, DatabaseAuditSink
from consortia.federation.database_guards import DatabaseNonces, DatabaseRefusalWindows
from consortia.federation.edc_tables import (
    EdcTableSource,
    EdcTableSpec,
    NodeTables,
    accepted_study_tables,
)
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import Peer, TrustStore, load_key
from consortia.federation.tables import Table, TableSpec, load_table
from consortia.storage.audit import verify_trail

__all__ = [
    "NODE_SECTION_FROM_SETTINGS",
    "NodeConfig",
    "TableDeclaration",
    "build_node",
    "node_config_from_settings",
    "node_trust",
    "open_node_database",
    "verify_node_audit",
]


def _table_source(value: Any) -> str | None:
    """Which kind of table a declaration is: ``file`` or ``edc`` (None: neither or both)."""
    if isinstance(value, TableSpec):
        return "file"
    if isinstance(value, EdcTableSpec):
        return "edc"
    if isinstance(value, dict) and ("file" in value) != ("edc" in value):
        return "file" if "file" in value else "edc"
    return None


TableDeclaration = Annotated[
    Annotated[TableSpec, Tag("file")] | Annotated[EdcTableSpec, Tag("edc")],
    Discriminator(
        _table_source,
        custom_error_type="table_source",
        custom_error_message=(
            "a table needs either 'file' (a file the hospital brings) or 'edc' (a study "
            "captured on this node), not both"
        ),
    ),
]


class NodeConfig(BaseModel):
    """Everything a member node needs to take part in federated analyses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    url: str = ""
    key_file: Path = Path("node_key.pem")
    trust_file: Path | None = None
    peers: list[Peer] = []
    lead_url: str | None = None
    database_url: str | None = None
    tables: dict[str, TableDeclaration] = {}
    policy: NodePolicy = NodePolicy()
    audit_log: Path = Path("audit/federation.jsonl")
    clock_skew_seconds: float = Field(300.0, gt=0)
    # how often the running node hands its signed chain heads to its peers (0: never)
    witness_interval_seconds: float = Field(60.0, ge=0)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # the consortium (docs/network.md): a hub, or a member that joined one
    role: Literal["member", "hub"] = "member"
    consortium: str = ""  # a hub: the consortium's name
    hub: str | None = None  # a member: the name of its hub among its peers
    transport: Literal["push", "pull"] = "push"  # a member: how its hub reaches it
    accept_studies: Literal["manual", "auto"] = "manual"  # a member: its hub's studies
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _consortium_roles(self) -> NodeConfig:
        if self.role == "hub" and self.tables:
            raise ValueError("a hub holds no patient records: remove its [node.tables]")
        if self.role == "hub" and self.hub is not None:
            raise ValueError("a hub has no hub of its own: remove hub")
        if self.hub is not None and not any(peer.name == self.hub for peer in self.peers):
            raise ValueError(
                f"hub {self.hub!r} is not among the [[node.peers]]: `consortia init --join` "
                "writes both"
            )
        if self.transport == "pull" and self.pull_url() is None:
            raise ValueError('transport = "pull" needs a hub (or lead_url) to poll')
        return self

    def pull_url(self) -> str | None:
        """The URL this node long-polls for tasks: ``lead_url``, or its hub's URL when it
        joined for the pull transport; None: it is pushed to."""
        if self.lead_url is not None:
            return self.lead_url
        if self.transport == "pull" and self.hub is not None:
            for peer in self.peers:
                if peer.name == self.hub and peer.url:
                    return peer.url
        return None

    def resolve(self, path: Path) -> Path:
        """A config path made absolute against the node's directory (``node_dir``)."""
        return path if path.is_absolute() else self.base_dir / path

    def database(self) -> str | None:
        """The node database's URL, or None for a node without a database.

        A relative SQLite path resolves against ``base_dir`` (consortia.toml's settings
        arrive with it resolved against ``node_dir`` already).
        """
        if self.database_url is None:
            return None
        url = self.database_url.strip()
        try:
            parsed = make_url(url)
        except Exception:  # make_engine reports a bad URL with its reason
            return url
        database = parsed.database
        if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
            return url
        if Path(database).is_absolute():
            return url
        return parsed.set(database=str(self.resolve(Path(database)))).render_as_string(
            hide_password=False
        )


#: What the ``[node]`` section of consortia.toml takes from the node's other settings, and
#: which setting that is: written once, at the top of the file.
NODE_SECTION_FROM_SETTINGS = {
    "name": "node_name",
    "url": "node_url",
    "database_url": "database_url",
    "clock_skew_seconds": "clock_skew_seconds",
}


def node_config_from_settings(settings: Settings) -> NodeConfig | None:
    """The node's federation config from its settings: the ``[node]`` section of
    consortia.toml; None for a node that takes no part in federated analyses.

    The section holds what only federation needs (``key_file``, ``trust_file``, ``peers``,
    ``lead_url``, ``tables``, ``policy``, ``witness_interval_seconds``,
    ``max_message_bytes``); the node's name, URL, database and clock skew are its settings
    of those names. Relative paths resolve against ``node_dir``. Every
    problem is reported at once, each as ``consortia.toml:LINE: node.FIELD: message``.

    >>> node_config_from_settings(Settings()) is None
    True
    >>> config = node_config_from_settings(Settings(node_name="sgh", node={"lead_url": "x"}))
    >>> config.name, config.lead_url, config.policy.min_cell_count
    ('sgh', 'x', 5)
    """
    section = settings.node
    if section is None:
        return None
    problems = [
        f"{settings.locate(['node', key])}: node.{key}: this is the setting {setting} "
        f"(write `{setting} = ...` at the top of the file, before any section)"
        for key, setting in NODE_SECTION_FROM_SETTINGS.items()
        if key in section
    ]
    if "audit_log" in section:
        problems.append(
            f"{settings.locate(['node', 'audit_log'])}: node.audit_log: a node's federation "
            "audit is its database's audit trail; remove audit_log"
        )
    values = {
        **{key: value for key, value in section.items() if key != "audit_log"},
        "name": settings.node_name,
        "url": settings.node_url,
        "database_url": settings.database_url,
        "clock_skew_seconds": settings.clock_skew_seconds,
        "base_dir": settings.node_dir,
    }
    try:
        config = NodeConfig.model_validate(values)
    except PydanticValidationError as exc:
        for error in exc.errors():
            loc = ("node", *error["loc"])
            problems.append(
                f"{settings.locate(loc)}: {'.'.join(str(part) for part in loc)}: {error['msg']}"
            )
        config = None
    problems = list(dict.fromkeys(problems))
    if problems or config is None:
        raise ConfigurationError("\n".join(problems))
    return config


def node_trust(config: NodeConfig) -> TrustStore:
    """The node's trust store: the config's ``peers`` and its ``trust_file``."""
    trust = TrustStore(config.peers)
    if config.trust_file is not None:
        for peer in TrustStore.load(config.resolve(config.trust_file)).peers:
            trust.add(peer)
    return trust


def open_node_database(config: NodeConfig) -> Engine:
    """An engine for the node database (at the newest schema); refused without one."""
    url = config.database()
    if url is None:
        raise ConfigurationError(
            "database_url: the node config names no database; witnessed heads and the "
            "audit trail live in the node database"
        )
    return _open_database(url)


def _open_database(url: str) -> Engine:
    """An engine for the node database, refused unless it is at the newest schema."""
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import current_revision, head_revision

    engine = make_engine(url)
    try:
        current = current_revision(engine)
    except Exception as exc:
        engine.dispose()
        raise ConfigurationError(f"database_url: cannot open the node database ({exc})") from None
    if current != head_revision():
        engine.dispose()
        raise ConfigurationError(
            f"database_url: the database is at revision {current or 'empty'}, the code needs "
            f"{head_revision()}: run `consortia db upgrade` first"
        )
    return engine


def build_node(config: NodeConfig, *, engine: Engine | None = None) -> NodeRunner:
    """Load the node's key, trust store, tables and audit trail (and approval queue).

    With a database (``engine``, or the config's ``database_url``) the federation audit
    goes to the database's trail and EDC tables are built from it; an engine this
    function opens is disposed by :meth:`NodeRunner.close`. Every table is read once here,
    so a bad declaration stops the node at start, not at the first request.
    """
    trust = node_trust(config)
    owned: Engine | None = None
    url = config.database() if engine is None else None
    if url is not None:
        engine = owned = _open_database(url)
    try:
        return _build(config, trust, engine, owned.dispose if owned is not None else None)
    except BaseException:
        if owned is not None:
            owned.dispose()
        raise


def _build(
    config: NodeConfig,
    trust: TrustStore,
    engine: Engine | None,
    on_close: Callable[[], None] | None,
) -> NodeRunner:
    policy_identifiers = config.policy.identifier_columns
    identifiers = {name for spec in config.tables.values() for name in spec.identifiers}
    files: dict[str, Table] = {}
    sources: dict[str, EdcTableSource] = {}
    for name, spec in config.tables.items():
        if isinstance(spec, TableSpec):
            files[name] = load_table(
                name, spec, base_dir=config.base_dir, identifiers=policy_identifiers
            )
            continue
        if engine is None:
            raise ConfigurationError(
                f"tables.{name}: a table built from captured data (edc: {spec.edc}) needs the "
                "node database; set database_url in the node config"
            )
        source = EdcTableSource(engine, name, spec, identifiers=policy_identifiers)
        source.table()  # fail now on a missing study or clashing column names
        identifiers |= source.identifier_names
        sources[name] = source
    if config.policy.manual_approval and engine is None:
        raise ConfigurationError(
            "policy.manual_approval: the data steward's approval queue is kept in the node "
            "database; set database_url in the node config, or turn manual_approval off"
        )
    audit: AuditSink = (
        JsonlAuditSink(config.resolve(config.audit_log))
        if engine is None
        else DatabaseAuditSink(engine)
    )
    return NodeRunner(
        config.name,
        load_key(config.resolve(config.key_file)),
        trust,
        files
        if engine is None
        else NodeTables(
            files,
            sources,
            engine=engine,
            declared=accepted_study_tables,
            identifiers=policy_identifiers,
        ),
        policy=config.policy,
        audit=audit,
        approvals=DatabaseApprovals(engine) if engine is not None else None,
        identifiers=identifiers,
        url=config.url,
        clock_skew_seconds=config.clock_skew_seconds,
        on_close=on_close,
        # a node with a database keeps nonces and refusal windows there: every process of
        # the node, and the node after a restart, refuses a replay
        nonces=DatabaseNonces(engine) if engine is not None else None,
        refusals=DatabaseRefusalWindows(engine) if engine is not None else None,
    )


def verify_node_audit(config: NodeConfig, *, engine: Engine | None = None) -> str:
    """Verify the node's federation audit; return one line saying what was checked.

    A node with a database: its ``federation`` chain (``consortia audit verify`` checks
    every chain of that database); a JSON-lines file left from before the node had a
    database is checked too. A node without one: its ``audit_log`` file. A broken chain
    raises :class:`~consortia.federation.audit.AuditChainError`.
    """
    path = config.resolve(config.audit_log)
    url = config.database() if engine is None else None
    if engine is None and url is None:
        if not path.exists():
            return f"federation audit log intact: 0 events (no file yet at {path})"
        return f"federation audit log intact: {verify_audit_log(path)} events"
    owned = _open_database(url) if url is not None else None
    database = owned or engine
    assert database is not None
    try:
        with database.connect() as connection:
            report = verify_trail(connection, chain=FEDERATION_CHAIN)
    finally:
        if owned is not None:
            owned.dispose()
    if not report.ok:
        raise AuditChainError(f"node database: {report}")
    line = (
        f"federation audit trail intact: {report.events} events on chain "
        f"{FEDERATION_CHAIN!r} of the node database (`consortia audit verify` checks every "
        "chain)"
    )
    if path.exists():
        line += f"; earlier log file {path}: {verify_audit_log(path)} events intact"
    return line
