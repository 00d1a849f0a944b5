"""The policy table: every role x (own site, other site, other study) x every action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consortia.auth.policy import (
    NODE_ACTIONS,
    Action,
    Resource,
    can,
    grant_markdown_table,
    markdown_table,
    may_see_identifiers,
    sees_study,
    site_scope,
)
from consortia.auth.principal import Grant, Principal, Role

ROLES_DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
STUDY_ACTIONS = [action for action in Action if action not in NODE_ACTIONS]


def _documented() -> dict[tuple[Role, Action], bool]:
    """The table as docs/roles.md states it: an independent reading of the rules."""
    lines = ROLES_DOC.read_text(encoding="utf-8").splitlines()
    header = next(line for line in lines if line.startswith("| action | meaning |"))
    roles = [Role(name) for name in re.findall(r"`([a-z_]+)`", header)]
    table: dict[tuple[Role, Action], bool] = {}
    for line in lines:
        match = re.match(r"^\| `([a-z_.]+)` \|", line)
        if not match:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")][2:]
        for role, cell in zip(roles, cells, strict=True):
            table[(role, Action(match[1]))] = cell == "✓"
    return table


DOCUMENTED = _documented()


def _person(*grants: Grant) -> Principal:
    return Principal(7, "p@example.org", "P", frozenset(grants))


def test_the_documented_table_is_the_table_in_the_code() -> None:
    assert markdown_table() in ROLES_DOC.read_text(encoding="utf-8")
    assert grant_markdown_table() in ROLES_DOC.read_text(encoding="utf-8")
    assert len(DOCUMENTED) == len(Role) * len(Action)


@pytest.mark.parametrize("role", [role for role in Role if role is not Role.NODE_ADMIN])
@pytest.mark.parametrize("action", list(Action))
def test_a_site_role_acts_at_its_own_site_only_and_never_on_the_node(
    role: Role, action: Action
) -> None:
    person = _person(Grant("CART01", "SG01", role))
    own = can(person, action, Resource("CART01", "SG01"))
    other_site = can(person, action, Resource("CART01", "SH01"))
    other_study = can(person, action, Resource("OTHER", "SG01"))
    if action in NODE_ACTIONS:
        assert (own, other_site, other_study) == (False, False, False)
    else:
        assert own is DOCUMENTED[(role, action)]
        assert (other_site, other_study) == (False, False)


@pytest.mark.parametrize("action", list(Action))
def test_a_node_admin_has_exactly_its_documented_actions_everywhere(action: Action) -> None:
    admin = _person(Grant("*", "*", Role.NODE_ADMIN))
    expected = DOCUMENTED[(Role.NODE_ADMIN, action)]
    assert can(admin, action, Resource()) is expected
    assert can(admin, action, Resource("CART01", "SG01")) is expected
    assert can(admin, action, Resource("ANY", "WHERE")) is expected


def test_a_person_holds_different_roles_at_different_sites() -> None:
    person = _person(
        Grant("CART01", "SG01", Role.COORDINATOR), Grant("CART01", "SH01", Role.MONITOR)
    )
    assert can(person, Action.SUBJECT_CREATE, Resource("CART01", "SG01"))
    assert not can(person, Action.SUBJECT_CREATE, Resource("CART01", "SH01"))
    assert can(person, Action.DATA_VERIFY, Resource("CART01", "SH01"))
    assert not can(person, Action.DATA_VERIFY, Resource("CART01", "SG01"))
    assert site_scope(person, "CART01", Action.SUBJECT_CREATE).sites == {"SG01"}
    assert site_scope(person, "CART01").sites == {"SG01", "SH01"}


def test_a_study_wide_grant_covers_every_site_of_that_study_only() -> None:
    monitor = _person(Grant("CART01", "*", Role.MONITOR))
    assert site_scope(monitor, "CART01", Action.SUBJECT_READ).every_site
    assert may_see_identifiers(monitor, "CART01", "ANYSITE")
    assert site_scope(monitor, "ORTHO", Action.SUBJECT_READ).empty
    assert not sees_study(monitor, "ORTHO")


def test_identifiers_are_for_roles_with_identifier_access_only() -> None:
    for role in Role:
        person = _person(Grant("CART01", "SG01", role))
        assert (
            may_see_identifiers(person, "CART01", "SG01")
            is DOCUMENTED[(role, Action.IDENTIFIER_READ)]
        )
    statistician = _person(Grant("*", "*", Role.STATISTICIAN))
    assert not may_see_identifiers(statistician, "CART01", "SG01")


def test_granting_every_study_needs_a_grant_over_every_study() -> None:
    study_admin = _person(Grant("CART01", "*", Role.STUDY_ADMIN))
    assert can(study_admin, Action.GRANT_MANAGE, Resource("CART01", "SG01"))
    assert can(study_admin, Action.GRANT_MANAGE, Resource("CART01", "*"))
    assert not can(study_admin, Action.GRANT_MANAGE, Resource("*", "*"))
    assert not can(study_admin, Action.GRANT_MANAGE, Resource("ORTHO", "SG01"))
    site_admin = _person(Grant("CART01", "SG01", Role.STUDY_ADMIN))
    assert not can(site_admin, Action.GRANT_MANAGE, Resource("CART01", "*"))


def test_a_token_scope_narrows_grants_and_drops_node_power() -> None:
    person = _person(
        Grant("*", "*", Role.NODE_ADMIN),
        Grant("*", "*", Role.AUDITOR),
        Grant("CART01", "SG01", Role.COORDINATOR),
        Grant("ORTHO", "SG01", Role.COORDINATOR),
    )
    scoped = person.narrowed_to({"CART01"})
    assert scoped.token_studies == {"CART01"}
    assert scoped.grants == {
        Grant("CART01", "*", Role.AUDITOR),
        Grant("CART01", "SG01", Role.COORDINATOR),
    }
    assert not can(scoped, Action.USER_MANAGE, Resource())
    assert not can(scoped, Action.NODE_AUDIT_READ, Resource())
    assert not sees_study(scoped, "ORTHO")
