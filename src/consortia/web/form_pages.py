"""A form instance's page: read it, save it, take a review step (verify, sign, lock,
unlock). The whole page is one read service
(:func:`~consortia.services.data_entry.read_form_page`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.exceptions import AuthenticationError, ConflictError, ValidationError
from consortia.services import data_entry, form_checks, form_states, queries, studies
from consortia.services.data_entry import FormPage, FormSave
from consortia.web.capture_common import (
    FORM_PATH,
    MAX_DATA_FORM_BYTES,
    MAX_DATA_FORM_FIELDS,
    MAX_REASON_LENGTH,
    STEPS,
    Outcome,
    as_entered,
    outcome_of,
    query_rows_of,
    refusal_of,
    review_steps,
    state_label,
)
from consortia.web.form_fields import REPEATED, flat_texts, groups, posted_values, text_of
from consortia.web.form_live import input_names
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

__all__ = [
    "create_form_router",
    "form_page",
]


async def form_page(
    request: Request,
    principal: Principal,
    cookie: str,
    where: tuple[str, str, str, str],
    page: FormPage,
    *,
    status: int = 200,
    outcome: Outcome | None = None,
    posted: Mapping[str, object] | None = None,
    complete: bool | None = None,
    reason: str = "",
    visit_date: str | None = None,
) -> Response:
    study, subject_id, event, form = where
    view, definition = page.view, page.definition
    form_def = definition.study.forms.get(form)
    if form_def is None:
        raise PageError(404)
    language = page_language(request)
    outcome = outcome or Outcome()
    values = posted if posted is not None else flat_texts(view.values)
    editable = (
        not view.identifiers_masked
        and view.state != "locked"
        and can(principal, Action.DATA_ENTER, Resource(study, view.site))
    )
    secret = node_settings(request).secret_key.get_secret_value()
    if visit_date is None:  # the event's visit date as recorded
        visit_date = page.visit_date.isoformat() if page.visit_date else ""
    query_rows = query_rows_of(page.queries, principal, study, view.site, definition.index.key)
    targets: list[tuple[str, str]] = []  # (item key, label) a new query can be put on
    if view.record is not None and can(principal, Action.QUERY_OPEN, Resource(study, view.site)):
        targets = [("", translate(language, "queries.whole_form"))]
        stored = flat_texts(view.values)
        for group_name, group in form_def.groups.items():
            for name, item in group.items.items():
                label = text_of(item.label, language)
                if not group.repeating:
                    targets.append((name, f"{label} ({name})"))
                    continue
                targets += [
                    (key, f"{label} ({key})")
                    for key in stored
                    if (match := REPEATED.fullmatch(key)) is not None
                    and (match[1], match[3]) == (group_name, name)
                ]
    hidden = page.hidden  # for the stored values; for values posted back, checked again
    if posted is not None and editable:
        shown = {key: str(value) for key, value in values.items() if value is not None}
        live = await run_in_threadpool(
            lambda: form_checks.check_entry(
                node_engine(request),
                principal,
                where,
                posted_values(form_def, shown),
                complete=False,
            )
        )
        hidden = live.check.hidden
    return render_page(
        request,
        "form.html",
        status,
        hidden=frozenset(input_names(hidden, form)),
        page_path=request.url.path,
        study=study,
        subject_id=subject_id,
        event=event,
        form=form,
        form_label=text_of(form_def.label, language),
        view=view,
        state=state_label(language, view.state),
        groups=groups(definition.study, form_def, language, values, outcome.by_item),
        outcome=outcome,
        editable=editable,
        complete=view.state not in ("not_started", "in_progress") if complete is None else complete,
        reason=reason,
        visit_date=visit_date,
        csrf_token=csrf_token(secret, cookie),
        steps=review_steps(principal, study, view.site, view.state),
        meanings=tuple(form_states.SIGNATURE_MEANINGS.items()),
        record=view.record,
        queries=query_rows,
        query_marks={row.item: row.id for row in reversed(query_rows) if row.status != "closed"},
        query_targets=targets,
        assignees=page.assignees,
    )


def create_form_router() -> APIRouter:
    """A form's page, its save and its review steps."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get(FORM_PATH, response_class=HTMLResponse)
    async def read_form(
        request: Request,
        study: str,
        subject_id: str,
        event: str,
        form: str,
        saved: int = 0,
        done: str = "",
    ) -> Response:
        """The form with its values, review steps and queries."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        page = await run_in_threadpool(  # one read service: the whole page in one call
            data_entry.read_form_page,
            node_engine(request),
            principal,
            study,
            subject_id,
            event,
            form,
        )
        outcome = Outcome(
            saved=saved if saved and saved == page.view.version else None,
            done=done
            if done in STEPS or done in queries.STEPS or done in ("open", "assign")
            else "",
        )
        where = (study, subject_id, event, form)
        return await form_page(request, principal, cookie, where, page, outcome=outcome)

    @router.post(FORM_PATH, response_class=HTMLResponse)
    async def save_form(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        posted = await signed_in_post(
            request, max_bytes=MAX_DATA_FORM_BYTES, max_fields=MAX_DATA_FORM_FIELDS
        )
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        version = fields.get("version", "")
        if not version.isdigit():
            raise PageError(400)
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        form_def = definition.study.forms.get(form)
        if form_def is None:
            raise PageError(404)
        # the service keeps file items as stored (they are shown, not edited) and refuses a
        # save when identifier values are masked (the hidden values would be removed)
        values = posted_values(form_def, fields)
        complete = fields.get("complete") == "1"
        reason = fields.get("reason", "")

        async def current() -> FormPage:  # the form as stored, to show it again with a refusal
            return await run_in_threadpool(
                data_entry.read_form_page, engine, principal, study, subject_id, event, form
            )

        if len(reason) > MAX_REASON_LENGTH:  # the textarea's maxlength keeps browsers under it
            outcome = Outcome(
                refused=True, reason_error=translate(page_language(request), "form.reason_too_long")
            )
            return await form_page(
                request, principal, cookie, where, await current(), status=422, outcome=outcome
            )
        echo = as_entered(fields)
        visit_text = fields.get("visit_date", "").strip()
        try:
            visit = date.fromisoformat(visit_text) if visit_text else None
        except ValueError:
            outcome = Outcome(
                refused=True, general=[translate(page_language(request), "subjects.bad_date")]
            )
            return await form_page(
                request,
                principal,
                cookie,
                where,
                await current(),
                status=422,
                outcome=outcome,
                posted=echo,
                complete=complete,
                reason=reason,
                visit_date=visit_text,
            )
        save = FormSave(
            version=int(version),
            values=values,
            complete=complete,
            reason=reason or None,
            visit_date=visit,
            keep_files=True,
        )
        try:
            view = await run_in_threadpool(
                data_entry.save_form, engine, principal, study, subject_id, event, form, save
            )
        except ValidationError as error:
            return await form_page(
                request,
                principal,
                cookie,
                where,
                await current(),
                status=422,
                outcome=outcome_of(error, form),
                posted=echo,
                complete=complete,
                reason=reason,
                visit_date=visit_text,
            )
        except ConflictError as error:
            now = await run_in_threadpool(
                data_entry.read_form_page, engine, principal, study, subject_id, event, form
            )
            return await form_page(
                request,
                principal,
                cookie,
                where,
                now,
                status=409,
                outcome=Outcome(conflict=str(error)),
            )
        # post/redirect/get: a reload shows the saved form and does not save again
        return redirect(request, f"{request.url.path}?saved={view.version}")

    @router.post(FORM_PATH + "/state", response_class=HTMLResponse)
    async def changestate_label(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        """Verify, sign (the password again), lock or unlock (a reason) the form."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        step, version = fields.get("step", ""), fields.get("version", "")
        if step not in STEPS or not version.isdigit():
            raise PageError(400)
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        language = page_language(request)
        try:
            if step == "verify":
                await run_in_threadpool(
                    form_states.verify_form, engine, principal, where, int(version)
                )
            elif step == "sign":
                await run_in_threadpool(
                    lambda: form_states.sign_form(
                        engine,
                        node_settings(request),
                        principal,
                        where,
                        int(version),
                        password=fields.get("password", ""),
                        meaning=fields.get("meaning", ""),
                    )
                )
            elif step == "lock":
                await run_in_threadpool(
                    form_states.lock_form, engine, principal, where, int(version)
                )
            else:
                await run_in_threadpool(
                    lambda: form_states.unlock_form(
                        engine, principal, where, int(version), reason=fields.get("reason", "")
                    )
                )
        except (ConflictError, ValidationError, AuthenticationError) as error:
            refusal = (
                refusal_of(error)
                if not isinstance(error, AuthenticationError)
                # a mistyped password: the signature is refused, the session goes on
                else {
                    "status": 401,
                    "outcome": Outcome(step_error=translate(language, "form.password_refused")),
                }
            )
            now = await run_in_threadpool(
                data_entry.read_form_page, engine, principal, study, subject_id, event, form
            )
            return await form_page(request, principal, cookie, where, now, **refusal)
        path = request.url.path.removesuffix("/state")
        return redirect(request, f"{path}?done={step}")

    return router
