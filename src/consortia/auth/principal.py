"""Who is asking: a person with role grants per study and site, possibly narrowed by a token.

A :class:`Principal` is built once per request (from a token or a web session) or per CLI
command, and handed to every service and repository; :mod:`consortia.auth.policy` decides
what it may do.

>>> alice = Principal(1, "alice@sg.example", "Alice", frozenset({Grant("CART01", "SG01", Role.COORDINATOR)}))
>>> alice.studies()
frozenset({'CART01'})
>>> alice.narrowed_to({"OTHER"}).grants
frozenset()
"""  # noqa: E501

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["CODE_PATTERN", "WILDCARD", "Grant", "Principal", "Role", "is_code"]

WILDCARD = "*"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_CODE = re.compile(CODE_PATTERN)


def is_code(value: str) -> bool:
    """Whether ``value`` is a valid study or site code (letters, digits, ``_.-``; ≤ 64).

    >>> is_code("SG01"), is_code("*"), is_code("a b")
    (True, False, False)
    """
    return bool(_CODE.fullmatch(value))


class Role(StrEnum):
    """The roles a person can hold at a study and site (see docs/roles.md)."""

    NODE_ADMIN = "node_admin"
    STUDY_ADMIN = "study_admin"
    INVESTIGATOR = "investigator"
    COORDINATOR = "coordinator"
    MONITOR = "monitor"
    DATA_MANAGER = "data_manager"
    STATISTICIAN = "statistician"
    UNBLINDED_STATISTICIAN = "unblinded_statistician"
    SPONSOR_VIEWER = "sponsor_viewer"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One role held at one study (or ``*``: every study) and site (or ``*``: every site)."""

    study: str
    site: str
    role: Role

    def covers(self, study: str | None, site: str | None) -> bool:
        """Whether this grant applies to ``study``/``site``.

        ``study=None`` means the node itself (only ``*`` grants cover it); ``site=None``
        means "some site of the study" (any grant in the study covers it).
        """
        if study is None:
            return self.study == WILDCARD
        if self.study not in (WILDCARD, study):
            return False
        return site is None or self.site in (WILDCARD, site)

    def __str__(self) -> str:
        return f"{self.role.value} at {self.study}/{self.site}"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated person and the grants in force for this request.

    ``token_studies`` is set when the request came with an API token scoped to studies:
    the grants are then already narrowed to those studies (see :meth:`narrowed_to`).
    ``by_token`` is true for every request authenticated by an API token, scoped or not:
    what only a signed-in person may do (create tokens, change the password) checks it.
    """

    user_id: int
    email: str
    name: str
    grants: frozenset[Grant] = field(default_factory=frozenset)
    token_studies: frozenset[str] | None = None
    by_token: bool = False
    #: the node's operator at its shell (``consortia`` commands), not an account: the root
    #: that grants the first roles (see :func:`consortia.auth.policy.grant_refusal`)
    operator: bool = False

    def studies(self) -> frozenset[str]:
        """The study codes named in the grants (``*`` included as is)."""
        return frozenset(grant.study for grant in self.grants)

    def narrowed_to(self, studies: Iterable[str]) -> Principal:
        """This principal as seen through a token scoped to ``studies``.

        Grants for other studies disappear; a ``*`` study grant applies only to the scoped
        studies; node-level power (``node_admin``) never passes through a scoped token.
        """
        scope = frozenset(studies)
        narrowed: set[Grant] = set()
        for grant in self.grants:
            if grant.role is Role.NODE_ADMIN:
                continue
            if grant.study == WILDCARD:
                narrowed.update(Grant(study, grant.site, grant.role) for study in scope)
            elif grant.study in scope:
                narrowed.add(grant)
        return Principal(
            self.user_id, self.email, self.name, frozenset(narrowed), scope, self.by_token
        )
