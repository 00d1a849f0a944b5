"""ISO 15197, Parkes and Clarke error grids, MARD and Bland–Altman.

Error-grid tests are table-driven from the published coordinates (Parkes 2000 as given by
Pfützner et al. 2013; Clarke et al. 1987), written out here independently of the module.
Edge rule under test: a point exactly on a boundary belongs to the better (inner) zone.
MARD and Bland–Altman are compared with numpy on pooled data at 1e-12 relative; counts
from three nodes equal the pooled counts exactly.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

import numpy as np
import pytest

from consortia.exceptions import StatisticsError
from consortia.stats.agreement import (
    GlucoseAccuracyAggregates,
    bland_altman,
    clarke_zones,
    combine_iso15197,
    iso15197,
    iso15197_node,
    mmol_to_mgdl,
    parkes_zones,
    within_iso15197,
)
from consortia.stats.errorgrid_plot import clarke_plot, parkes_plot

Line = list[tuple[float, float]]

# (diabetes type, inner zone, outer zone, upper polyline, lower polyline or None)
PUBLISHED_PARKES: list[tuple[Literal[1, 2], str, str, Line, Line | None]] = [
    (1, "A", "B", [(0, 50), (30, 50), (140, 170), (280, 380), (430, 550)],
     [(50, 0), (50, 30), (170, 145), (385, 300), (550, 450)]),
    (1, "B", "C", [(0, 60), (30, 60), (50, 80), (70, 110), (260, 550)],
     [(120, 0), (120, 30), (260, 130), (550, 250)]),
    (1, "C", "D", [(0, 100), (25, 100), (50, 125), (80, 215), (125, 550)],
     [(250, 0), (250, 40), (550, 150)]),
    (1, "D", "E", [(0, 150), (35, 155), (50, 550)], None),
    (2, "A", "B", [(0, 50), (30, 50), (230, 330), (440, 550)],
     [(50, 0), (50, 30), (90, 80), (330, 230), (550, 450)]),
    (2, "B", "C", [(0, 60), (30, 60), (280, 550)], [(90, 0), (260, 130), (550, 250)]),
    (2, "C", "D", [(0, 80), (25, 80), (35, 90), (125, 550)],
     [(250, 0), (250, 40), (410, 110), (550, 160)]),
    (2, "D", "E", [(0, 200), (35, 200), (50, 550)], None),
]  # fmt: skip

HALF = 0.5


def _boundary_cases() -> list[Any]:
    """Points on every vertex and segment midpoint, and half a unit either side of them.

    Upper lines are crossed vertically (meter ± 0.5), lower lines horizontally
    (reference ± 0.5): outward is up for an upper line and right for a lower line.
    """
    cases = []
    for diabetes_type, inner, outer, upper, lower in PUBLISHED_PARKES:
        sides: list[tuple[str, Line, tuple[float, float]]] = [("upper", upper, (0.0, HALF))]
        if lower is not None:
            sides.append(("lower", lower, (HALF, 0.0)))
        for side, line, (dx, dy) in sides:
            points = list(line)
            points += [
                ((x0 + x1) / 2, (y0 + y1) / 2) for (x0, y0), (x1, y1) in itertools.pairwise(line)
            ]
            for x, y in points:
                name = f"type{diabetes_type}-{inner}/{outer}-{side}-({x:g},{y:g})"
                cases.append(pytest.param(diabetes_type, (x, y), inner, id=f"{name}-on"))
                inside = (x - dx, y - dy)
                if inside[0] >= 0 and inside[1] >= 0:
                    cases.append(pytest.param(diabetes_type, inside, inner, id=f"{name}-inside"))
                cases.append(pytest.param(diabetes_type, (x + dx, y + dy), outer, id=f"{name}-out"))
    return cases


@pytest.mark.parametrize(("diabetes_type", "point", "zone"), _boundary_cases())
def test_parkes_points_on_a_boundary_belong_to_the_inner_zone_and_just_outside_to_the_outer(
    diabetes_type: Literal[1, 2], point: tuple[float, float], zone: str
) -> None:
    reference, meter = point
    found = parkes_zones([reference], [meter], diabetes_type=diabetes_type)
    assert found.tolist() == [zone]


@pytest.mark.parametrize("diabetes_type", [1, 2])
def test_parkes_zones_worsen_monotonically_moving_away_from_the_identity_line(
    diabetes_type: Literal[1, 2],
) -> None:
    # Checks that the boundaries are nested (no zone reappears further out), well
    # beyond the published 0–550 mg/dL grid where the lines are extrapolated.
    steps = np.arange(0.0, 1200.0, 2.5)
    order = {zone: i for i, zone in enumerate("ABCDE")}
    for value in np.arange(1.0, 900.0, 13.0):
        upward = steps[steps >= value]
        zones = parkes_zones(np.full(upward.size, value), upward, diabetes_type=diabetes_type)
        assert np.all(np.diff([order[z] for z in zones]) >= 0), ("meter rising", value)
        rightward = steps[steps >= value]
        zones = parkes_zones(rightward, np.full(rightward.size, value), diabetes_type=diabetes_type)
        assert np.all(np.diff([order[z] for z in zones]) >= 0), ("reference rising", value)


def test_parkes_lines_continue_along_their_last_segment_beyond_550() -> None:
    # Type 1 A/B upper continues along (280,380)-(430,550): at 580 it is at 550 + 170·150/150.
    assert parkes_zones([580, 580], [720, 720.5]).tolist() == ["A", "B"]
    # Type 1 A/B lower continues along (385,300)-(550,450): at meter 600 it is at 715.
    assert parkes_zones([715, 715.5], [600, 600]).tolist() == ["A", "B"]


def test_parkes_type_1_and_type_2_differ_where_their_lines_differ() -> None:
    # At reference 140 the type 1 A/B upper line is at 170, the type 2 one at 204.
    assert parkes_zones([140], [190], diabetes_type=1).tolist() == ["B"]
    assert parkes_zones([140], [190], diabetes_type=2).tolist() == ["A"]


CLARKE_CASES = [
    # A: within 20 % (inclusive) or both <= 70
    ((100, 120), "A"), ((100, 80), "A"), ((100, 120.5), "B"), ((100, 79.5), "B"),
    ((70, 50), "A"), ((70.5, 50), "B"), ((50, 70), "A"), ((50, 70.5), "D"),
    # D (upper left): r < 70, 70 <= m <= 180; r = 70 belongs to B
    ((50, 180), "D"), ((50, 180.5), "E"), ((69.5, 150), "D"), ((70, 150), "B"),
    # E (upper left): r < 70, m > 180; r = 70 belongs to C
    ((69.5, 200), "E"), ((70, 200), "C"), ((70, 180), "B"),
    # C (upper): 70 <= r < 290, m > r + 110
    ((100, 210), "B"), ((100, 210.5), "C"), ((289.5, 500), "C"), ((290, 500), "B"),
    # C (lower): 130 <= r <= 180, m < 1.4 r - 182
    ((150, 28), "B"), ((150, 27.5), "C"), ((180, 60), "C"), ((180.5, 60), "E"),
    ((180, 70), "B"),
    # E (lower right): r > 180, m < 70
    ((200, 69.5), "E"), ((200, 70), "B"), ((250, 70), "D"), ((250, 69.5), "E"),
    # D (right): r > 240, 70 <= m < 180
    ((240, 100), "B"), ((240.5, 100), "D"), ((300, 180), "B"), ((300, 179.5), "D"),
]  # fmt: skip


@pytest.mark.parametrize(("point", "zone"), CLARKE_CASES, ids=[f"{p}" for p, _ in CLARKE_CASES])
def test_clarke_boundary_points_belong_to_the_better_zone(
    point: tuple[float, float], zone: str
) -> None:
    assert clarke_zones([point[0]], [point[1]]).tolist() == [zone]


def test_clarke_zones_worsen_monotonically_moving_vertically_from_the_identity_line() -> None:
    order = {zone: i for i, zone in enumerate("ABCDE")}
    steps = np.arange(0.0, 700.0, 2.5)
    for value in np.arange(1.0, 600.0, 7.0):
        for meters in (steps[steps >= value], steps[steps <= value][::-1]):
            zones = clarke_zones(np.full(meters.size, value), meters)
            assert np.all(np.diff([order[z] for z in zones]) >= 0), value


@pytest.mark.parametrize(
    ("reference", "device", "within"),
    [
        (99, 114, True), (99, 84, True), (99, 114.5, False), (99, 83.5, False),
        (99.9, 114.9, True), (100, 115, True), (100, 85, True), (100, 115.5, False),
        (100, 84.5, False), (200, 230, True), (200, 170, True), (200, 231, False),
        (300, 345, True), (300, 255, True), (300, 254, False),
    ],
)  # fmt: skip
def test_iso15197_limits_are_inclusive_at_15_mg_dl_and_15_percent(
    reference: float, device: float, within: bool
) -> None:
    assert within_iso15197([reference], [device]).tolist() == [within]


@pytest.fixture
def glucose_pairs() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(15197)
    reference = rng.uniform(40, 450, size=400).round()
    device = (reference * rng.normal(1.02, 0.08, size=400) + rng.normal(0, 4, size=400)).round()
    return reference, np.clip(device, 20, None)


def test_iso15197_across_three_nodes_equals_pooled(
    glucose_pairs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    reference, device = glucose_pairs
    cuts = [90, 250]
    nodes = [
        iso15197_node(r, d)
        for r, d in zip(np.split(reference, cuts), np.split(device, cuts), strict=True)
    ]
    combined, pooled = combine_iso15197(nodes), iso15197(reference, device)
    assert combined.nodes == 3
    for name in ("n", "within_iso", "parkes_type1", "parkes_type2", "clarke", "missing"):
        assert getattr(combined, name) == getattr(pooled, name), name
    # integer readings make the sums of differences exact
    assert combined.bland_altman == pooled.bland_altman
    assert combined.mard_pct == pytest.approx(pooled.mard_pct, rel=1e-12)


def test_iso15197_counts_mard_and_bland_altman_match_numpy(
    glucose_pairs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    reference, device = glucose_pairs
    result = iso15197(reference, device)
    diff = device - reference
    limit = np.where(reference < 100, 15.0, 0.15 * reference)
    assert result.within_iso == int(np.sum(np.abs(diff) <= limit + 1e-9))
    assert result.within_iso_pct == pytest.approx(100 * result.within_iso / reference.size)
    assert sum(result.parkes_type1.values()) == reference.size
    assert result.mard_pct == pytest.approx(100 * np.mean(np.abs(diff) / reference), rel=1e-12)
    ba = result.bland_altman
    assert ba.bias == pytest.approx(np.mean(diff), rel=1e-12)
    assert ba.sd == pytest.approx(np.std(diff, ddof=1), rel=1e-12)
    assert ba.lower_limit == pytest.approx(np.mean(diff) - 1.96 * np.std(diff, ddof=1), rel=1e-12)
    assert ba.upper_limit == pytest.approx(np.mean(diff) + 1.96 * np.std(diff, ddof=1), rel=1e-12)
    assert bland_altman(reference, device) == ba


def test_iso15197_criteria_are_95_percent_within_limits_and_99_percent_in_parkes_a_b() -> None:
    reference = np.full(100, 200.0)
    device = np.full(100, 200.0)
    device[:5] = 250.0  # outside ±15 %, still Parkes type 1 zone B
    passing = iso15197(reference, device)
    assert passing.within_iso_pct == 95.0
    assert passing.meets_accuracy_criterion
    assert passing.meets_parkes_criterion
    assert passing.meets_iso15197
    device[5] = 250.0
    device[6] = 30.0  # zone D
    failing = iso15197(reference, device)
    assert not failing.meets_accuracy_criterion
    assert failing.parkes_ab_pct == 99.0
    assert failing.meets_parkes_criterion
    device[7] = 30.0
    assert not iso15197(reference, device).meets_parkes_criterion


def test_iso15197_skips_incomplete_pairs_and_refuses_impossible_values() -> None:
    node = iso15197_node([100, None, 120, float("nan")], [110, 90, None, 100])
    assert (node.n, node.missing) == (1, 3)
    with pytest.raises(StatisticsError, match="reference glucose must be > 0"):
        iso15197_node([0, 100], [10, 100])
    with pytest.raises(StatisticsError, match="one length"):
        iso15197_node([100, 120], [100])
    with pytest.raises(StatisticsError, match="no complete"):
        combine_iso15197([iso15197_node([None], [100])])


def test_glucose_aggregates_survive_a_json_round_trip(
    glucose_pairs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    node = iso15197_node(*glucose_pairs)
    text = json.dumps(node.to_dict(), allow_nan=False)
    assert GlucoseAccuracyAggregates.from_dict(json.loads(text)) == node
    result = combine_iso15197([node])
    json.dumps(result.to_dict(), allow_nan=False)
    assert "Parkes T1" in result.summary()


def test_mmol_per_litre_converts_to_mg_dl_with_factor_18() -> None:
    assert mmol_to_mgdl([5.55, 10.0]).tolist() == pytest.approx([99.9, 180.0])


@pytest.mark.parametrize("image_format", ["png", "svg"])
def test_error_grid_plots_render_png_and_svg_bytes(
    image_format: Literal["png", "svg"],
    glucose_pairs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    signature = b"\x89PNG" if image_format == "png" else b"<?xml"
    assert parkes_plot(*glucose_pairs, image_format=image_format).startswith(signature)
    assert parkes_plot(*glucose_pairs, diabetes_type=2, image_format=image_format).startswith(
        signature
    )
    assert clarke_plot(*glucose_pairs, image_format=image_format).startswith(signature)
