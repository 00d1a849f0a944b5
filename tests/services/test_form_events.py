"""One ``form.save`` event: an interactive save and an import write the same shape."""

from __future__ import annotations

import ast
from pathlib import Path

import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.services import data_entry, imports, studies, subjects
from consortia.services.data_entry import FormSave
from consortia.storage.audit import AuditEvent, iter_events

STUDY = "CART-LBCL"
ADMIN = Principal(
    7,
    "dm@sg.example",
    "DM",
    frozenset(Grant(STUDY, "*", role) for role in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)


def _form_saves(engine: sa.Engine) -> list[AuditEvent]:
    with engine.connect() as connection:
        return [e for e in iter_events(connection, chain=STUDY) if e.action == "form.save"]


def _shape(event: AuditEvent) -> dict[str, object]:
    """What must agree: every field but who, when and why; ``after`` without the derived
    variables (an import records all of them on the subject's last form instead)."""
    study, _subject, ref, form = event.entity_id.split("/")
    after = {k: v for k, v in (event.after or {}).items() if not k.startswith("derived")}
    return {
        "entity_type": event.entity_type,
        "entity_id": (study, ref, form),
        "site": event.site,
        "before": event.before,
        "after": after,
    }


def test_an_imported_form_and_the_same_form_saved_on_its_page_write_the_same_event(
    engine: sa.Engine, tmp_path: Path
) -> None:
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    data = synthesize("cart-lbcl", subjects=2, site="SG01", seed=5)
    imports.import_file(engine, ADMIN, STUDY, data.write_csv(tmp_path / "cart.csv"))
    imported = _form_saves(engine)[0]
    assert imported.reason is not None
    assert imported.reason.startswith("bulk import of ")
    _study, subject_id, ref, form = imported.entity_id.split("/")
    source = subjects.get_subject(engine, ADMIN, STUDY, subject_id)
    subjects.enrol_subject(
        engine,
        ADMIN,
        STUDY,
        subjects.SubjectInput("SG01-900", "SG01", screening_date=source.anchor_date),
    )
    after = imported.after or {}
    values = {**after.get("values", {}), **after.get("identifiers", {})}
    complete = after["status"] == "complete"
    data_entry.save_form(
        engine, ADMIN, STUDY, "SG01-900", ref, form, FormSave(0, values, complete=complete)
    )
    saved = _form_saves(engine)[-1]
    assert saved.entity_id == f"{STUDY}/SG01-900/{ref}/{form}"
    assert _shape(saved) == _shape(imported)
    assert saved.reason is None


SERVICES = Path(__file__).resolve().parents[2] / "src" / "consortia" / "services"


def test_only_one_module_of_the_services_builds_a_form_save_event() -> None:
    builders = sorted(
        path.name
        for path in SERVICES.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value == "form.save"
    )
    assert builders == ["form_events.py"]
