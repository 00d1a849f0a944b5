"""Central randomisation at the hub: generating a study's sealed lists, allocating a
member's subject, and reading or exporting the lists (the unblinded statistician only).

* :func:`generate` (``consortia randomization generate STUDY --seed S``) takes the study's
  newest published version and its ``randomisation`` scheme, and keeps the seed and, for
  permuted blocks, every stratum's list of ``blocks_per_stratum`` blocks (the margin: the
  lists are long enough for every stratum to take more subjects than the study will
  enrol). The same seed always gives the same lists (``consortia.domain.randomization``).
  A study is generated once; the seed is never shown again except in an export.
* :func:`allocate` runs on a member's signed request, in one transaction that first takes
  the study's scheme row (:meth:`~consortia.storage.randomisation.HubRandomisationRepository.
  lock`), so concurrent requests for one study are served one after the other: a block
  scheme hands out each list entry once, and minimisation reads every allocation made so
  far, across all sites, before choosing. A subject allocated before gets the same
  allocation again (``repeat``), never a second one.
* :func:`read_list` and :func:`export_list` need ``randomisation_list.manage`` (the
  unblinded statistician; a coordinator is refused); both are audited, and an export
  states its reason.

The hub's audit chain records each allocation by number, stratum and list position (from
which the sealed list gives the arm), not by arm, so the chain's readers stay blind.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain.randomization import (
    MinimisationRandomiser,
    PermutedBlockRandomiser,
    PriorAllocation,
    all_strata,
    randomiser_for,
    stratum_text,
)
from consortia.domain.study import SITE_FACTOR, Study
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import ConflictError, NotFoundError, Problem, ValidationError
from consortia.federation.randomisation import ALLOCATION
from consortia.services.common import check_code, require, utc_now
from consortia.services.hub import HUB_CHAIN, remote_principal
from consortia.services.unit_of_work import writing
from consortia.storage.hub import HubRepository, PublishedStudy
from consortia.storage.randomisation import (
    AllocationRecord,
    HubRandomisationRepository,
    ListEntry,
    SchemeRecord,
)

__all__ = ["SealedList", "allocate", "export_list", "generate", "read_list"]

_PARSED: dict[str, Study] = {}


@dataclass(frozen=True)
class SealedList:
    """A study's scheme, its lists (block schemes) and the allocations made so far."""

    scheme: SchemeRecord
    entries: list[ListEntry]
    allocations: list[AllocationRecord]


def _study(version: PublishedStudy) -> Study:
    parsed = _PARSED.get(version.sha256)
    if parsed is None:
        if len(_PARSED) >= 32:
            _PARSED.clear()
        parsed = _PARSED[version.sha256] = load_study_text(
            version.source, f"{version.study} {version.label}"
        )
    return parsed


def _version(connection: Connection, study: str, sha256: str | None = None) -> PublishedStudy:
    repository = HubRepository(connection)
    if sha256 is None:
        found = repository.latest_study(study)
    else:
        found = next(
            (v for v in repository.studies() if v.study == study and v.sha256 == sha256), None
        )
    if found is None:
        raise NotFoundError(
            f"study {study} has not been published at this hub (`consortia hub publish`)"
        )
    return found


