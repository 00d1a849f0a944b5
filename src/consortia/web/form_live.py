"""The live form's question to the node: "what would a save of these values say?".

The form page's script (static/consortia-forms.js) posts the form as typed so far to
``FORM_PATH/check`` after each pause in typing; the answer names, by input, the items the
study's ``show_if`` hides, the hard errors and the soft warnings a save would give
(:func:`~consortia.services.form_checks.check_entry`). The page shows them at once; the
save still checks everything again.

The answer is JSON; a request the node refuses gets a JSON problem with its status and no
detail the page did not already have (no stack trace).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from consortia.entry.errors import status_for
from consortia.exceptions import ConsortiaError, ValidationError
from consortia.services import form_checks, studies
from consortia.web.capture_common import (
    FORM_PATH,
    MAX_DATA_FORM_BYTES,
    MAX_DATA_FORM_FIELDS,
    outcome_of,
)
from consortia.web.form_fields import posted_values
from consortia.web.pages import PageError, node_engine, signed_in_post

__all__ = ["create_live_router", "input_names", "live_answer"]

log = logging.getLogger(__name__)


def input_names(paths: frozenset[str], form: str) -> list[str]:
    """The inputs (``ecog``, ``events[2].ae_grade``) of the form's item paths."""
    prefix = f"forms.{form}."
    return sorted(path[len(prefix) :] for path in paths if path.startswith(prefix))


def live_answer(live: form_checks.LiveCheck, form: str) -> dict[str, object]:
    """The JSON the page's script applies."""
    errors = outcome_of(ValidationError(list(live.check.errors)), form)
    warnings = outcome_of(ValidationError(list(live.check.warnings)), form)
    return {
        "hidden": input_names(live.check.hidden, form),
        "missing": input_names(live.missing, form),
        "errors": errors.by_item,
        "warnings": warnings.by_item,
        "general": errors.general,
    }


def _problem(status: int) -> JSONResponse:
    return JSONResponse({"status": status}, status_code=status)


def create_live_router() -> APIRouter:
    """``POST FORM_PATH/check``: the live form's check."""
    router = APIRouter(include_in_schema=False)

    @router.post(FORM_PATH + "/check")
    async def check_form(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        try:
            posted = await signed_in_post(
                request, max_bytes=MAX_DATA_FORM_BYTES, max_fields=MAX_DATA_FORM_FIELDS
            )
            if posted is None:
                return _problem(401)
            fields, _, principal = posted
            engine = node_engine(request)
            definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
            form_def = definition.study.forms.get(form)
            if form_def is None:
                return _problem(404)
            values: Mapping[str, object] = posted_values(form_def, fields)
            live = await run_in_threadpool(
                lambda: form_checks.check_entry(
                    engine,
                    principal,
                    (study, subject_id, event, form),
                    values,
                    complete=fields.get("complete") == "1",
                )
            )
        except PageError as error:
            return _problem(error.status)
        except ConsortiaError as error:
            status = status_for(error)
            if status >= 500:
                log.error("error checking form %s: %s", request.url.path, error)
            return _problem(500 if status >= 500 else status)
        except Exception:
            log.exception("internal error checking form %s", request.url.path)
            return _problem(500)
        return JSONResponse(live_answer(live, form), headers={"Cache-Control": "no-store"})

    return router
