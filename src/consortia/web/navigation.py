"""The navigation bar every signed-in page shows.

The bar is built from the request alone: :func:`consortia.web.pages.session_principal`
remembers the signed-in principal on ``request.state``, and the study in the page's path
(``/studies/{study}/...``) is the current one. Links a principal may not follow are not
shown (the pages still check on their own: the bar is a convenience, not a guard).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal

__all__ = ["NavLink", "Navigation", "navigation_for", "remember_principal"]

_STATE_KEY = "page_principal"


@dataclass(frozen=True, slots=True)
class NavLink:
    """One link of the bar: ``key`` names its label in the catalogue and its element id."""

    key: str
    href: str
    current: bool


@dataclass(frozen=True, slots=True)
class Navigation:
    """What the bar shows a signed-in principal on one page."""

    name: str
    email: str
    study: str | None
    studies: tuple[tuple[str, str], ...]
    links: tuple[NavLink, ...]
    csrf_token: str


def remember_principal(request: Request, principal: Principal, csrf_token: str) -> None:
    """Keep the page's principal (and its sign-out token) for the navigation bar."""
    setattr(request.state, _STATE_KEY, (principal, csrf_token))


def _study_in_path(request: Request, studies: frozenset[str]) -> str | None:
    study = request.path_params.get("study")
    if isinstance(study, str) and (study in studies or "*" in studies):
        return study
    return None


def navigation_for(request: Request, *, is_hub: bool) -> Navigation | None:
    """The bar for this request, or None when nobody is signed in."""
    remembered = getattr(request.state, _STATE_KEY, None)
    if remembered is None:
        return None
    principal, token = remembered
    assert isinstance(principal, Principal)
    assert isinstance(token, str)
    named = principal.studies()
    study = _study_in_path(request, named)
    path = request.url.path
    links: list[NavLink] = [NavLink("nav.home", "/", path == "/")]
    if study is not None:
        base = f"/studies/{study}"
        scope = Resource(study)
        study_links = [
            ("nav.subjects", f"{base}/subjects", Action.SUBJECT_READ),
            ("nav.dashboard", f"{base}/dashboard", Action.SUBJECT_READ),
            ("nav.queries", f"{base}/queries", Action.QUERY_READ),
            ("nav.sdv", f"{base}/sdv", Action.DATA_VERIFY),
            ("nav.sign", f"{base}/sign", Action.DATA_SIGN),
        ]
        for key, href, action in study_links:
            if can(principal, action, scope):
                links.append(NavLink(key, href, path == href or path.startswith(href + "/")))
    if can(principal, Action.APPROVAL_DECIDE, Resource()):
        links.append(NavLink("nav.approvals", "/approvals", path.startswith("/approvals")))
    if is_hub and can(principal, Action.HUB_MANAGE, Resource()):
        links.append(NavLink("nav.hub", "/hub", path.startswith("/hub")))
    studies = tuple((code, f"/studies/{code}/subjects") for code in sorted(named) if code != "*")
    return Navigation(
        name=principal.name,
        email=principal.email,
        study=study,
        studies=studies,
        links=tuple(links),
        csrf_token=token,
    )
