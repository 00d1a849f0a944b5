"""An investigator's signature worklist: the forms they may sign (complete or verified, at
their sites), several signed at once with the password entered once.

* ``GET /studies/{study}/sign``: the forms awaiting a signature
  (:func:`~consortia.services.form_states.signature_worklist`), each with a checkbox and a
  link to the form, the signature's meaning and the password.
* ``POST /studies/{study}/sign``: :func:`~consortia.services.form_states.sign_forms` signs the
  ticked forms in one transaction, one audit event each; a wrong password, a form changed
  meanwhile or one no longer signable signs none, and the page says which and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.domain.schedule import event_ref
from consortia.exceptions import AuthenticationError, ConflictError, ValidationError
from consortia.services import form_states, studies
from consortia.web.capture_common import FORM_PATH
from consortia.web.form_fields import event_text, text_of
from consortia.web.i18n import translate
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    node_settings,
    page_language,
    redirect,
    render_page,
    session_principal,
    signed_in_post,
)

__all__ = ["create_sign_router"]

SHOWN = form_states.MAX_SIGNED_AT_ONCE  # rows per page: all of them can be signed at once
_TICK = "form."  # a ticked form's field: form.<n> = subject/event/form/version, each quoted
_MAX_POST_FIELDS = SHOWN + 8


@dataclass(frozen=True, slots=True)
class _Row:
    tick: str  # the checkbox's value
    site: str
    subject_id: str
    event: str
    form_label: str
    version: int
    saved: str
    path: str


def _tick_value(subject_id: str, ref: str, form: str, version: int) -> str:
    return "/".join(quote(part, safe="") for part in (subject_id, ref, form, str(version)))


def _ticked(fields: Mapping[str, str]) -> list[tuple[str, str, str, int]] | None:
    """The ticked forms (subject, event, form, version), or None when one is malformed."""
    chosen: list[tuple[str, str, str, int]] = []
    for name, value in fields.items():
        if not name.startswith(_TICK):
            continue
        parts = value.split("/")
        if len(parts) != 4 or not parts[3].isdigit():
            return None
        subject_id, ref, form = (unquote(part) for part in parts[:3])
        chosen.append((subject_id, ref, form, int(parts[3])))
    return chosen


async def _worklist_page(
    request: Request,
    principal: Principal,
    cookie: str,
    study: str,
    *,
    site: str = "",
    status: int = 200,
    error: str = "",
    signed: int = 0,
    ticked: Sequence[str] = (),
    meaning: str = "",
) -> Response:
    engine = node_engine(request)
    definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
    entries = await run_in_threadpool(
        lambda: form_states.signature_worklist(
            engine, principal, study, site=site or None, limit=SHOWN
        )
    )
    language = page_language(request)
    forms = definition.study.forms
    rows = []
    for entry in entries:
        ref = event_ref(entry.event, entry.instance)
        rows.append(
            _Row(
                tick=_tick_value(entry.subject_id, ref, entry.form, entry.version),
                site=entry.site,
                subject_id=entry.subject_id,
                event=event_text(definition.study.events, entry.event, entry.instance, language),
                form_label=text_of(forms[entry.form].label, language)
                if entry.form in forms
                else entry.form,
                version=entry.version,
                saved=entry.updated_at.strftime("%Y-%m-%d %H:%M"),
                path=FORM_PATH.format(
                    study=quote(study, safe=""),
                    subject_id=quote(entry.subject_id, safe=""),
                    event=quote(ref, safe=""),
                    form=quote(entry.form, safe=""),
                ),
            )
        )
    secret = node_settings(request).secret_key.get_secret_value()
    return render_page(
        request,
        "sign.html",
        status,
        page_path=request.url.path,
        study=study,
        rows=rows,
        site=site,
        error=error,
        signed=signed,
        ticked=frozenset(ticked),
        meaning=meaning,
        meanings=tuple(form_states.SIGNATURE_MEANINGS),
        csrf_token=csrf_token(secret, cookie),
        full=len(rows) == SHOWN,
    )


def create_sign_router() -> APIRouter:
    """The signature worklist and its signing (not in the OpenAPI document)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/studies/{study}/sign", response_class=HTMLResponse)
    async def signature_list(
        request: Request, study: str, site: str = "", signed: int = 0
    ) -> Response:
        """The forms the investigator may sign, with the signing form."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await _worklist_page(
            request, principal, cookie, study, site=site, signed=max(signed, 0)
        )

    @router.post("/studies/{study}/sign", response_class=HTMLResponse)
    async def sign_several(request: Request, study: str) -> Response:
        """Sign the ticked forms: the password once, one signature and audit event each."""
        posted = await signed_in_post(request, max_fields=_MAX_POST_FIELDS)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        language = page_language(request)
        chosen = _ticked(fields)
        if chosen is None:
            raise PageError(400)
        meaning = fields.get("meaning", "")
        ticked = [value for name, value in fields.items() if name.startswith(_TICK)]

        async def refused(status: int, message: str) -> Response:
            return await _worklist_page(
                request,
                principal,
                cookie,
                study,
                status=status,
                error=message,
                ticked=ticked,
                meaning=meaning,
            )

        if not chosen:
            return await refused(422, translate(language, "sign.none_ticked"))
        if meaning not in form_states.SIGNATURE_MEANINGS:
            return await refused(422, translate(language, "sign.bad_meaning"))
        try:
            done = await run_in_threadpool(
                lambda: form_states.sign_forms(
                    node_engine(request),
                    node_settings(request),
                    principal,
                    study,
                    chosen,
                    password=fields.get("password", ""),
                    meaning=meaning,
                )
            )
        except AuthenticationError:  # the session goes on; nothing is signed
            return await refused(401, translate(language, "sign.password_refused"))
        except ConflictError as error:  # a form changed or was signed meanwhile
            return await refused(409, translate(language, "sign.conflict") + " " + str(error))
        except ValidationError as error:
            detail = "; ".join(problem.message for problem in error.problems)
            return await refused(422, translate(language, "sign.refused") + " " + detail)
        return redirect(request, f"{request.url.path}?{urlencode({'signed': len(done)})}")

    return router
