"""Kaplan–Meier figures render to valid PNG and SVG bytes."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
from lifelines.datasets import load_waltons

from consortia.exceptions import StatisticsError
from consortia.stats.plots import kaplan_meier_plot
from consortia.stats.survival import KaplanMeierResult, kaplan_meier


@pytest.fixture(scope="module")
def waltons() -> KaplanMeierResult:
    data = load_waltons()
    return kaplan_meier(data["T"], data["E"], data["group"])


def test_png_starts_with_the_png_signature(waltons: KaplanMeierResult) -> None:
    image = kaplan_meier_plot(waltons, title="Waltons", time_label="Days")
    assert image.startswith(b"\x89PNG\r\n\x1a\n")


def test_svg_is_xml_with_an_svg_root(
    waltons: KaplanMeierResult,
) -> None:
    image = kaplan_meier_plot(waltons, image_format="svg", at_risk_times=[0, 20, 40, 60])
    root = ElementTree.fromstring(image)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "viewBox" in root.attrib


def test_single_unlabelled_curve_renders() -> None:
    result = kaplan_meier([3, 5, 8, 9, 12], [1, 0, 1, 1, 0])
    assert kaplan_meier_plot(result).startswith(b"\x89PNG")


def test_unknown_image_format_is_refused(waltons: KaplanMeierResult) -> None:
    with pytest.raises(StatisticsError, match="image_format: 'gif'"):
        kaplan_meier_plot(waltons, image_format="gif")  # type: ignore[arg-type]
