"""Statistics on plain arrays: node-side aggregates and lead-side combines.

Every federated estimator is a pair: a node-side function (or ``*NodeData.round``) that
computes additive aggregates from one node's records, and a lead-side step that combines
them into exactly the result the pooled records would give. The same code run on one node
is the local analysis (``kaplan_meier``, ``logrank_test``, ``fit_cox``, ``fit_glm``).

Results are frozen dataclasses with ``.summary()`` and ``.to_dict()``; doubts are
:class:`ConvergenceWarning`, data that cannot be analysed raise
:class:`consortia.exceptions.StatisticsError`. Nothing here imports a web framework or a
database layer.
"""

from consortia.stats.agreement import (
    GlucoseAccuracyAggregates,
    Iso15197Result,
    bland_altman,
    clarke_zones,
    combine_iso15197,
    iso15197,
    iso15197_node,
    parkes_zones,
)
from consortia.stats.contingency import CrosstabResult, combine_crosstab, crosstab, crosstab_node
from consortia.stats.cox import CoxNodeData, CoxResult, fit_cox, fit_cox_federated
from consortia.stats.cox_aggregates import (
    CoxAggregates,
    CoxStratumAggregates,
    CoxTimeSums,
    Ties,
    combine_cox_time_sums,
)
from consortia.stats.descriptive import DescribeResult, combine_describe, describe, describe_node
from consortia.stats.design import (
    Design,
    LevelCounts,
    design_matrix,
    level_counts,
    union_levels,
)
from consortia.stats.diagnostic import (
    DiagnosticResult,
    combine_diagnostic,
    diagnostic_accuracy,
    diagnostic_node,
)
from consortia.stats.glm import GlmResult, fit_glm, fit_glm_federated
from consortia.stats.glm_node import Family, GlmAggregates, GlmNodeData
from consortia.stats.meta import MetaInput, MetaResult, combine_meta, meta_analysis
from consortia.stats.plots import kaplan_meier_plot
from consortia.stats.proportions import (
    ProportionResult,
    combine_proportion,
    proportion,
    proportion_node,
)
from consortia.stats.results import ConvergenceWarning, StatResult, format_table, to_jsonable
from consortia.stats.survival import (
    KaplanMeierCurve,
    KaplanMeierResult,
    LogRankResult,
    SurvivalCounts,
    combine_survival_counts,
    kaplan_meier,
    kaplan_meier_from_counts,
    logrank_from_counts,
    logrank_test,
    survival_counts,
)

__all__ = [
    "ConvergenceWarning",
    "CoxAggregates",
    "CoxNodeData",
    "CoxResult",
    "CoxStratumAggregates",
    "CoxTimeSums",
    "CrosstabResult",
    "DescribeResult",
    "Design",
    "DiagnosticResult",
    "Family",
    "GlmAggregates",
    "GlmNodeData",
    "GlmResult",
    "GlucoseAccuracyAggregates",
    "Iso15197Result",
    "KaplanMeierCurve",
    "KaplanMeierResult",
    "LevelCounts",
    "LogRankResult",
    "MetaInput",
    "MetaResult",
    "ProportionResult",
    "StatResult",
    "SurvivalCounts",
    "Ties",
    "bland_altman",
    "clarke_zones",
    "combine_cox_time_sums",
    "combine_crosstab",
    "combine_describe",
    "combine_diagnostic",
    "combine_iso15197",
    "combine_meta",
    "combine_proportion",
    "combine_survival_counts",
    "crosstab",
    "crosstab_node",
    "describe",
    "describe_node",
    "design_matrix",
    "diagnostic_accuracy",
    "diagnostic_node",
    "fit_cox",
    "fit_cox_federated",
    "fit_glm",
    "fit_glm_federated",
    "format_table",
    "iso15197",
    "iso15197_node",
    "kaplan_meier",
    "kaplan_meier_from_counts",
    "kaplan_meier_plot",
    "level_counts",
    "logrank_from_counts",
    "logrank_test",
    "meta_analysis",
    "parkes_zones",
    "proportion",
    "proportion_node",
    "survival_counts",
    "to_jsonable",
    "union_levels",
]
