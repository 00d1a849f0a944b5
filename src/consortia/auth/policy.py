"""The one place that says who may do what: a table of actions x roles, and :func:`can`.

Every service asks :func:`can` before it changes anything; every repository narrows its
queries with :func:`site_scope`, so a record at a site the caller cannot see is simply not
there (the API answers 404: existence never leaks). docs/roles.md shows the same table
(a test checks that it is :func:`markdown_table`).

A grant applies to a :class:`Resource` as :meth:`Grant.covers` says: ``*`` study grants
cover every study *and* the node itself; ``*`` site grants cover every site of a study.

>>> from consortia.auth.principal import Grant, Principal, Role
>>> coordinator = Principal(1, "c@sg", "C", frozenset({Grant("CART01", "SG01", Role.COORDINATOR)}))
>>> can(coordinator, Action.SUBJECT_CREATE, Resource("CART01", "SG01"))
True
>>> can(coordinator, Action.SUBJECT_CREATE, Resource("CART01", "SH01"))
False
>>> can(coordinator, Action.FORM_LOCK, Resource("CART01", "SG01"))
False
>>> site_scope(coordinator, "CART01", Action.SUBJECT_READ)
SiteScope(every_site=False, sites=frozenset({'SG01'}))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from consortia.auth.principal import WILDCARD, Grant, Principal, Role

__all__ = [
    "NODE_ACTIONS",
    "ROLE_ACTIONS",
    "SEEING_ACTIONS",
    "Action",
    "Resource",
    "SiteScope",
    "can",
    "grant_markdown_table",
    "grant_refusal",
    "markdown_table",
    "may_see_identifiers",
    "sees_study",
    "site_scope",
]


class Action(StrEnum):
    """Everything the policy decides on; node actions are listed in :data:`NODE_ACTIONS`."""

    USER_READ = "user.read"
    USER_MANAGE = "user.manage"
    GRANT_MANAGE = "grant.manage"
    NODE_AUDIT_READ = "node_audit.read"
    APPROVAL_DECIDE = "approval.decide"
    HUB_MANAGE = "hub.manage"
    STUDY_MANAGE = "study.manage"
    SUBJECT_READ = "subject.read"
    SUBJECT_CREATE = "subject.create"
    IDENTIFIER_READ = "identifier.read"
    IDENTIFIER_EXPORT = "identifier.export"
    AGGREGATE_READ = "aggregate.read"
    SITE_PERFORMANCE_READ = "site_performance.read"
    DATA_ENTER = "data.enter"
    DATA_SIGN = "data.sign"
    DATA_VERIFY = "data.verify"
    QUERY_READ = "query.read"
    QUERY_OPEN = "query.open"
    QUERY_ANSWER = "query.answer"
    QUERY_CLOSE = "query.close"
    FORM_LOCK = "form.lock"
    ANALYSIS_RUN = "analysis.run"
    AUDIT_READ = "audit.read"
    SUBJECT_RANDOMISE = "subject.randomise"
    SUBJECT_UNBLIND = "subject.unblind"
    ARM_READ = "arm.read"
    RANDOMISATION_LIST = "randomisation_list.manage"


#: Actions on the node itself rather than on a study: only ``*``-study grants cover them.
NODE_ACTIONS = frozenset(
    {
        Action.USER_READ,
        Action.USER_MANAGE,
        Action.NODE_AUDIT_READ,
        Action.APPROVAL_DECIDE,
        Action.HUB_MANAGE,
    }
)

#: What a role lets one *see*: records, identifiers (read or exported), free-text queries,
#: aggregates, audit trails, accounts. Nobody may grant a role that sees more than they do.
SEEING_ACTIONS = frozenset(
    {
        Action.USER_READ,
        Action.NODE_AUDIT_READ,
        Action.SUBJECT_READ,
        Action.IDENTIFIER_READ,
        Action.IDENTIFIER_EXPORT,
        Action.AGGREGATE_READ,
        Action.SITE_PERFORMANCE_READ,
        Action.QUERY_READ,
        Action.AUDIT_READ,
        Action.ARM_READ,
        Action.RANDOMISATION_LIST,
    }
)

_DESCRIPTIONS: Mapping[Action, str] = {
    Action.USER_READ: "list the node's user accounts",
    Action.USER_MANAGE: "create accounts, set passwords, manage anyone's tokens",
    Action.GRANT_MANAGE: "grant and revoke roles (within the grants one holds)",
    Action.NODE_AUDIT_READ: "read the node's audit chain (logins, grants, tokens)",
    Action.APPROVAL_DECIDE: "list and decide analysis requests queued for manual approval",
    Action.HUB_MANAGE: "at a hub: invite and remove members, publish studies, run analyses",
    Action.STUDY_MANAGE: "load and change the study definition",
    Action.SUBJECT_READ: "list and read subjects and their data",
    Action.SUBJECT_CREATE: "enrol subjects",
    Action.IDENTIFIER_READ: "see identifier (PHI) values; others see them masked",
    Action.IDENTIFIER_EXPORT: "export identifier values, stating a reason (audited)",
    Action.AGGREGATE_READ: "read aggregate counts (enrolment per site)",
    Action.SITE_PERFORMANCE_READ: "read the site performance metrics of the sites where "
    "one holds it (docs/site-performance.md)",
    Action.DATA_ENTER: "enter and change form data",
    Action.DATA_SIGN: "sign forms and casebooks (21 CFR Part 11 §11.50)",
    Action.DATA_VERIFY: "mark source-data verification",
    Action.QUERY_READ: "read data queries (free text that may name a patient)",
    Action.QUERY_OPEN: "open, re-open and assign data queries",
    Action.QUERY_ANSWER: "answer data queries",
    Action.QUERY_CLOSE: "close data queries",
    Action.FORM_LOCK: "lock and unlock forms",
    Action.ANALYSIS_RUN: "run analyses (on tables without identifiers)",
    Action.AUDIT_READ: "read the study's audit trail",
    Action.SUBJECT_RANDOMISE: "randomise a subject through the hub (once its gates hold)",
    Action.SUBJECT_UNBLIND: "emergency unblinding of one subject, stating a reason (audited)",
    Action.ARM_READ: "see allocated arms; everyone else sees the allocation code",
    Action.RANDOMISATION_LIST: "at the hub: generate, read and export (with a reason) the "
    "sealed allocation lists",
}

_A = Action
ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    Role.NODE_ADMIN: frozenset(
        {
            _A.USER_READ,
            _A.USER_MANAGE,
            _A.GRANT_MANAGE,
            _A.NODE_AUDIT_READ,
            _A.APPROVAL_DECIDE,
            _A.HUB_MANAGE,
        }
    ),
    Role.STUDY_ADMIN: frozenset(
        {
            _A.STUDY_MANAGE,
            _A.GRANT_MANAGE,
            _A.SUBJECT_READ,
            _A.AGGREGATE_READ,
            _A.SITE_PERFORMANCE_READ,
            _A.IDENTIFIER_EXPORT,
        }
    ),
    Role.INVESTIGATOR: frozenset(
        {
            _A.SUBJECT_READ,
            _A.SUBJECT_CREATE,
            _A.IDENTIFIER_READ,
            _A.AGGREGATE_READ,
            _A.DATA_ENTER,
            _A.DATA_SIGN,
            _A.QUERY_READ,
            _A.QUERY_ANSWER,
            _A.SUBJECT_RANDOMISE,
            _A.SUBJECT_UNBLIND,
        }
    ),
    Role.COORDINATOR: frozenset(
        {
            _A.SUBJECT_READ,
            _A.SUBJECT_CREATE,
            _A.IDENTIFIER_READ,
            _A.AGGREGATE_READ,
            _A.DATA_ENTER,
            _A.QUERY_READ,
            _A.QUERY_ANSWER,
            _A.SUBJECT_RANDOMISE,
        }
    ),
    Role.MONITOR: frozenset(
        {
            _A.SUBJECT_READ,
            _A.IDENTIFIER_READ,
            _A.AGGREGATE_READ,
            _A.SITE_PERFORMANCE_READ,
            _A.DATA_VERIFY,
            _A.QUERY_READ,
            _A.QUERY_OPEN,
        }
    ),
    Role.DATA_MANAGER: frozenset(
        {
            _A.SUBJECT_READ,
            _A.AGGREGATE_READ,
            _A.SITE_PERFORMANCE_READ,
            _A.QUERY_READ,
            _A.QUERY_OPEN,
            _A.QUERY_CLOSE,
            _A.FORM_LOCK,
        }
    ),
    Role.STATISTICIAN: frozenset({_A.SUBJECT_READ, _A.AGGREGATE_READ, _A.ANALYSIS_RUN}),
    # the one role that sees arms and the sealed lists (ICH E9 §2.3: kept apart from the
    # blinded trial team); grantable only by someone who holds it, or the node's operator
    Role.UNBLINDED_STATISTICIAN: frozenset(
        {
            _A.SUBJECT_READ,
            _A.AGGREGATE_READ,
            _A.ANALYSIS_RUN,
            _A.ARM_READ,
            _A.RANDOMISATION_LIST,
        }
    ),
    Role.SPONSOR_VIEWER: frozenset({_A.AGGREGATE_READ}),
    Role.AUDITOR: frozenset(
        {
            _A.SUBJECT_READ,
            _A.IDENTIFIER_READ,
            _A.AGGREGATE_READ,
            _A.QUERY_READ,
            _A.AUDIT_READ,
            _A.NODE_AUDIT_READ,
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Resource:
    """What an action is on: the node (no study), a study (no site), or a study's site."""

    study: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class SiteScope:
    """The sites of one study a principal may act at: every site, or the ones listed."""

    every_site: bool = False
    sites: frozenset[str] = field(default_factory=frozenset)

    def allows(self, site: str) -> bool:
        return self.every_site or site in self.sites

    @property
    def empty(self) -> bool:
        return not self.every_site and not self.sites


