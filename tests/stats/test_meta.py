"""Meta-analysis of node estimates against statsmodels and a published example.

Data: the BCG vaccine trials (Colditz et al., JAMA 1994; ``dat.bcg`` in R's metafor), log
risk ratios. Reference: statsmodels.stats.meta_analysis.combine_effects(method_re="dl") at
1e-8 relative; and the DerSimonian–Laird results metafor prints for
``rma(yi, vi, data=escalc("RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg),
method="DL")`` — estimate −0.7141, SE 0.1787, τ² 0.3088, Q(12) 152.2330, I² 92.12 % —
to the printed 4 decimals.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pytest
from statsmodels.stats.meta_analysis import combine_effects

from consortia.exceptions import StatisticsError
from consortia.stats.meta import MetaInput, combine_meta, forest_plot, meta_analysis

# tpos, tneg, cpos, cneg
BCG = np.array(
    [
        [4, 119, 11, 128], [6, 300, 29, 274], [3, 228, 11, 209], [62, 13536, 248, 12619],
        [33, 5036, 47, 5761], [180, 1361, 372, 1079], [8, 2537, 10, 619],
        [505, 87886, 499, 87892], [29, 7470, 45, 7232], [17, 1699, 65, 1600],
        [186, 50448, 141, 27197], [5, 2493, 3, 2338], [27, 16886, 29, 17825],
    ],
    dtype=float,
)  # fmt: skip


@pytest.fixture
def bcg() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    tpos, tneg, cpos, cneg = BCG.T
    log_rr = np.log((tpos / (tpos + tneg)) / (cpos / (cpos + cneg)))
    variance = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)
    return log_rr, variance


def test_fixed_and_dersimonian_laird_effects_match_statsmodels(
    bcg: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    effect, variance = bcg
    inputs = [
        MetaInput(f"trial {i + 1}", float(e), float(np.sqrt(v)))
        for i, (e, v) in enumerate(zip(effect, variance, strict=True))
    ]
    result = combine_meta(inputs)
    reference = combine_effects(effect, variance, method_re="dl", use_t=False)
    fixed_ci, random_ci = reference.conf_int(use_t=False)[:2]
    assert result.fixed_estimate == pytest.approx(reference.mean_effect_fe, rel=1e-8)
    assert result.fixed_se == pytest.approx(reference.sd_eff_w_fe, rel=1e-8)
    assert result.fixed_ci == pytest.approx(tuple(fixed_ci), rel=1e-8)
    assert result.random_estimate == pytest.approx(reference.mean_effect_re, rel=1e-8)
    assert result.random_se == pytest.approx(reference.sd_eff_w_re, rel=1e-8)
    assert result.random_ci == pytest.approx(tuple(random_ci), rel=1e-8)
    assert result.tau2 == pytest.approx(reference.tau2, rel=1e-8)
    assert result.q == pytest.approx(reference.q, rel=1e-8)
    assert result.i2 == pytest.approx(reference.i2, rel=1e-8)
    assert result.df == reference.df
    assert result.q_p_value == pytest.approx(reference.test_homogeneity().pvalue, rel=1e-8)
    assert result.weights_fixed == pytest.approx(tuple(reference.weights_rel_fe), rel=1e-8)
    assert result.weights_random == pytest.approx(tuple(reference.weights_rel_re), rel=1e-8)
    assert result.exact is False


def test_dersimonian_laird_reproduces_the_published_bcg_results(
    bcg: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    effect, variance = bcg
    result = meta_analysis(effect.tolist(), np.sqrt(variance).tolist())
    assert round(result.random_estimate, 4) == -0.7141
    assert round(result.random_se, 4) == 0.1787
    assert round(result.tau2, 4) == 0.3088
    assert round(result.q, 4) == 152.2330
    assert round(100 * result.i2, 2) == 92.12


def test_homogeneous_estimates_give_zero_tau2_and_equal_fixed_and_random_effects() -> None:
    result = meta_analysis([0.20, 0.21, 0.19], [0.1, 0.1, 0.1])
    assert result.tau2 == 0.0
    assert result.i2 == 0.0
    assert result.random_estimate == pytest.approx(result.fixed_estimate, rel=1e-15)


def test_a_single_node_has_no_heterogeneity_statistics() -> None:
    result = meta_analysis([0.3], [0.1], labels=["only"])
    assert result.df == 0
    assert np.isnan(result.i2)
    assert np.isnan(result.q_p_value)
    assert result.to_dict()["i2"] is None
    assert result.random_estimate == 0.3


def test_invalid_standard_errors_and_mismatched_inputs_are_refused() -> None:
    with pytest.raises(StatisticsError, match="standard error must be finite and > 0"):
        MetaInput("a", 0.1, 0.0)
    with pytest.raises(StatisticsError, match="differ in length"):
        meta_analysis([0.1, 0.2], [0.1])
    with pytest.raises(StatisticsError, match="no node estimates"):
        combine_meta([])


def test_meta_input_and_result_are_json_ready() -> None:
    item = MetaInput("hospital A", -0.25, 0.12, n=140)
    assert MetaInput.from_dict(json.loads(json.dumps(item.to_dict()))) == item
    result = combine_meta([item, MetaInput("hospital B", -0.4, 0.2, n=80)])
    encoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert encoded["exact"] is False
    assert encoded["labels"] == ["hospital A", "hospital B"]
    assert "not exact pooling" in result.summary()


@pytest.mark.parametrize(("image_format", "signature"), [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_forest_plot_renders_png_and_svg_bytes(
    image_format: Literal["png", "svg"],
    signature: bytes,
    bcg: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    effect, variance = bcg
    result = meta_analysis(effect.tolist(), np.sqrt(variance).tolist())
    assert forest_plot(result, image_format=image_format).startswith(signature)
    assert forest_plot(
        result, image_format=image_format, exponentiate=True, xlabel="risk ratio"
    ).startswith(signature)
