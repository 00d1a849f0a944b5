"""The pages' own static files: one stylesheet and one small script, served by the node.

Each is a file of the package, served under ``/static/`` with its content hash in the
address (:func:`static_url`) so a browser may keep it for a year and fetches a changed one at
once. The pages' Content-Security-Policy allows styles, scripts and fetches from the node
itself only: no inline style or script, no CDN, no build step.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException, Request, Response

__all__ = ["STATIC_FILES", "static_router", "static_url"]

#: name -> media type; nothing else is served from /static/
STATIC_FILES: Final = {
    "consortia.css": "text/css; charset=utf-8",
    "api-docs.css": "text/css; charset=utf-8",
    "consortia-forms.js": "text/javascript; charset=utf-8",
}


@cache
def _file(name: str) -> tuple[bytes, str]:
    body = resources.files("consortia.web").joinpath(f"static/{name}").read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


def static_url(name: str) -> str:
    """The address of static file ``name``, with its content hash."""
    return f"/static/{name}?v={_file(name)[1]}"


def static_router() -> APIRouter:
    """Serves :data:`STATIC_FILES` (cacheable, revalidated by their hash)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/static/{name}")
    def static_file(request: Request, name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(404)
        body, digest = _file(name)
        etag = f'"{digest}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return router