def generate(engine: Engine, principal: Principal, study: str, seed: int) -> SchemeRecord:
    """Generate and seal ``study``'s randomisation from ``seed`` (once per study)."""
    check_code(study, "study")
    require(principal, Action.RANDOMISATION_LIST, Resource(study))
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**128:
        raise ValidationError([Problem("--seed", "a seed is an integer from 0 to 2**128 - 1")])
    with writing(
        engine, principal, conflict=f"study {study} was randomised from a seed already"
    ) as work:
        connection = work.connection
        version = _version(connection, study)
        definition = _study(version)
        scheme = definition.randomisation
        if scheme is None:
            raise ValidationError(
                [Problem("randomisation", f"study {study} {version.label} has no scheme")]
            )
        repository = HubRandomisationRepository(connection)
        existing = repository.scheme(study)
        if existing is not None:
            raise ConflictError(
                f"study {study} was randomised from a seed already (by "
                f"{existing.generated_by} at {existing.generated_at:%Y-%m-%d %H:%M} UTC); a "
                "sealed list is never generated again"
            )
        randomiser = randomiser_for(definition, seed)
        entries: list[ListEntry] = []
        if isinstance(randomiser, PermutedBlockRandomiser):
            for stratum in all_strata(definition):
                key = stratum_text(stratum)
                entries.extend(
                    ListEntry(key, a.number, a.arm, a.block or 0, a.block_size or 0)
                    for a in randomiser.stratum_list(stratum)
                )
        record = SchemeRecord(
            study=study,
            method=scheme.method,
            seed=seed,
            study_sha256=version.sha256,
            allocations=0,
            generated_by=principal.email,
            generated_at=utc_now(),
        )
        repository.add_scheme(record, entries)
        work.audit(
            "hub.randomisation.generate",
            "study",
            study,
            chain=HUB_CHAIN,
            after={
                "method": scheme.method,
                "study_sha256": version.sha256,
                "strata": len({e.stratum for e in entries}),
                "entries": len(entries),
                # the seed itself is the secret; its hash lets an export be matched later
                "seed_sha256": hashlib.sha256(str(seed).encode()).hexdigest(),
            },
        )
    return record


def _levels(definition: Study, request: Mapping[str, Any]) -> tuple[dict[str, str], list[Problem]]:
    scheme = definition.randomisation
    assert scheme is not None
    levels = dict(request["levels"])
    problems = [
        Problem(f"levels.{name}", "is not a factor of the study's scheme")
        for name in levels
        if name not in scheme.factor_names
    ]
    site = request["site"]
    if SITE_FACTOR in scheme.factor_names and levels.setdefault(SITE_FACTOR, site) != site:
        problems.append(Problem("levels.site", "is not the subject's site"))
    return levels, problems


