"""Form states after entry: source-data verification, signature, lock and unlock.

::

    not started ─► in progress ─► complete ─► verified ─► signed ─► locked
                                      ▲           │          │         │
                                      └── a change clears ───┘     unlock (reason)

* **verify** (monitor): source-data verification of a complete form.
* **sign** (investigator): the signer re-enters the password (21 CFR Part 11 §11.200(a));
  the signature records the printed name, the UTC time and its meaning (§11.50) and is
  linked to the form in the audit trail (§11.70).
* **lock** (data manager): nothing changes until it is unlocked with a reason.

Each step names the version it acts on, bumps it and is audited, so a coordinator who read
the form before it was verified cannot overwrite it without reloading (409).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.config import Settings
from consortia.exceptions import ConflictError, Problem, ValidationError
from consortia.services.authentication import reauthenticate
from consortia.services.common import (
    check_page,
    find_subject,
    form_audit_id,
    require_in_study,
    saved_form,
    utc_now,
    visible_study,
)
from consortia.services.unit_of_work import UnitOfWork, reading, writing
from consortia.storage.capture import (
    CaptureRepository,
    FormRecord,
    SignatureRepository,
    VerificationRepository,
    WorklistEntry,
)

__all__ = [
    "MAX_SIGNED_AT_ONCE",
    "SIGNATURE_MEANINGS",
    "STEPS",
    "FormRecord",
    "lock_form",
    "sdv_worklist",
    "sign_form",
    "sign_forms",
    "signature_worklist",
    "unlock_form",
    "verify_form",
]

#: The most forms one signing signs (a page of the signature worklist).
MAX_SIGNED_AT_ONCE: Final = 100

#: What a signature means (21 CFR Part 11 §11.50(a)(3)); the signer picks one.
SIGNATURE_MEANINGS: Final[Mapping[str, str]] = {
    "authorship": "I am the author of the data in this form",
    "review": "I have reviewed the data in this form",
    "approval": "I approve the data in this form as accurate and complete",
    "responsibility": "I take responsibility for the data in this form",
}


#: Each step: the policy action it needs and the states a form may be in for it.
STEPS: Final[Mapping[str, tuple[Action, frozenset[str]]]] = {
    "verify": (Action.DATA_VERIFY, frozenset({"complete", "signed"})),
    "sign": (Action.DATA_SIGN, frozenset({"complete", "verified"})),
    "lock": (Action.FORM_LOCK, frozenset({"in_progress", "complete", "verified", "signed"})),
    "unlock": (Action.FORM_LOCK, frozenset({"locked"})),
}


def _transition(
    engine: Engine,
    principal: Principal,
    where: tuple[str, str, str, str],
    version: int,
    *,
    action: Action,
    audit_action: str,
    check: Any,
    changes: Mapping[str, Any],
    after: Mapping[str, Any],
    reason: str | None = None,
) -> FormRecord:
    visible_study(principal, where[0])
    with writing(engine, principal) as work:
        return _step(
            work,
            principal,
            where,
            version,
            action=action,
            audit_action=audit_action,
            check=check,
            changes=changes,
            after=after,
            reason=reason,
        )


def _step(
    work: UnitOfWork,
    principal: Principal,
    where: tuple[str, str, str, str],
    version: int,
    *,
    action: Action,
    audit_action: str,
    check: Any,
    changes: Mapping[str, Any],
    after: Mapping[str, Any],
    reason: str | None = None,
) -> FormRecord:
    """One step on one form inside the caller's transaction, with its audit event."""
    study, subject_id, ref, form = where
    subject = find_subject(work.connection, principal, study, subject_id)
    require_in_study(principal, action, study, subject.site)
    canonical, record = saved_form(work.connection, principal, subject, ref, form)
    capture = CaptureRepository(work.connection, principal)
    if record.version != version:
        raise ConflictError(
            f"form {form} of {subject_id} at {ref} is at version {record.version}, "
            f"not {version}; reload it"
        )
    check(record)
    now = utc_now()
    values = {key: (now if value is _NOW else value) for key, value in changes.items()}
    moved = capture.update_form(record.id, expected_version=version, version=version + 1, **values)
    if not moved:
        raise ConflictError(f"form {form} of {subject_id} at {ref} changed meanwhile; reload it")
    entity = form_audit_id(study, subject_id, canonical, form)
    work.audit(
        audit_action,
        "form",
        entity,
        chain=study,
        site=subject.site,
        before={"state": record.state, "version": record.version},
        after={"version": version + 1, "at": now.isoformat(), **after},
        reason=reason,
    )
    return capture.form_by_pk(record.id)


_NOW = object()  # placeholder for "the transaction's time" in ``changes``


def _needs(step: str, doing: str) -> Any:
    states = STEPS[step][1]

    def check(record: FormRecord) -> None:
        if record.state not in states:
            raise ConflictError(
                f"form {record.form} is {record.state}; {doing} needs it "
                + " or ".join(state for state in _ORDER if state in states)
            )

    return check


_ORDER = ("in_progress", "complete", "verified", "signed", "locked")  # as messages list them


def verify_form(
    engine: Engine, principal: Principal, where: tuple[str, str, str, str], version: int
) -> FormRecord:
    """Mark source-data verification of a complete form (monitor)."""
    return _transition(
        engine,
        principal,
        where,
        version,
        action=Action.DATA_VERIFY,
        audit_action="form.verify",
        check=_needs("verify", doing="verification"),
        changes={"verified_at": _NOW, "verified_by": principal.email},
        after={"by": principal.email},
    )


