"""What every repository shares: the node's own audit chain, the identifier fields, and
narrowing a query to the sites a principal may see."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from consortia.auth.policy import SiteScope

__all__ = ["IDENTIFIER_FIELDS", "NODE_CHAIN", "in_scope"]

#: The audit chain of node-level events: accounts, logins, grants, tokens.
NODE_CHAIN = "node"

#: Identifier (PHI) fields per entity type: masked wherever they appear, audit trail included.
IDENTIFIER_FIELDS: Mapping[str, frozenset[str]] = {"subject": frozenset({"initials"})}


def in_scope(column: sa.ColumnElement[str], scope: SiteScope) -> sa.ColumnElement[bool]:
    """``column`` (a site code) is one of the sites ``scope`` allows."""
    if scope.every_site:
        return sa.true()
    if not scope.sites:
        return sa.false()
    return column.in_(sorted(scope.sites))
