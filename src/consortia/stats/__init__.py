"""Statistics on plain arrays: node-side aggregates and lead-side combines.

Every federated estimator is a pair: a node-side function (or ``*NodeData.round``) that
computes additive aggregates from one node's records, and a lead-side step that combines
them into exactly the result the pooled records would give. The same code run on one node
is the local analysis (``kaplan_meier``, ``logrank_test``, ``fit_cox``, ``fit_glm``).

Results are frozen dataclasses with ``.summary()`` and ``.to_dict()``; doubts are
:class:`ConvergenceWarning`, data that cannot be analysed raise
:class:`consortia.exceptions.StatisticsError`. Nothing here imports a web framework or a
database layer.

The names below are imported from their modules when first used (``__getattr__``), so
importing one module (``consortia.stats.survival``) does not import every other one, nor
matplotlib behind ``kaplan_meier_plot``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consortia.lazy_names import lazy_names

if TYPE_CHECKING:
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
    from consortia.stats.contingency import (
        CrosstabResult,
        combine_crosstab,
        crosstab,
        crosstab_node,
    )
    from consortia.stats.cox import CoxNodeData, CoxResult, fit_cox, fit_cox_federated
    from consortia.stats.cox_aggregates import (
        CoxAggregates,
        CoxStratumAggregates,
        CoxTimeSums,
        Ties,
        combine_cox_time_sums,
    )
    from consortia.stats.descriptive import (
        DescribeResult,
        combine_describe,
        describe,
        describe_node,
    )
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
    from consortia.stats.logrank import LogRankResult, logrank_from_counts, logrank_test
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
        SurvivalCounts,
        combine_survival_counts,
        kaplan_meier,
        kaplan_meier_from_counts,
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

#: The module that defines each public name, imported on first use (:func:`__getattr__`).
_MODULES: dict[str, str] = {
    "GlucoseAccuracyAggregates": "consortia.stats.agreement",
    "Iso15197Result": "consortia.stats.agreement",
    "bland_altman": "consortia.stats.agreement",
    "clarke_zones": "consortia.stats.agreement",
    "combine_iso15197": "consortia.stats.agreement",
    "iso15197": "consortia.stats.agreement",
    "iso15197_node": "consortia.stats.agreement",
    "parkes_zones": "consortia.stats.agreement",
    "CrosstabResult": "consortia.stats.contingency",
    "combine_crosstab": "consortia.stats.contingency",
    "crosstab": "consortia.stats.contingency",
    "crosstab_node": "consortia.stats.contingency",
    "CoxNodeData": "consortia.stats.cox",
    "CoxResult": "consortia.stats.cox",
    "fit_cox": "consortia.stats.cox",
    "fit_cox_federated": "consortia.stats.cox",
    "CoxAggregates": "consortia.stats.cox_aggregates",
    "CoxStratumAggregates": "consortia.stats.cox_aggregates",
    "CoxTimeSums": "consortia.stats.cox_aggregates",
    "Ties": "consortia.stats.cox_aggregates",
    "combine_cox_time_sums": "consortia.stats.cox_aggregates",
    "DescribeResult": "consortia.stats.descriptive",
    "combine_describe": "consortia.stats.descriptive",
    "describe": "consortia.stats.descriptive",
    "describe_node": "consortia.stats.descriptive",
    "Design": "consortia.stats.design",
    "LevelCounts": "consortia.stats.design",
    "design_matrix": "consortia.stats.design",
    "level_counts": "consortia.stats.design",
    "union_levels": "consortia.stats.design",
    "DiagnosticResult": "consortia.stats.diagnostic",
    "combine_diagnostic": "consortia.stats.diagnostic",
    "diagnostic_accuracy": "consortia.stats.diagnostic",
    "diagnostic_node": "consortia.stats.diagnostic",
    "GlmResult": "consortia.stats.glm",
    "fit_glm": "consortia.stats.glm",
    "fit_glm_federated": "consortia.stats.glm",
    "Family": "consortia.stats.glm_node",
    "GlmAggregates": "consortia.stats.glm_node",
    "GlmNodeData": "consortia.stats.glm_node",
    "MetaInput": "consortia.stats.meta",
    "MetaResult": "consortia.stats.meta",
    "combine_meta": "consortia.stats.meta",
    "meta_analysis": "consortia.stats.meta",
    "kaplan_meier_plot": "consortia.stats.plots",
    "ProportionResult": "consortia.stats.proportions",
    "combine_proportion": "consortia.stats.proportions",
    "proportion": "consortia.stats.proportions",
    "proportion_node": "consortia.stats.proportions",
    "ConvergenceWarning": "consortia.stats.results",
    "StatResult": "consortia.stats.results",
    "format_table": "consortia.stats.results",
    "to_jsonable": "consortia.stats.results",
    "KaplanMeierCurve": "consortia.stats.survival",
    "KaplanMeierResult": "consortia.stats.survival",
    "LogRankResult": "consortia.stats.logrank",
    "SurvivalCounts": "consortia.stats.survival",
    "combine_survival_counts": "consortia.stats.survival",
    "kaplan_meier": "consortia.stats.survival",
    "kaplan_meier_from_counts": "consortia.stats.survival",
    "logrank_from_counts": "consortia.stats.logrank",
    "logrank_test": "consortia.stats.logrank",
    "survival_counts": "consortia.stats.survival",
}


__getattr__, __dir__ = lazy_names(__name__, _MODULES, __all__)
