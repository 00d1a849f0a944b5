"""``consortia backup DIR`` and ``consortia restore DIR NODE_DIR``: snapshot a live node,
and put a snapshot back into an empty node (docs/production.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consortia.commands.common import ConfigOption, node_settings, reporting
from consortia.config import CONFIG_FILE_NAME
from consortia.services.backup import backup_node, restore_node

__all__ = ["backup_command", "restore_command"]


def backup_command(
    directory: Annotated[Path, typer.Argument(help="A new or empty folder for the backup.")],
    config: ConfigOption = None,
) -> None:
    """Back up the running node: database snapshot, configuration, keys and a manifest."""
    with reporting():
        if config is None and Path(CONFIG_FILE_NAME).is_file():
            config = Path(CONFIG_FILE_NAME)
        settings = node_settings(config)
        manifest = backup_node(settings, config, directory, say=typer.echo)
    chains = manifest.data["chains"]
    typer.echo(
        f"backup written to {directory}: {manifest.data['audit_events']} audit events in "
        f"{len(chains)} chains, {len(manifest.data['files'])} files; "
        f"manifest sha256 {manifest.sha256} (keep it apart from the backup). "
        "The folder holds the node's secrets: keep it encrypted."
    )


def restore_command(
    backup: Annotated[Path, typer.Argument(help="The backup folder.")],
    node_dir: Annotated[Path, typer.Argument(help="The new node's folder (empty or missing).")],
) -> None:
    """Restore a backup into an empty node after checking its manifest and audit chains."""
    with reporting():
        restore_node(backup, node_dir, say=typer.echo)
    typer.echo(
        f"node restored in {node_dir}; start it with: consortia serve --config "
        f"{node_dir / CONFIG_FILE_NAME}"
    )
