"""Figures of survival results, rendered off-screen to PNG or SVG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so there is no global figure state and no display is needed (safe in a web
worker or a node behind a firewall).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from consortia.exceptions import StatisticsError
from consortia.stats.survival import KaplanMeierCurve, KaplanMeierResult

__all__ = ["ImageFormat", "kaplan_meier_plot", "kaplan_meier_result_from_dict"]

ImageFormat = Literal["png", "svg"]


def kaplan_meier_plot(
    result: KaplanMeierResult,
    *,
    image_format: ImageFormat = "png",
    title: str | None = None,
    time_label: str = "Time",
    show_ci: bool = True,
    at_risk_times: Sequence[float] | None = None,
    width_inches: float = 7.0,
    dpi: int = 100,
) -> bytes:
    """Draw Kaplan–Meier curves (one per group) with a numbers-at-risk table beneath.

    Censorings are marked with ``+``; the shaded bands are the confidence intervals. The
    table counts, per group, the subjects still under observation at each tick time.

    >>> from consortia.stats.survival import kaplan_meier
    >>> png = kaplan_meier_plot(kaplan_meier([3, 5, 6, 9], [1, 0, 1, 1], ["a", "a", "b", "b"]))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if image_format not in ("png", "svg"):
        raise StatisticsError(f"image_format: {image_format!r} must be 'png' or 'svg'")
    curves = result.curves
    if not curves:
        raise StatisticsError("Kaplan–Meier plot: the result has no curves")
    table_height = 0.35 + 0.25 * len(curves)
    figure = Figure(figsize=(width_inches, 4.2 + table_height), dpi=dpi)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 1, height_ratios=[4.2, table_height], hspace=0.35)
    axes = figure.add_subplot(grid[0])
    table = figure.add_subplot(grid[1], sharex=axes)

    end = max(float(curve.time[-1]) for curve in curves)
    colours: list[str] = []
    for curve in curves:
        (line,) = axes.step(
            curve.time, curve.survival, where="post", label=f"{curve.group} (n={curve.n})"
        )
        colour = to_hex(line.get_color())
        colours.append(colour)
        if show_ci:
            axes.fill_between(
                curve.time, curve.ci_lower, curve.ci_upper, step="post", alpha=0.15, color=colour
            )
        censored = curve.censored > 0
        axes.plot(
            curve.time[censored],
            curve.survival[censored],
            linestyle="none",
            marker="+",
            markersize=8,
            color=colour,
        )
    axes.set_xlim(0, end * 1.02 if end > 0 else 1.0)
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("Survival probability")
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    if len(curves) > 1 or curves[0].group != "all":
        axes.legend(loc="lower left", frameon=False)

    ticks = (
        np.asarray(at_risk_times, dtype=np.float64)
        if at_risk_times is not None
        else np.array([t for t in axes.get_xticks() if 0 <= t <= end])
    )
    axes.set_xticks(ticks)
    axes.tick_params(labelbottom=True)
    axes.set_xlabel(time_label)
    table.set_ylim(len(curves) - 0.5, -0.5)
    for row, curve in enumerate(curves):
        for tick in ticks:
            table.text(tick, row, str(curve.at_risk_at(float(tick))), ha="center", va="center")
    table.set_yticks(range(len(curves)), [curve.group for curve in curves])
    table.tick_params(axis="x", bottom=False, labelbottom=False)
    # Pad the group names so they clear the counts centred on time 0.
    table.tick_params(axis="y", left=False, pad=22)
    for label, colour in zip(table.get_yticklabels(), colours, strict=True):
        label.set_color(colour)
    for side in ("top", "right", "bottom", "left"):
        table.spines[side].set_visible(False)
    table.set_title("Number at risk", loc="left", fontsize="medium")

    buffer = io.BytesIO()
    metadata: dict[str, str | None] = {"Date": None} if image_format == "svg" else {}
    figure.savefig(buffer, format=image_format, dpi=dpi, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


def _nan(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _reached(value: object) -> float:
    """A median is ``null`` in JSON when the curve never falls to 0.5: infinity."""
    return float("inf") if value is None else float(value)  # type: ignore[arg-type]


def kaplan_meier_result_from_dict(data: Mapping[str, object]) -> KaplanMeierResult:
    """Rebuild a :class:`KaplanMeierResult` from its ``to_dict()`` form (a federated result's
    ``estimates``), so the lead can draw what the nodes' aggregates gave.

    JSON carries a median that is never reached as ``null``; it comes back as infinity,
    as :func:`~consortia.stats.survival.kaplan_meier` gives it.
    """
    groups = data.get("groups")
    if not isinstance(groups, Mapping) or not groups:
        raise StatisticsError("a Kaplan-Meier result needs 'groups' with at least one curve")
    curves = []
    for name, raw in groups.items():
        if not isinstance(raw, Mapping):
            raise StatisticsError(f"groups.{name}: expected an object")
        try:
            curves.append(
                KaplanMeierCurve(
                    group=str(name),
                    time=np.asarray(raw["time"], dtype=np.float64),
                    at_risk=np.asarray(raw["at_risk"], dtype=np.int64),
                    events=np.asarray(raw["events"], dtype=np.int64),
                    censored=np.asarray(raw["censored"], dtype=np.int64),
                    survival=np.asarray([_nan(v) for v in raw["survival"]]),
                    se=np.asarray([_nan(v) for v in raw["se"]]),
                    ci_lower=np.asarray([_nan(v) for v in raw["ci_lower"]]),
                    ci_upper=np.asarray([_nan(v) for v in raw["ci_upper"]]),
                    median=_reached(raw.get("median")),
                    median_ci_lower=_reached(raw.get("median_ci_lower")),
                    median_ci_upper=_reached(raw.get("median_ci_upper")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StatisticsError(f"groups.{name}: not a Kaplan-Meier curve ({exc})") from None
    alpha = data.get("alpha", 0.05)
    time_bin = data.get("time_bin")
    return KaplanMeierResult(
        curves=tuple(curves),
        alpha=float(alpha),  # type: ignore[arg-type]
        time_bin=None if time_bin is None else float(time_bin),  # type: ignore[arg-type]
    )
