"""Data-entry pages: a study's subjects, a subject's events and forms, and a form to fill in.

The pages call the services the API calls (``list_subjects``, ``list_events``,
``read_form``, ``save_form``), so every rule of data entry is the API's: site scope,
validation (a hard problem saves nothing), queries opened on soft problems, the reason for
change, the form's version (someone else's save in between: nothing is saved, 409), locked
forms, and the audit trail. What the page adds is the HTML: one input per item, typed by the
item (a list of codes for a choice, yes/no for a boolean, a date picker for a date), the
messages next to the items they concern, and post/redirect/get after a save, so a reload
never saves twice.

A repeating group shows a row per instance and one empty row to add the next. A form holding
identifiers the reader may not see is shown without them and cannot be saved here: saving
every value of the form would otherwise remove the hidden ones. File items are shown, not
edited (the API takes their value as text).

Below the form, the reader's review steps: source-data verification (monitor), signature
with the password typed again and a stated meaning (investigator), lock and unlock with a
reason (data manager), each through :mod:`consortia.services.form_states`. The form's
queries with their threads, and the reader's steps on each: answer, close, re-open, with a
message; monitors and data managers open new ones (:mod:`consortia.services.queries`).
The subjects page enrols a subject (:func:`~consortia.services.subjects.enrol_subject`)
and a subject's page changes its status
(:func:`~consortia.services.schedule.change_status`). A form's save also records the
event's visit date. A subject's page also moves its schedule's day 0 with a reason
(:func:`~consortia.services.schedule.reanchor_schedule`), and an investigator signs several
forms at once from the signature worklist (:mod:`consortia.web.sign_pages`).
"""

from __future__ import annotations

from fastapi import APIRouter

from consortia.web.capture_common import FORM_PATH
from consortia.web.dashboard import create_dashboard_router
from consortia.web.form_live import create_live_router
from consortia.web.form_pages import create_form_router
from consortia.web.pages import PageRoute
from consortia.web.query_pages import create_query_router
from consortia.web.randomisation_pages import create_randomisation_router
from consortia.web.sign_pages import create_sign_router
from consortia.web.subject_pages import create_subject_router

__all__ = ["FORM_PATH", "create_capture_router"]


def create_capture_router() -> APIRouter:
    """The data-entry pages, at the root of the node's site (not in the OpenAPI document):
    one module per resource (subjects, forms, queries)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)
    for pages in (
        create_subject_router(),
        create_form_router(),
        create_query_router(),
        create_randomisation_router(),
        create_sign_router(),
    ):
        router.include_router(pages)
    router.include_router(create_live_router())
    router.include_router(create_dashboard_router())
    return router