def sign_form(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    where: tuple[str, str, str, str],
    version: int,
    *,
    password: str,
    meaning: str,
) -> FormRecord:
    """Sign a complete or verified form (investigator), re-entering the password."""
    if meaning not in SIGNATURE_MEANINGS:
        raise ValidationError(
            [Problem("meaning", f"{meaning!r} is not one of {', '.join(SIGNATURE_MEANINGS)}")]
        )
    visible_study(principal, where[0])
    require_in_study(principal, Action.DATA_SIGN, where[0])
    printed_name = reauthenticate(engine, settings, principal, password)
    return _transition(
        engine, principal, where, version, **_signature(principal, printed_name, meaning)
    )


def _signature(principal: Principal, printed_name: str, meaning: str) -> dict[str, Any]:
    """What a signature step changes and audits (its meaning already checked)."""
    statement = f"{meaning}: {SIGNATURE_MEANINGS[meaning]}"
    return {
        "action": Action.DATA_SIGN,
        "audit_action": "form.sign",
        "check": _needs("sign", doing="signing"),
        "changes": {
            "signed_at": _NOW,
            "signed_by": principal.email,
            "signed_name": printed_name,
            "signature_meaning": statement,
        },
        "after": {"signed_by": principal.email, "printed_name": printed_name, "meaning": statement},
    }


def sign_forms(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    study: str,
    forms: Sequence[tuple[str, str, str, int]],
    *,
    password: str,
    meaning: str,
) -> list[FormRecord]:
    """Sign several forms of one study at once (investigator): the password once, then each
    form's signature recorded and audited as :func:`sign_form` records one.

    ``forms`` are (subject, event, form, version). 21 CFR Part 11 §11.200(a)(1)(i): a series
    of signings in one continuous session starts with both components; here the password is
    checked once for the series. All or none: one transaction, so a form that changed
    meanwhile or cannot be signed refuses the whole series, and a wrong password signs none.
    """
    if meaning not in SIGNATURE_MEANINGS:
        raise ValidationError(
            [Problem("meaning", f"{meaning!r} is not one of {', '.join(SIGNATURE_MEANINGS)}")]
        )
    if not forms:
        raise ValidationError([Problem("forms", "choose at least one form to sign")])
    if len(forms) > MAX_SIGNED_AT_ONCE:
        raise ValidationError(
            [Problem("forms", f"at most {MAX_SIGNED_AT_ONCE} forms at once, not {len(forms)}")]
        )
    if len({(subject_id, ref, form) for subject_id, ref, form, _ in forms}) != len(forms):
        raise ValidationError([Problem("forms", "a form is named twice")])
    visible_study(principal, study)
    require_in_study(principal, Action.DATA_SIGN, study)
    printed_name = reauthenticate(engine, settings, principal, password)
    step = _signature(principal, printed_name, meaning)
    with writing(engine, principal) as work:
        return [
            _step(work, principal, (study, subject_id, ref, form), version, **step)
            for subject_id, ref, form, version in forms
        ]


def signature_worklist(
    engine: Engine,
    principal: Principal,
    study: str,
    *,
    site: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[WorklistEntry]:
    """Forms an investigator may sign (complete or verified) at the sites where the caller
    signs, by site and subject; ``site`` narrows to one of them."""
    visible_study(principal, study)
    require_in_study(principal, Action.DATA_SIGN, study)
    check_page(limit, offset)
    with reading(engine, principal) as work:
        return SignatureRepository(work.connection, principal).awaiting(
            study, site, limit=limit, offset=offset
        )


def lock_form(
    engine: Engine, principal: Principal, where: tuple[str, str, str, str], version: int
) -> FormRecord:
    """Lock a form against any change (data manager)."""
    return _transition(
        engine,
        principal,
        where,
        version,
        action=Action.FORM_LOCK,
        audit_action="form.lock",
        check=_needs("lock", doing="locking"),
        changes={"locked_at": _NOW, "locked_by": principal.email},
        after={"by": principal.email},
    )


def unlock_form(
    engine: Engine,
    principal: Principal,
    where: tuple[str, str, str, str],
    version: int,
    *,
    reason: str,
) -> FormRecord:
    """Unlock a locked form, with a reason (data manager)."""
    if not reason.strip():
        raise ValidationError([Problem("reason", "unlocking a form needs a reason")])
    return _transition(
        engine,
        principal,
        where,
        version,
        action=Action.FORM_LOCK,
        audit_action="form.unlock",
        check=_needs("unlock", doing="unlocking"),
        changes={"locked_at": None, "locked_by": None},
        after={"by": principal.email},
        reason=reason.strip(),
    )


def sdv_worklist(
    engine: Engine,
    principal: Principal,
    study: str,
    *,
    site: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[WorklistEntry]:
    """Forms complete but not yet verified at the sites where the caller verifies (monitor),
    by site and subject; ``site`` narrows to one of them."""
    visible_study(principal, study)
    require_in_study(principal, Action.DATA_VERIFY, study)
    check_page(limit, offset)
    with reading(engine, principal) as work:
        return VerificationRepository(work.connection, principal).awaiting(
            study, site, limit=limit, offset=offset
        )
