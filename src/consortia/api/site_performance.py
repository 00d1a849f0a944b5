"""``GET /studies/{study}/site-performance``: the study's site performance metrics at the
caller's sites (docs/site-performance.md), aggregates only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.auth.principal import CODE_PATTERN
from consortia.services.site_performance import performance_json, read_site_performance

__all__ = ["MetricsPublic", "SitePerformancePublic", "router"]

router = APIRouter(prefix="/studies/{study}", tags=["site performance"])

StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RatioPublic(_Out):
    """A count over a count; ``value`` is null when the denominator is 0."""

    numerator: int
    denominator: int
    value: float | None


class MedianPublic(_Out):
    """The median of ``n`` durations in days (null when ``n`` is 0)."""

    n: int
    median: float | None


class MetricsPublic(_Out):
    """One site's metrics, or those of every site shown pooled (``site`` ``*``)."""

    site: str
    enrolled: int
    enrolment_target: int | None
    enrolment_vs_target: RatioPublic | None
    enrolment_by_month: dict[str, int]
    screen_failure: RatioPublic
    days_to_entry: MedianPublic
    queries_per_value: RatioPublic
    queries_per_100_values: float | None
    days_to_resolve: MedianPublic
    missing_required: RatioPublic
    out_of_window: RatioPublic
    #: null: this node does not record protocol deviations yet
    protocol_deviations: int | None


class SitePerformancePublic(_Out):
    """The study's site performance at the caller's sites, as of ``as_of`` (UTC)."""

    study: str
    definition_version: int
    as_of: str
    deviations_recorded: bool
    sites: list[MetricsPublic]
    overall: MetricsPublic


@router.get("/site-performance", response_model=SitePerformancePublic)
def site_performance(
    study: StudyCode, principal: CurrentPrincipal, engine: EngineDep
) -> SitePerformancePublic:
    """Enrolment, screen failures, timeliness, queries, missing data and visit windows per
    site, at the sites where the caller holds ``site_performance.read``."""
    performance = read_site_performance(engine, principal, study)
    return SitePerformancePublic.model_validate(performance_json(performance))
