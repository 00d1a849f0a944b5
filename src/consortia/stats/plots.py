"""Figures of survival results, rendered off-screen to PNG or SVG bytes.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so there is no global figure state and no display is needed (safe in a web
worker or a node behind a firewall).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from consortia.exceptions import StatisticsError
from consortia.stats.survival import KaplanMeierResult

__all__ = ["ImageFormat", "kaplan_meier_plot"]

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
