from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from consortia.demo import run_demo
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine


def test_the_demo_runs_every_planned_analysis_exactly_and_audits_each_run(tmp_path: Path) -> None:
    lines: list[str] = []
    results = run_demo(tmp_path, subjects_per_site=60, seed=5, echo=lines.append)
    kinds = [result.kind for result in results]
    assert kinds == ["kaplan_meier", "kaplan_meier", "cox", "proportion", "glm"]
    assert all(result.exact and result.complete for result in results)
    assert all(list(result.n_by_node.values()) == [60, 60] for result in results)
    for name in ("study.yaml", "study-odm.xml", "redcap-dictionary.csv", "pfs_km.png"):
        assert (tmp_path / name).stat().st_size > 0
    header = (tmp_path / "sg_node" / "cart_efficacy.csv").read_text().splitlines()[0]
    assert "initials" not in header
    assert "birth_date" not in header
    engine = make_engine(f"sqlite:///{tmp_path / 'consortia.db'}")
    with engine.connect() as connection:
        assert verify_trail(connection).ok
        runs = [event.entity_id for event in iter_events(connection)]
        assert connection.execute(sa.text("select count(*) from audit_event")).scalar() == 5
    engine.dispose()
    assert runs == ["pfs_km", "os_km", "pfs_cox", "cr_day28", "cr_day28_by_arm"]
    assert any("audit trail intact: 5 events" in line for line in lines)


def test_each_demo_node_holds_its_imported_records_and_exports_them_without_identifiers(
    tmp_path: Path,
) -> None:
    import pyarrow.parquet as pq

    from consortia.storage.tables import item_value, subject

    run_demo(tmp_path, subjects_per_site=20, seed=9, echo=lambda _: None)
    for node in ("sg_node", "sh_node"):
        engine = make_engine(f"sqlite:///{tmp_path / node / 'node.db'}")
        with engine.connect() as connection:
            assert verify_trail(connection).ok
            subjects = connection.execute(sa.select(sa.func.count()).select_from(subject))
            assert subjects.scalar() == 20
            numbers = {
                row[0]
                for row in connection.execute(
                    sa.select(item_value.c.value_text).where(item_value.c.item == "hospital_number")
                )
            }
        engine.dispose()
        assert len(numbers) == 20
        demographics = pq.read_table(tmp_path / node / "export" / "demographics.parquet")
        assert demographics.num_rows == 20
        assert "hospital_number" not in demographics.column_names
        values = pq.read_table(tmp_path / node / "export" / "values.parquet").to_pydict()
        assert not numbers & set(values["value"])
