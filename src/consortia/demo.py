"""``consortia demo``: a CAR-T study run by two hospitals, end to end, on embedded SQLite.

1. the ``cart-lbcl`` template is loaded and checked, and exported to ODM and REDCap;
2. each hospital's node gets synthetic patients (its own seed): its records are imported
   into the node's own database (every form checked, every value audited), exported again
   without identifiers (Parquet), and the node derives its analysis table locally —
   identifiers never enter it;
3. every analysis in the study's plan runs federated over the two nodes with the default
   disclosure policy, through the same signed protocol as over the network;
4. each analysis run is appended to the hash-chained audit trail in the demo's SQLite
   database, which is then verified.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia.auth.principal import Role
from consortia.domain.study_yaml import study_to_yaml
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import load_template, template_text
from consortia.exceptions import ConsortiaError
from consortia.services.audit_trail import verify_trail
from consortia.services.common import cli_operator
from consortia.services.database import migrate, opened_database
from consortia.services.exports import ExportFormat, ExportRequest, export_study
from consortia.services.federated import (
    AnalysisResult,
    KaplanMeierEstimates,
    analyze_files,
    audit_analysis_run,
)
from consortia.services.imports import import_file
from consortia.services.studies import load_definition
from consortia.standards.odm import export_odm_file
from consortia.standards.redcap_export import export_redcap_file
from consortia.stats.plots import kaplan_meier_plot

TEMPLATE = "cart-lbcl"


def run_demo(
    folder: Path,
    *,
    subjects_per_site: int = 120,
    seed: int = 2026,
    echo: Callable[[str], None] = print,
) -> list[AnalysisResult]:
    """Run the demonstration in ``folder``; return the federated results."""
    folder.mkdir(parents=True, exist_ok=True)
    study = load_template(TEMPLATE)
    echo(f"Study {study.summary()}")
    (folder / "study.yaml").write_text(study_to_yaml(study), encoding="utf-8")
    export_odm_file(study, folder / "study-odm.xml")
    export_redcap_file(study, folder / "redcap-dictionary.csv")
    echo(f"  wrote {folder}/study.yaml, study-odm.xml (CDISC ODM 1.3.2), redcap-dictionary.csv")

    tables: dict[str, Path] = {}
    for index, (site_code, site) in enumerate(study.sites.items()):
        data = synthesize(TEMPLATE, subjects=subjects_per_site, site=site_code, seed=seed + index)
        node_dir = folder / site.node
        node_dir.mkdir(exist_ok=True)
        records = data.write_csv(node_dir / "records.csv")
        tables[site.node] = data.write_analysis_csv(node_dir / f"{data.analysis_table}.csv")
        echo(
            f"  node {site.node} ({site.name}): {subjects_per_site} synthetic subjects, "
            f"{len(data.records)} records; analysis table {data.analysis_table}"
        )
        _capture(node_dir, study.study.id, site_code, records, echo)

    results = []
    database = folder / "consortia.db"
    with opened_database(f"sqlite:///{database}") as engine:
        migrate(engine)
        for name, analysis in study.analysis_plan.items():
            request = analysis.model_dump()
            echo(f"\n== {name} ==")
            try:
                result = analyze_files(request, tables)
            except ConsortiaError as error:
                echo(f"refused: {error}")
                outcome: dict[str, Any] = {"refused": str(error)}
            else:
                echo(result.summary())
                results.append(result)
                record = result.record()
                outcome = {key: record[key] for key in ("exact", "nodes", "rounds", "bytes")}
                if isinstance(result.estimates, KaplanMeierEstimates):
                    image = folder / f"{name}.png"
                    image.write_bytes(
                        kaplan_meier_plot(result.estimates.curves, time_label="Days", title=name)
                    )
                    echo(f"curves drawn in {image}")
            audit_analysis_run(
                engine,
                study.study.id,
                actor="demo",
                name=name,
                after={"request": request, **outcome},
            )
        echo(f"\n{verify_trail(engine)} ({database})")
    return results


def _capture(
    node_dir: Path, study: str, site: str, records: Path, echo: Callable[[str], None]
) -> None:
    """The hospital's own node database: load the study, import, export, verify."""
    database = node_dir / "node.db"
    for leftover in node_dir.glob("node.db*"):  # the demo starts afresh each time
        leftover.unlink()
    with opened_database(f"sqlite:///{database}") as engine:
        migrate(engine)
        operator = cli_operator(Role.STUDY_ADMIN, Role.COORDINATOR, Role.DATA_MANAGER)
        load_definition(engine, operator, template_text(TEMPLATE), file=f"{TEMPLATE}.yaml")
        report = import_file(engine, operator, study, records, site=site)
        counts = export_study(
            engine, operator, study, ExportRequest(ExportFormat.PARQUET), node_dir / "export"
        )
        chain = verify_trail(engine)
    echo(
        f"    imported {report.values} values in {report.forms} forms into {database} "
        f"({report.queries_opened} queries opened for soft problems); exported "
        f"{len(counts)} tables without identifiers to {node_dir / 'export'}; {chain}"
    )
