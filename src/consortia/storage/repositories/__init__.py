"""Repositories: the only code that queries the node's tables, always site-scoped.

Study data repositories take the caller's :class:`~consortia.auth.principal.Principal`
and narrow *every* query to the sites :func:`~consortia.auth.policy.site_scope` allows, so
a record at another site is indistinguishable from one that does not exist. They also
mask identifier (PHI) values for principals without identifier access at the record's
site (:data:`IDENTIFIER_FIELDS`), so no layer above can leak them by mistake.

The account repositories (:class:`UserRepository`, :class:`TokenRepository`) hold
node-level records that belong to no site; they are used to authenticate, before any
principal exists, and by services that check node-level policy first.

Repositories run inside the caller's transaction (a :class:`~sqlalchemy.Connection`);
they never commit.
"""

from consortia.storage.repositories.audit_trail import IDENTIFIERS_KEY, AuditRepository, mask_event
from consortia.storage.repositories.grants import GrantRecord, GrantRepository, load_grants
from consortia.storage.repositories.scope import IDENTIFIER_FIELDS, NODE_CHAIN
from consortia.storage.repositories.sessions import SessionRecord, SessionRepository
from consortia.storage.repositories.subjects import SubjectRecord, SubjectRepository
from consortia.storage.repositories.tokens import TokenRecord, TokenRepository
from consortia.storage.repositories.users import UserRecord, UserRepository

__all__ = [
    "IDENTIFIERS_KEY",
    "IDENTIFIER_FIELDS",
    "NODE_CHAIN",
    "AuditRepository",
    "GrantRecord",
    "GrantRepository",
    "SessionRecord",
    "SessionRepository",
    "SubjectRecord",
    "SubjectRepository",
    "TokenRecord",
    "TokenRepository",
    "UserRecord",
    "UserRepository",
    "load_grants",
    "mask_event",
]
