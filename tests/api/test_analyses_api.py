"""A statistician analyses the node's own captured data: aggregates only, policy applied."""

from __future__ import annotations

import numpy as np
from node_client import Node

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, studies, subjects
from consortia.storage.audit import iter_events

STUDY = "CART-LBCL"
URL = f"/api/v1/studies/{STUDY}/analyses"
AGES = {"SG01": [41, 47, 52, 58, 63, 66, 70], "SH01": [35, 44, 49, 55, 61, 72]}


def _seed(node: Node) -> None:
    roles = (Role.STUDY_ADMIN, Role.COORDINATOR)
    seeder = Principal(0, "seed@x", "seed", frozenset(Grant(STUDY, "*", r) for r in roles))
    studies.load_definition(node.engine, seeder, template_text("cart-lbcl"))
    for site, ages in AGES.items():
        for number, age in enumerate(ages):
            subject_id = f"{site}-{number:03d}"
            subjects.enrol_subject(
                node.engine, seeder, STUDY, subjects.SubjectInput(subject_id, site, "QZX")
            )
            values = {"age": age, "sex": "F" if number % 2 else "M", "initials": "QZX"}
            if number % 2 and age < 55:
                values["pregnant"] = False
            save = data_entry.FormSave(version=0, values=values)
            data_entry.save_form(
                node.engine, seeder, STUDY, subject_id, "screening", "demographics", save
            )


def test_a_statistician_gets_pooled_statistics_of_the_sites_they_may_analyse(node: Node) -> None:
    _seed(node)
    everywhere = node.client(node.add_user("stat@x.example", (STUDY, "*", Role.STATISTICIAN)))
    result = everywhere.post(URL, json={"kind": "describe", "table": "edc", "variable": "age"})
    assert result.status_code == 200, result.text
    ages = np.array(AGES["SG01"] + AGES["SH01"], dtype=float)
    estimates = result.json()["estimates"]
    assert estimates["n"] == ages.size
    assert abs(estimates["mean"] - ages.mean()) < 1e-12  # numpy on the same values
    assert abs(estimates["sd"] - ages.std(ddof=1)) < 1e-12
    assert "QZX" not in result.text
    singapore = node.client(node.add_user("stat@sg.example", (STUDY, "SG01", Role.STATISTICIAN)))
    local = singapore.post(URL, json={"kind": "describe", "table": "edc", "variable": "age"})
    assert local.json()["estimates"]["n"] == len(AGES["SG01"])
    assert abs(local.json()["estimates"]["mean"] - np.mean(AGES["SG01"])) < 1e-12


def test_identifiers_and_small_cells_are_refused_with_the_rule_named(node: Node) -> None:
    _seed(node)
    client = node.client(node.add_user("stat@x.example", (STUDY, "*", Role.STATISTICIAN)))
    identifier = client.post(URL, json={"kind": "describe", "table": "edc", "variable": "initials"})
    assert identifier.status_code == 400
    assert identifier.headers["content-type"] == "application/problem+json"
    small = client.post(
        URL, json={"kind": "crosstab", "table": "edc", "rows": "site", "columns": "pregnant"}
    )
    assert small.status_code == 400
    assert "min_cell_count" in small.json()["detail"]
    coordinator = node.client(node.add_user("c@x.example", (STUDY, "*", Role.COORDINATOR)))
    assert coordinator.post(URL, json={"kind": "describe", "table": "edc"}).status_code == 403
    with node.engine.connect() as connection:
        runs = [e for e in iter_events(connection, chain=STUDY) if e.action == "analysis.run"]
    assert [("refused" in e.after) for e in runs] == [True, True]
