"""Meta-analysis of per-node estimates: inverse-variance fixed effect, DerSimonian–Laird.

Use this when a model cannot (or need not) be fitted on pooled-equivalent aggregates: each
node reports an estimate and its standard error (a log hazard ratio from a local Cox
model, a GLM coefficient, a mean difference…) as a :class:`MetaInput`, and the lead combines
them with :func:`combine_meta`. The result is **not** the pooled analysis, so it is labelled
``exact=False``.

Formulas (``y_i`` estimate, ``v_i = se_i²``, ``w_i = 1/v_i``, ``k`` nodes):

* fixed effect ``θ_F = Σ w_i y_i / Σ w_i``, ``SE = 1/√Σw_i``;
* Cochran's ``Q = Σ w_i (y_i − θ_F)²`` on ``k − 1`` df; ``I² = max(0, (Q − df)/Q)``;
* DerSimonian–Laird ``τ² = max(0, (Q − df) / (Σw − Σw²/Σw))``;
* random effects with ``w*_i = 1/(v_i + τ²)``; CIs are normal (z) intervals.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from consortia.exceptions import StatisticsError
from consortia.stats.aggregates import NodeAggregates, check_confidence, reading_aggregates
from consortia.stats.results import StatResult, format_table

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from consortia.stats.lazy_scipy import stats as sps

__all__ = [
    "MetaInput",
    "MetaResult",
    "combine_meta",
    "forest_plot",
    "meta_analysis",
]


@dataclass(frozen=True)
class MetaInput(NodeAggregates):
    """One node's estimate and standard error (``n`` is informational only).

    >>> MetaInput("hospital A", -0.3, 0.12, n=140).to_dict()
    {'label': 'hospital A', 'estimate': -0.3, 'standard_error': 0.12, 'n': 140}
    """

    label: str
    estimate: float
    standard_error: float
    n: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.estimate):
            raise StatisticsError(f"meta: {self.label}: estimate must be finite")
        if not (math.isfinite(self.standard_error) and self.standard_error > 0):
            raise StatisticsError(
                f"meta: {self.label}: standard error must be finite and > 0, "
                f"got {self.standard_error}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaInput:
        """Read an input produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with reading_aggregates("meta"):
            n = data.get("n")
            return cls(
                label=str(data["label"]),
                estimate=float(data["estimate"]),
                standard_error=float(data["standard_error"]),
                n=None if n is None else int(n),
            )


@dataclass(frozen=True)
class MetaResult(StatResult):
    """Fixed- and random-effects (DerSimonian–Laird) summary of per-node estimates.

    Weights are relative (they sum to 1 within each model). ``q_p_value``, ``i2`` are
    ``NaN`` (``None`` in JSON) with a single node.
    """

    labels: tuple[str, ...]
    estimates: tuple[float, ...]
    standard_errors: tuple[float, ...]
    weights_fixed: tuple[float, ...]
    weights_random: tuple[float, ...]
    confidence: float
    fixed_estimate: float
    fixed_se: float
    fixed_ci: tuple[float, float]
    fixed_p_value: float
    random_estimate: float
    random_se: float
    random_ci: tuple[float, float]
    random_p_value: float
    tau2: float
    q: float
    df: int
    q_p_value: float
    i2: float
    method: str = "DerSimonian-Laird"
    exact: bool = False

    def study_ci(self, index: int) -> tuple[float, float]:
        """Normal confidence interval of one node's own estimate."""
        z = float(sps.norm.isf((1.0 - self.confidence) / 2))
        half = z * self.standard_errors[index]
        return self.estimates[index] - half, self.estimates[index] + half

    def summary(self) -> str:
        """Return one row per node and per model, then the heterogeneity statistics."""
        level = f"{self.confidence:.0%}"
        rows: list[list[Any]] = []
        for i, label in enumerate(self.labels):
            low, high = self.study_ci(i)
            rows.append(
                [label, self.estimates[i], self.standard_errors[i], low, high,
                 self.weights_fixed[i], self.weights_random[i]]
            )  # fmt: skip
        rows.append(["fixed effect", self.fixed_estimate, self.fixed_se, *self.fixed_ci, 1.0, None])
        rows.append(
            [
                "random effects (DL)",
                self.random_estimate,
                self.random_se,
                *self.random_ci,
                None,
                1.0,
            ]
        )
        table = format_table(
            ["", "estimate", "se", f"{level} low", f"{level} high", "w fixed", "w random"], rows
        )
        heterogeneity = format_table(
            ["heterogeneity", "value"],
            [["Q", self.q], ["df", self.df], ["p (Q)", self.q_p_value],
             ["I²", self.i2], ["tau²", self.tau2]],
        )  # fmt: skip
        return f"{table}\n\n{heterogeneity}\n(meta-analysis of node estimates: not exact pooling)"