def allocate(engine: Engine, member: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """Allocate the subject of a member's checked request; the hub's answer body."""
    study, site, subject = str(request["study"]), str(request["site"]), str(request["subject"])
    for value, field in ((study, "study"), (site, "site"), (subject, "subject")):
        check_code(value, field)
    with writing(engine, remote_principal(member)) as work:
        connection = work.connection
        repository = HubRandomisationRepository(connection)
        scheme = repository.lock(study)  # serialises this study's allocations
        if scheme is None:
            raise NotFoundError(
                f"study {study} has no randomisation at this hub (`consortia randomization "
                "generate`)"
            )
        host = HubRepository(connection).sites(study).get(site)
        if host != member:
            raise NotFoundError(f"site {site} of study {study} is not hosted by {member}")
        definition = _PARSED.get(scheme.study_sha256) or _study(
            _version(connection, study, scheme.study_sha256)
        )
        previous = repository.allocation_of(study, subject)
        if previous is not None:
            if previous.site != site:
                raise ConflictError(f"subject {subject} was randomised at another site")
            return _answer(definition, previous, repeat=True)
        levels, problems = _levels(definition, request)
        if problems:
            raise ValidationError(problems)
        randomiser = randomiser_for(definition, scheme.seed)
        stratum = randomiser.check_levels(levels)
        key = stratum_text(stratum)
        number = scheme.allocations + 1
        position: int | None = None
        if isinstance(randomiser, MinimisationRandomiser):
            history = [PriorAllocation(a.levels, a.arm) for a in repository.allocations(study)]
            arm = randomiser.next_allocation(levels, history).arm
        else:
            position = repository.used_in_stratum(study, key) + 1
            entry = repository.entry(study, key, position)
            if entry is None:
                raise ConflictError(
                    f"the sealed list of stratum {key} is used up ({position - 1} allocations):"
                    " the unblinded statistician must extend it before anyone else is "
                    "randomised in it"
                )
            arm = entry.arm
        record = AllocationRecord(
            study=study,
            number=number,
            subject=subject,
            site=site,
            member=member,
            stratum=key,
            position=position,
            levels={name: levels[name] for name in randomiser.scheme.factor_names},
            arm=arm,
            allocated_at=utc_now(),
        )
        repository.add_allocation(record)
        repository.set_count(study, number)
        work.audit(
            "hub.randomisation.allocate",
            "subject",
            f"{study}/{subject}",
            chain=HUB_CHAIN,
            after={"site": site, "number": number, "stratum": key, "position": position},
        )
    return _answer(definition, record, repeat=False)


def _answer(definition: Study, record: AllocationRecord, *, repeat: bool) -> dict[str, Any]:
    arm = definition.arms[record.arm]
    return {
        "type": ALLOCATION,
        "study": record.study,
        "site": record.site,
        "subject": record.subject,
        "number": record.number,
        "arm": record.arm,
        "code": arm.code or f"R{record.number:04d}",
        "repeat": repeat,
    }


def read_list(engine: Engine, principal: Principal, study: str) -> SealedList:
    """The sealed lists and the allocations (``randomisation_list.manage``; audited)."""
    check_code(study, "study")
    require(principal, Action.RANDOMISATION_LIST, Resource(study))
    with writing(engine, principal) as work:  # a read of the sealed list is audited
        repository = HubRandomisationRepository(work.connection)
        scheme = repository.scheme(study)
        if scheme is None:
            raise NotFoundError(f"study {study} has no randomisation at this hub")
        sealed = SealedList(scheme, repository.entries(study), repository.allocations(study))
        work.audit("hub.randomisation.read", "study", study, chain=HUB_CHAIN)
    return sealed


def export_list(engine: Engine, principal: Principal, study: str, reason: str) -> str:
    """The sealed list as CSV for the trial master file, with the seed that reproduces it;
    ``reason`` is required and kept in the audit event."""
    check_code(study, "study")
    require(principal, Action.RANDOMISATION_LIST, Resource(study))
    reason = reason.strip()
    if len(reason) < 5:
        raise ValidationError(
            [Problem("reason", "state why the list leaves the hub (e.g. 'TMF filing at lock')")]
        )
    with writing(engine, principal) as work:  # the export is audited with its reason
        repository = HubRandomisationRepository(work.connection)
        scheme = repository.scheme(study)
        if scheme is None:
            raise NotFoundError(f"study {study} has no randomisation at this hub")
        entries, allocations = repository.entries(study), repository.allocations(study)
        work.audit(
            "hub.randomisation.export",
            "study",
            study,
            chain=HUB_CHAIN,
            reason=reason,
            after={"entries": len(entries), "allocations": len(allocations)},
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["# study", study, "method", scheme.method, "seed", scheme.seed])
    writer.writerow(["# study_sha256", scheme.study_sha256, "exported for", reason])
    writer.writerow(
        ["stratum", "position", "block", "block_size", "arm", "number", "subject", "site"]
    )
    used = {(a.stratum, a.position): a for a in allocations if a.position is not None}
    for entry in entries:
        taken = used.get((entry.stratum, entry.position))
        writer.writerow(
            [
                entry.stratum,
                entry.position,
                entry.block,
                entry.block_size,
                entry.arm,
                "" if taken is None else taken.number,
                "" if taken is None else taken.subject,
                "" if taken is None else taken.site,
            ]
        )
    for allocation in allocations:
        if allocation.position is None:  # minimisation: the allocations are the list
            writer.writerow(
                [
                    allocation.stratum,
                    "",
                    "",
                    "",
                    allocation.arm,
                    allocation.number,
                    allocation.subject,
                    allocation.site,
                ]
            )
    return out.getvalue()
