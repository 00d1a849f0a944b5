"""``GET /api/v1/docs``: the API's reference, one self-contained page.

FastAPI's own docs page loads Swagger UI's script and styles from a public CDN: a node's
administrators' browsers would run whatever that CDN serves, on the node's origin. This
page is rendered on the node from the same OpenAPI document (``/api/v1/openapi.json``,
which any OpenAPI tool can load), loads nothing from anywhere, runs no script, and is
served under the web pages' Content-Security-Policy.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from consortia.entry.static_files import static_url

__all__ = ["DOCS_CSP", "docs_router"]

#: The web pages' policy: nothing but the node's own stylesheet, script and fetches.
DOCS_CSP: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_METHODS: Final = ("get", "post", "put", "patch", "delete")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _schema_name(schema: Mapping[str, Any] | None) -> str:
    if not schema:
        return ""
    reference = schema.get("$ref")
    if isinstance(reference, str):
        return reference.rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items')) or 'values'}"
    return str(schema.get("type", ""))


def _operation(method: str, path: str, operation: Mapping[str, Any]) -> str:
    parts = [
        f'<div class="op"><p><span class="method">{_e(method)}</span> <code>{_e(path)}</code>'
        f" {_e(operation.get('summary', ''))}</p>"
    ]
    if operation.get("description"):
        parts.append(f"<p>{_e(operation['description'])}</p>")
    parameters = operation.get("parameters") or []
    if parameters:
        rows = "".join(
            f"<tr><td><code>{_e(p.get('name'))}</code></td><td>{_e(p.get('in'))}</td>"
            f"<td>{'required' if p.get('required') else 'optional'}</td>"
            f"<td>{_e(_schema_name(p.get('schema')))}</td></tr>"
            for p in parameters
        )
        parts.append(
            f"<table><tr><th>parameter</th><th>in</th><th></th><th></th></tr>{rows}</table>"
        )
    body = (operation.get("requestBody") or {}).get("content", {})
    for media_type, content in body.items():
        name = _schema_name(content.get("schema"))
        parts.append(f"<p>body ({_e(media_type)}): <code>{_e(name)}</code></p>")
    responses = operation.get("responses") or {}
    if responses:
        listed = ", ".join(
            f"{_e(code)} {_e(answer.get('description', ''))}" for code, answer in responses.items()
        )
        parts.append(f"<p>responses: {listed}</p>")
    parts.append("</div>")
    return "".join(parts)


def render_docs(document: Mapping[str, Any], openapi_url: str) -> str:
    """The page for an OpenAPI ``document``: operations by tag, then the schemas."""
    info = document.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(method, path, operation))
    sections = "".join(
        f"<h2>{_e(tag)}</h2>{''.join(operations)}" for tag, operations in by_tag.items()
    )
    schemas = document.get("components", {}).get("schemas", {})
    schema_text = "".join(
        f"<h3 id='{_e(name)}'>{_e(name)}</h3><pre>{_e(json.dumps(schema, indent=2))}</pre>"
        for name, schema in sorted(schemas.items())
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(info.get('title', 'API'))} API</title>"
        f"<link rel='stylesheet' href='{static_url('api-docs.css')}'></head><body>"
        f"<h1>{_e(info.get('title', 'API'))} API {_e(info.get('version', ''))}</h1>"
        f"<p>{_e(info.get('summary', ''))}. The OpenAPI document: "
        f"<a href='{_e(openapi_url)}'>{_e(openapi_url)}</a>. Send an API token as "
        "<code>Authorization: Bearer cst_...</code>.</p>"
        f"{sections}<h2>schemas</h2>{schema_text}</body></html>"
    )


def docs_router(openapi_url: str) -> APIRouter:
    """The docs page's route, to include under the API's prefix."""
    router = APIRouter()

    @router.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        page = render_docs(request.app.openapi(), openapi_url)
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    return router
