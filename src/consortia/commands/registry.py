"""The node commands (``consortia init|serve|backup|restore|analyze|audit|node|db|config|``
``data|user|token|hub|randomization``, ``consortia study load|performance`` and
``consortia node studies``): where each lives and its one-line summary.

Their modules import the services, SQLAlchemy, Alembic and the federation code, so cli.py
registers them deferred (:mod:`consortia.commands.deferred`): ``consortia --version`` and
``--help`` import none of them. A new command module gets an entry here; its summary is the
first paragraph of its help (``tests/commands/test_deferred.py`` checks that they agree).
"""

from __future__ import annotations

from typing import Final

from consortia.commands.deferred import Deferred

__all__ = ["NODE_COMMANDS", "NODE_GROUP_COMMANDS", "STUDY_COMMANDS"]

NODE_COMMANDS: Final = {
    "init": Deferred(
        "consortia.commands.init:init_node",
        "Create a node in DIRECTORY: config, database, signing key and first administrator; "
        "a consortium's hub with --hub, or a hospital's node joining one with --join.",
    ),
    "serve": Deferred(
        "consortia.commands.serve:serve_node_app",
        "Serve the node: the pages, the REST API under /api/v1 (docs at /api/v1/docs) and, "
        "with a [node] section, the federation endpoints under /federation/v1.",
    ),
    "backup": Deferred(
        "consortia.commands.backup:backup_command",
        "Back up the running node: database snapshot, configuration, keys and a manifest.",
    ),
    "restore": Deferred(
        "consortia.commands.backup:restore_command",
        "Restore a backup into an empty node after checking its manifest and audit chains.",
    ),
    "analyze": Deferred(
        "consortia.commands.analyze:analyze",
        "Run a federated analysis: over local files (--local), member nodes (--node), or at "
        "a hub across a study's members (--study with --plan, or --request).",
    ),
    "audit": Deferred(
        "consortia.commands.audit:audit_app", "Inspect and verify the audit trail.", group=True
    ),
    "node": Deferred(
        "consortia.commands.node:node_app",
        "A member node's federation identity, trust, approvals and server.",
        group=True,
    ),
    "db": Deferred("consortia.commands.db:db_app", "Migrate the node's database.", group=True),
    "config": Deferred(
        "consortia.commands.config:config_app",
        "Show and check the node's configuration (consortia.toml and CONSORTIA_*).",
        group=True,
    ),
    "data": Deferred(
        "consortia.commands.data:data_app", "Import and export a study's captured data.", group=True
    ),
    "user": Deferred(
        "consortia.commands.user:user_app",
        "Create, deactivate and activate accounts; grant and revoke roles.",
        group=True,
    ),
    "token": Deferred(
        "consortia.commands.token:token_app",
        "Create, list and revoke personal API tokens.",
        group=True,
    ),
    "hub": Deferred(
        "consortia.commands.hub:hub_app",
        "The coordinating centre: invite and remove members, publish studies.",
        group=True,
    ),
    "centre": Deferred(
        "consortia.commands.centre:centre_app",
        "The innovation centre: partners, agreements, projects, ideas, IP, people.",
        group=True,
    ),
    "randomization": Deferred(
        "consortia.commands.randomization:randomization_app",
        "Central randomisation at the hub: generate, show and export a study's sealed lists.",
        group=True,
    ),
}
#: ``consortia node …`` commands kept in their own modules.
NODE_GROUP_COMMANDS: Final = {
    "studies": Deferred(
        "consortia.commands.hub:studies_app",
        "The study versions this node's hub published to it.",
        group=True,
    ),
}
STUDY_COMMANDS: Final = {
    "load": Deferred(
        "consortia.commands.data:load_study_command",
        "Load a study definition into the node (a new version when the text changed).",
    ),
    "performance": Deferred(
        "consortia.commands.performance:performance_command",
        "Show a study's site performance: enrolment, screen failures, timeliness, queries, "
        "missing data and visit windows per site (docs/site-performance.md).",
    ),
}