def _grant_allows(grant: Grant, action: Action) -> bool:
    return action in ROLE_ACTIONS[grant.role]


def can(principal: Principal, action: Action, resource: Resource) -> bool:
    """Whether ``principal`` may do ``action`` on ``resource``.

    For a study without a site, "may do it at some site of the study"; node actions
    need a ``*``-study grant whatever the resource says.
    """
    study = None if action in NODE_ACTIONS else resource.study
    site = None if action in NODE_ACTIONS else resource.site
    return any(
        grant.covers(study, site) and _grant_allows(grant, action) for grant in principal.grants
    )


def sees_study(principal: Principal, study: str) -> bool:
    """Whether the principal holds any role in ``study`` (if not, the study is "not found")."""
    return any(grant.covers(study, None) for grant in principal.grants)


def site_scope(principal: Principal, study: str, action: Action | None = None) -> SiteScope:
    """The sites of ``study`` where the principal may do ``action`` (any role: ``None``)."""
    sites: set[str] = set()
    for grant in principal.grants:
        if not grant.covers(study, None):
            continue
        if action is not None and not _grant_allows(grant, action):
            continue
        if grant.site == WILDCARD:
            return SiteScope(every_site=True)
        sites.add(grant.site)
    return SiteScope(sites=frozenset(sites))


