"""Error-grid plots (Parkes type 1/2, Clarke) with the data points, as PNG or SVG bytes.

A plot shows patient-level pairs, so it is drawn where the pairs are: on a node, for its
own data (or on pooled data in tests). The lead of a federated analysis receives only the
zone counts of :mod:`consortia.stats.agreement`. Values are mg/dL; points are coloured by
zone using the same edge rules as :func:`~consortia.stats.agreement.parkes_zones` and
:func:`~consortia.stats.agreement.clarke_zones`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats.agreement import (
    ZONES,
    GlucoseValues,
    clarke_zones,
    parkes_boundaries,
    parkes_zones,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["clarke_plot", "parkes_plot"]

ImageFormat = Literal["png", "svg"]
Point = tuple[float, float]
_ZONE_COLOURS = {"A": "#1a9850", "B": "#91cf60", "C": "#fee08b", "D": "#fc8d59", "E": "#d73027"}


def _extend(line: Sequence[Point], limit: float, *, along: Literal["x", "y"]) -> list[Point]:
    """Continue a polyline along its last segment until ``along`` reaches ``limit``."""
    points = [(float(x), float(y)) for x, y in line]
    (x0, y0), (x1, y1) = points[-2], points[-1]
    if along == "y" and limit > y1:
        points.append((x1 + (limit - y1) * (x1 - x0) / (y1 - y0), limit))
    if along == "x" and limit > x1:
        points.append((limit, y1 + (limit - x1) * (y1 - y0) / (x1 - x0)))
    return points


def _figure(
    reference: GlucoseValues, device: GlucoseValues, zones: npt.NDArray[np.str_], limit: float
) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 6.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ref = np.asarray(reference, dtype=np.float64)
    dev = np.asarray(device, dtype=np.float64)
    for zone in ZONES:
        chosen = zones == zone
        if chosen.any():
            axes.scatter(ref[chosen], dev[chosen], s=10, color=_ZONE_COLOURS[zone],
                         edgecolors="black", linewidths=0.3, label=f"{zone} ({int(chosen.sum())})",
                         zorder=3)  # fmt: skip
    axes.plot([0, limit], [0, limit], color="grey", linestyle=":", linewidth=0.8)
    axes.set_xlim(0, limit)
    axes.set_ylim(0, limit)
    axes.set_aspect("equal")
    axes.set_xlabel("reference glucose (mg/dL)")
    axes.set_ylabel("meter glucose (mg/dL)")
    return figure, axes


def _polyline(axes: Axes, points: Sequence[Point]) -> None:
    axes.plot([p[0] for p in points], [p[1] for p in points], color="black", linewidth=1)


def _check_format(image_format: str) -> None:
    if image_format not in ("png", "svg"):
        raise StatisticsError(f"image_format: {image_format!r} must be 'png' or 'svg'")


def _render(figure: Figure, image_format: ImageFormat) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if image_format == "svg" else {}
    figure.savefig(buffer, format=image_format, metadata=metadata)
    return buffer.getvalue()


def parkes_plot(
    reference: GlucoseValues,
    device: GlucoseValues,
    *,
    diabetes_type: Literal[1, 2] = 1,
    image_format: ImageFormat = "png",
    title: str | None = None,
) -> bytes:
    """Draw the Parkes error grid with the (reference, device) points; return image bytes.

    The axes span 0–550 mg/dL, or further when data exceed it (lines then continue along
    their last segment, as in the zone classification).

    >>> parkes_plot([100, 200], [110, 260], image_format="svg")[:5]
    b'<?xml'
    """
    _check_format(image_format)
    zones = parkes_zones(reference, device, diabetes_type=diabetes_type)
    ref = np.asarray(reference, dtype=np.float64)
    dev = np.asarray(device, dtype=np.float64)
    limit = max(
        550.0, float(np.max(ref, initial=0.0)) * 1.05, float(np.max(dev, initial=0.0)) * 1.05
    )
    figure, axes = _figure(ref, dev, zones, limit)
    for boundary in parkes_boundaries(diabetes_type):
        upper = _extend(boundary.upper, limit, along="y")
        _polyline(axes, upper)
        if boundary.lower is not None:
            lower = _extend(boundary.lower, limit, along="x")
            _polyline(axes, lower)
    for zone, (x, y) in {"A": (0.8, 0.8), "B": (0.6, 0.85), "C": (0.4, 0.9), "D": (0.15, 0.9),
                         "E": (0.03, 0.95)}.items():  # fmt: skip
        axes.text(x * limit, y * limit, zone, fontsize=12, fontweight="bold")
    for zone, (x, y) in {"B": (0.85, 0.55), "C": (0.9, 0.33), "D": (0.9, 0.12)}.items():
        axes.text(x * limit, y * limit, zone, fontsize=12, fontweight="bold")
    axes.legend(loc="lower right", title="zone (n)", fontsize=8)
    axes.set_title(title or f"Parkes (consensus) error grid, type {diabetes_type} diabetes")
    return _render(figure, image_format)


def clarke_plot(
    reference: GlucoseValues,
    device: GlucoseValues,
    *,
    image_format: ImageFormat = "png",
    title: str | None = None,
) -> bytes:
    """Draw the Clarke error grid (0–400 mg/dL or the data range) with the points.

    >>> clarke_plot([100, 200], [110, 260])[:4]
    b'\\x89PNG'
    """
    _check_format(image_format)
    zones = clarke_zones(reference, device)
    ref = np.asarray(reference, dtype=np.float64)
    dev = np.asarray(device, dtype=np.float64)
    limit = max(
        400.0, float(np.max(ref, initial=0.0)) * 1.05, float(np.max(dev, initial=0.0)) * 1.05
    )
    figure, axes = _figure(ref, dev, zones, limit)
    segments: list[list[Point]] = [
        [(0, 70), (175 / 3, 70), (limit / 1.2, limit)],  # A upper: 70, then +20 %
        [(70, 0), (70, 56), (limit, 0.8 * limit)],  # A lower: 70, then −20 %
        [(70, 84), (70, limit)],  # D/B (left) and E/C
        [(0, 180), (70, 180), (290, 400)],  # D/E and C/B (upper); C ends at r = 290
        [(130, 0), (180, 70), (limit, 70)],  # C/B (lower) and E/B
        [(180, 0), (180, 70)],  # C/E
        [(240, 70), (240, 180), (limit, 180)],  # D (right)
    ]
    for segment in segments:
        _polyline(axes, segment)
    labels = [
        ("A", 0.8, 0.85), ("B", 0.85, 0.6), ("C", 0.3, 0.9), ("D", 0.03, 0.3), ("E", 0.03, 0.9),
        ("D", 0.9, 0.2), ("E", 0.55, 0.04),
    ]  # fmt: skip
    for zone, x, y in labels:
        axes.text(x * limit, y * limit, zone, fontsize=12, fontweight="bold")
    axes.legend(loc="lower right", title="zone (n)", fontsize=8)
    axes.set_title(title or "Clarke error grid")
    return _render(figure, image_format)