def combine_meta(inputs: Sequence[MetaInput], *, confidence: float = 0.95) -> MetaResult:
    """Combine node estimates with inverse-variance fixed effect and DerSimonian–Laird.

    >>> result = combine_meta([MetaInput("a", 0.1, 0.1), MetaInput("b", 0.3, 0.2)])
    >>> round(result.fixed_estimate, 6), result.tau2
    (0.14, 0.0)
    """
    if not inputs:
        raise StatisticsError("meta: no node estimates to combine")
    check_confidence(confidence)
    y = np.array([item.estimate for item in inputs], dtype=np.float64)
    v = np.array([item.standard_error**2 for item in inputs], dtype=np.float64)
    z = float(sps.norm.isf((1.0 - confidence) / 2))
    w = 1.0 / v
    fixed = float(np.sum(w * y) / np.sum(w))
    fixed_se = math.sqrt(1.0 / float(np.sum(w)))
    k = len(inputs)
    df = k - 1
    q = float(np.sum(w * (y - fixed) ** 2))
    c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau2 = max(0.0, (q - df) / c) if df > 0 and c > 0 else 0.0
    w_star = 1.0 / (v + tau2)
    random = float(np.sum(w_star * y) / np.sum(w_star))
    random_se = math.sqrt(1.0 / float(np.sum(w_star)))
    if df > 0:
        q_p = float(sps.chi2.sf(q, df))
        i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    else:
        q_p, i2 = math.nan, math.nan

    def p_value(estimate: float, se: float) -> float:
        return float(2 * sps.norm.sf(abs(estimate / se)))

    return MetaResult(
        labels=tuple(item.label for item in inputs),
        estimates=tuple(float(e) for e in y),
        standard_errors=tuple(item.standard_error for item in inputs),
        weights_fixed=tuple(float(x) for x in w / np.sum(w)),
        weights_random=tuple(float(x) for x in w_star / np.sum(w_star)),
        confidence=confidence,
        fixed_estimate=fixed,
        fixed_se=fixed_se,
        fixed_ci=(fixed - z * fixed_se, fixed + z * fixed_se),
        fixed_p_value=p_value(fixed, fixed_se),
        random_estimate=random,
        random_se=random_se,
        random_ci=(random - z * random_se, random + z * random_se),
        random_p_value=p_value(random, random_se),
        tau2=tau2,
        q=q,
        df=df,
        q_p_value=q_p,
        i2=i2,
    )


def meta_analysis(
    estimates: Sequence[float],
    standard_errors: Sequence[float],
    labels: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
) -> MetaResult:
    """Meta-analyse estimates given as plain sequences (labels default to ``node 1…k``).

    >>> meta_analysis([0.1, 0.3], [0.1, 0.2]).labels
    ('node 1', 'node 2')
    """
    if len(estimates) != len(standard_errors):
        raise StatisticsError("meta: estimates and standard errors differ in length")
    names = list(labels) if labels is not None else [f"node {i + 1}" for i in range(len(estimates))]
    if len(names) != len(estimates):
        raise StatisticsError("meta: labels and estimates differ in length")
    inputs = [
        MetaInput(name, float(estimate), float(se))
        for name, estimate, se in zip(names, estimates, standard_errors, strict=True)
    ]
    return combine_meta(inputs, confidence=confidence)


def forest_plot(
    result: MetaResult,
    *,
    image_format: Literal["png", "svg"] = "png",
    exponentiate: bool = False,
    xlabel: str = "estimate",
    title: str | None = None,
) -> bytes:
    """Draw a forest plot (nodes, fixed and random diamonds) and return PNG or SVG bytes.

    With ``exponentiate=True`` estimates and limits are shown as ``exp(·)`` on a log axis
    (hazard or odds ratios from log-scale estimates), with the null line at 1.

    >>> png = forest_plot(meta_analysis([0.1, 0.3], [0.1, 0.2]))
    >>> png[:4]
    b'\\x89PNG'
    """
    if image_format not in ("png", "svg"):
        raise StatisticsError(f"forest_plot: format {image_format!r} is not 'png' or 'svg'")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    def show(value: float) -> float:
        return math.exp(value) if exponentiate else value

    k = len(result.labels)
    figure = Figure(figsize=(7.0, 1.2 + 0.35 * (k + 3)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i in range(k):
        low, high = result.study_ci(i)
        row = k + 2 - i
        axes.plot([show(low), show(high)], [row, row], color="black", linewidth=1)
        size = 4 + 60 * result.weights_random[i]
        axes.plot([show(result.estimates[i])], [row], marker="s", markersize=math.sqrt(size) * 2,
                  color="steelblue", linestyle="none")  # fmt: skip
    summaries = [
        (1.0, result.fixed_estimate, result.fixed_ci, "firebrick"),
        (0.0, result.random_estimate, result.random_ci, "darkorange"),
    ]
    for level, estimate, (low, high), colour in summaries:
        diamond = [
            (show(low), level),
            (show(estimate), level + 0.3),
            (show(high), level),
            (show(estimate), level - 0.3),
        ]
        axes.add_patch(Polygon(diamond, closed=True, color=colour))
    axes.axvline(1.0 if exponentiate else 0.0, color="grey", linestyle="--", linewidth=0.8)
    axes.set_yticks([*[k + 2 - i for i in range(k)], 1.0, 0.0])
    axes.set_yticklabels([*result.labels, "fixed effect", "random effects (DL)"])
    axes.set_ylim(-0.8, k + 2.8)
    if exponentiate:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    default_title = f"Forest plot (I² = {result.i2:.0%})" if k > 1 else "Forest plot"
    axes.set_title(title or default_title)
    figure.tight_layout()
    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if image_format == "svg" else {}
    figure.savefig(buffer, format=image_format, metadata=metadata)
    return buffer.getvalue()