def may_see_identifiers(principal: Principal, study: str, site: str) -> bool:
    """Whether identifier (PHI) values of a record at ``study``/``site`` go to the principal."""
    return can(principal, Action.IDENTIFIER_READ, Resource(study, site))


def _seen_through(grant: Grant) -> frozenset[Action]:
    """What ``grant`` would let its holder see (node actions only through a ``*`` study)."""
    return frozenset(
        action
        for action in ROLE_ACTIONS[grant.role] & SEEING_ACTIONS
        if action not in NODE_ACTIONS or grant.study == WILDCARD
    )


def grant_refusal(principal: Principal, grant: Grant, *, to_self: bool) -> str | None:
    """Why ``principal`` may not give ``grant`` to someone (``to_self``: to themselves), or
    ``None`` if it may. The rules, in order:

    1. nobody grants a role to themselves;
    2. only a node administrator (``user.manage``) grants ``node_admin``;
    3. one needs ``grant.manage`` at the grant's study and site (``*`` only from ``*``);
    4. the role granted sees nothing the granter does not see there (:data:`SEEING_ACTIONS`:
       identifiers included) — so a node administrator, who sees no study data, grants no
       study role, and a study administrator grants no role that reads identifiers.

    The node's operator at the shell (``principal.operator``) holds the database and the
    keys already; it is the root that grants any role (rule 4 does not bind it).

    >>> lead = Principal(2, "lead@sg", "L", frozenset({Grant("CART01", "SG01", Role.STUDY_ADMIN)}))
    >>> grant_refusal(lead, Grant("CART01", "SG01", Role.STATISTICIAN), to_self=False) is None
    True
    >>> grant_refusal(lead, Grant("CART01", "SG01", Role.INVESTIGATOR), to_self=True)
    'nobody may grant a role to themselves'
    >>> print(grant_refusal(lead, Grant("CART01", "SG01", Role.MONITOR), to_self=False))
    monitor sees more than your roles at CART01/SG01: identifier.read, query.read
    """
    if to_self:
        return "nobody may grant a role to themselves"
    if grant.role is Role.NODE_ADMIN and not can(principal, Action.USER_MANAGE, Resource()):
        return "only a node administrator grants node_admin"
    where = Resource(grant.study, grant.site)
    if not can(principal, Action.GRANT_MANAGE, where):
        return f"your roles do not let you grant roles at {grant.study}/{grant.site}"
    if principal.operator:
        return None
    unseen = sorted(a.value for a in _seen_through(grant) if not can(principal, a, where))
    if unseen:
        return (
            f"{grant.role.value} sees more than your roles at {grant.study}/{grant.site}: "
            + ", ".join(unseen)
        )
    return None


