"""No two API routes answer the same request, so the order routers are included in is free.

``api_routers()`` puts the busiest router first (FastAPI tries routes in order); that is
only safe while no request could match two routes with a method in common.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from consortia.api.router import API_PREFIX, api_routers

SAMPLES = ("x", "SG01", "screening.2", "ae_log", "7", "aes[1].term", "export")


def _routes() -> list[APIRoute]:
    found = []
    for router in api_routers():
        for route in router.routes:
            assert isinstance(route, APIRoute)
            found.append(route)
    return found


def _requests(path: str) -> list[str]:
    """Concrete paths for a template: each parameter replaced by each sample value."""
    paths = [path]
    for name in re.findall(r"{([^}]+)}", path):
        paths = [p.replace("{" + name + "}", s, 1) for p in paths for s in SAMPLES]
    return paths


def test_no_request_matches_two_routes_with_a_method_in_common() -> None:
    routes = _routes()
    assert len(routes) > 40
    clashes = []
    for route in routes:
        for concrete in _requests(route.path):
            for other in routes:
                if other is route or not (route.methods & other.methods):
                    continue
                if other.path_regex.match(concrete):
                    clashes.append((route.path, other.path, concrete))
    assert clashes == []


def test_every_api_route_is_served_under_the_prefix() -> None:
    from consortia.app import create_app
    from consortia.config import Settings

    app = create_app(Settings(database_url="sqlite://"))
    served = set(app.openapi()["paths"])
    assert {API_PREFIX + r.path for r in _routes() if r.include_in_schema} == served
    app.state.engine.dispose()


def test_every_route_that_needs_credentials_declares_the_same_security() -> None:
    """The form routes check credentials without FastAPI's security dependencies
    (``deps.lean_caller``); the OpenAPI document must still say they need them."""
    from consortia.app import create_app
    from consortia.config import Settings

    app = create_app(Settings(database_url="sqlite://"))
    try:
        document = app.openapi()
    finally:
        app.state.engine.dispose()
    declared = {
        (method, path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    form = f"{API_PREFIX}/studies/{{study}}/subjects/{{subject_id}}/events/{{event}}/forms/{{form}}"
    events = f"{API_PREFIX}/studies/{{study}}/subjects/{{subject_id}}/events"
    expected = declared[("get", events)]
    assert expected == [{"HTTPBearer": []}, {"APIKeyCookie": []}]
    assert declared[("get", form)] == expected
    assert declared[("put", form)] == expected
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyCookie"}
