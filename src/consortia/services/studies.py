"""Study definitions on a node: load a YAML version, read the current one (parsed once).

A study's definition is code: the YAML is stored verbatim with its sha256, and each load
that changes it is a new version, audited on the study's chain. Loading the same text again
changes nothing. Parsed definitions are cached by their hash, so a form save does not parse
YAML.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource, site_scope
from consortia.auth.principal import Principal
from consortia.domain.study import Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.values import StudyIndex
from consortia.exceptions import (
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services.common import check_code, require, utc_now, visible_study
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import StudyVersionRecord, StudyVersionRepository

__all__ = [
    "Definition",
    "StudyVersionRecord",
    "current_definition",
    "definition_at",
    "list_versions",
    "load_definition",
    "read_definition",
]


@dataclass(frozen=True)
class Definition:
    """The current version of a study on this node, parsed and indexed."""

    code: str
    version: int
    sha256: str
    study: Study
    index: StudyIndex


_PARSED: dict[str, tuple[Study, StudyIndex]] = {}


@lru_cache(maxsize=32)
def _parse(sha256: str, source: str, file: str) -> tuple[Study, StudyIndex]:
    del sha256  # the cache key: equal text, equal hash
    study = load_study_text(source, file)
    return study, StudyIndex.of(study)


def current_definition(connection: Connection, study: str) -> Definition:
    """The study's current definition; not found when none is loaded on this node."""
    key = StudyVersionRepository(connection).current_key(study)
    if key is None:
        raise NotFoundError(
            f"study {study} has no definition on this node; load it with "
            "`consortia study load FILE` or PUT /api/v1/studies/{study}/definition"
        )
    return definition_at(connection, study, key)


def definition_at(connection: Connection, study: str, key: tuple[int, str]) -> Definition:
    """The study's definition of ``key`` ((version, sha256), as read beside other rows)."""
    version, digest = key
    parsed = _PARSED.get(digest)
    if parsed is None:  # the YAML is read and parsed once per version, not per request
        source = StudyVersionRepository(connection).source(study, version)
        if len(_PARSED) >= 64:  # a node holds a few studies and versions; stay bounded
            _PARSED.clear()
        parsed = _PARSED[digest] = _parse(digest, source, f"{study} v{version}")
    return Definition(study, version, digest, *parsed)


def load_definition(
    engine: Engine,
    principal: Principal,
    source: str,
    *,
    file: str = "<input>",
    expected_study: str | None = None,
) -> tuple[StudyVersionRecord, bool]:
    """Load a study YAML as the study's new current version; (record, whether it changed).

    Every problem of the file is reported at once (StudyDefinitionError) and nothing is
    stored. The study code is the file's ``study.id``.
    """
    if expected_study is not None:
        visible_study(principal, expected_study)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    parsed, _ = _parse(digest, source, file)  # a text loaded before is not parsed again
    code = check_code(parsed.study.id, "study")
    if expected_study is not None and code != expected_study:
        raise ValidationError(
            [Problem("study.id", f"the file defines study {code}, not {expected_study}")]
        )
    if not site_scope(principal, code, Action.STUDY_MANAGE).every_site:
        # a definition changes the study at every site, so a site-level grant is not enough
        require(principal, Action.STUDY_MANAGE, Resource(code))
        raise PermissionDeniedError(
            f"loading study {code}'s definition changes it at every site: it needs a "
            "study-wide (site *) study_admin grant"
        )
    with writing(engine, principal) as work:
        versions = StudyVersionRepository(work.connection)
        current = versions.current(code)
        if current is not None and current.sha256 == digest:
            return current, False
        now = utc_now()
        number = versions.add(
            study=code,
            label=str(parsed.study.version),
            source=source,
            sha256=digest,
            now=now,
            by=principal.email,
        )
        work.audit(
            "study.load",
            "study",
            code,
            chain=code,
            before=None if current is None else {"version": current.version},
            after={
                "version": number,
                "label": str(parsed.study.version),
                "sha256": digest,
                "summary": parsed.summary(),
            },
        )
        record = versions.current(code)
    assert record is not None
    return record, True


def list_versions(engine: Engine, principal: Principal, study: str) -> list[StudyVersionRecord]:
    """Every loaded version of a study, oldest first."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        return StudyVersionRepository(work.connection).versions(study)


def read_definition(engine: Engine, principal: Principal, study: str) -> Definition:
    """The study's current definition, for a principal who holds a role in the study."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        return current_definition(work.connection, study)
