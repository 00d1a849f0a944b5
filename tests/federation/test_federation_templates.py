"""Federated analyses of the templates' synthetic data equal lifelines/statsmodels on the
pooled rows (tolerance 1e-8 relative on estimates and standard errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter

from consortia.domain.synthetic import synthesize
from consortia.federation.local import analyze_local

RTOL = 1e-8


@pytest.fixture(scope="module")
def cart_nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cart")
    files = {}
    for index, (node, site) in enumerate((("sg_node", "SG01"), ("sh_node", "SH01"))):
        data = synthesize("cart-lbcl", subjects=150, site=site, seed=11 + index)
        (folder / node).mkdir()
        files[node] = data.write_analysis_csv(folder / node / "cart_efficacy.csv")
    return files


def _pooled(files: dict[str, Path]) -> pd.DataFrame:
    return pd.concat(
        [pd.read_csv(path).assign(node=name) for name, path in files.items()], ignore_index=True
    )


def test_kaplan_meier_of_the_cart_template_equals_lifelines_on_pooled_rows(
    cart_nodes: dict[str, Path],
) -> None:
    request = {
        "kind": "kaplan_meier",
        "table": "cart_efficacy",
        "time": "pfs_days",
        "event": "pfs_event",
        "group": "arm",
        "time_bin": 7,
    }
    result = analyze_local(request, cart_nodes).to_dict()
    pooled = _pooled(cart_nodes)
    for arm, rows in pooled.groupby("arm"):
        binned = np.floor(rows["pfs_days"] / 7) * 7
        reference = KaplanMeierFitter().fit(binned, rows["pfs_event"])
        curve = result["estimates"]["groups"][str(arm)]
        expected = reference.survival_function_at_times(curve["time"]).to_numpy()
        np.testing.assert_allclose(curve["survival"], expected, rtol=RTOL)
        assert curve["median"] == reference.median_survival_time_


def test_stratified_cox_of_the_cart_template_equals_lifelines_on_pooled_rows(
    cart_nodes: dict[str, Path],
) -> None:
    request = {
        "kind": "cox",
        "table": "cart_efficacy",
        "time": "pfs_days",
        "event": "pfs_event",
        "covariates": ["age", "ecog"],
        "ties": "efron",
        "strata": ["node"],
        "time_bin": 7,
    }
    result = analyze_local(request, cart_nodes).to_dict()
    pooled = _pooled(cart_nodes)
    frame = pooled[["pfs_days", "pfs_event", "age", "ecog", "node"]].copy()
    frame["pfs_days"] = np.floor(frame["pfs_days"] / 7) * 7
    reference = CoxPHFitter().fit(
        frame,
        "pfs_days",
        "pfs_event",
        strata=["node"],
        fit_options={"precision": 1e-20, "r_precision": 1e-16},
    )
    for name in ("age", "ecog"):
        assert result["estimates"]["coef"][name] == pytest.approx(reference.params_[name], rel=RTOL)
        assert result["estimates"]["se"][name] == pytest.approx(
            reference.standard_errors_[name], rel=RTOL
        )


def test_logistic_glm_of_the_cart_template_equals_statsmodels_on_pooled_rows(
    cart_nodes: dict[str, Path],
) -> None:
    request = {
        "kind": "glm",
        "family": "binomial",
        "table": "cart_efficacy",
        "outcome": "cr_day28",
        "covariates": ["arm", "age"],
    }
    result = analyze_local(request, cart_nodes).to_dict()
    pooled = _pooled(cart_nodes)
    design = pd.DataFrame(
        {
            "Intercept": 1.0,
            "arm[T.soc]": (pooled["arm"] == "soc").astype(float),
            "age": pooled["age"].astype(float),
        }
    )
    reference = sm.GLM(pooled["cr_day28"], design, family=sm.families.Binomial()).fit(
        tol=1e-14, tol_criterion="params"
    )
    for name in design.columns:
        assert result["estimates"]["coef"][name] == pytest.approx(reference.params[name], rel=RTOL)
        assert result["estimates"]["se"][name] == pytest.approx(reference.bse[name], rel=RTOL)