def grant_markdown_table() -> str:
    """Who may grant what, as docs/roles.md shows it: a person holding one role (a row) at
    a study and site grants there, to someone else, the roles marked (``node_admin``: held
    and granted at ``*``/``*``)."""
    roles = list(Role)
    header = "| holder of | " + " | ".join(f"`{role.value}`" for role in roles) + " |"
    rows = [header, "|---|" + "---|" * len(roles)]
    for holder in roles:
        study, site = ("*", "*") if holder is Role.NODE_ADMIN else ("CART01", "SG01")
        granter = Principal(1, "granter", "granter", frozenset({Grant(study, site, holder)}))
        marks = []
        for role in roles:
            where = ("*", "*") if role is Role.NODE_ADMIN else ("CART01", "SG01")
            allowed = grant_refusal(granter, Grant(*where, role), to_self=False) is None
            marks.append("✓" if allowed else "")
        rows.append(f"| {holder.value} | " + " | ".join(marks) + " |")
    return "\n".join(rows)


def markdown_table() -> str:
    """The actions x roles table as Markdown, as docs/roles.md shows it."""
    roles = list(Role)
    header = "| action | meaning | " + " | ".join(f"`{role.value}`" for role in roles) + " |"
    rule = "|---|---|" + "---|" * len(roles)
    rows = [header, rule]
    for action in Action:
        marks = " | ".join("✓" if action in ROLE_ACTIONS[role] else "" for role in roles)
        rows.append(f"| `{action.value}` | {_DESCRIPTIONS[action]} | {marks} |")
    return "\n".join(rows)
