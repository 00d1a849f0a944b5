"""``consortia demo``: a hub and two hospitals as real processes on loopback.

The demo is run as a user runs it (``python -m consortia demo``): with ``--no-serve`` it
builds the consortium, enters the subjects through each hospital's API, runs the plans'
analyses from the hub, and stops every process it started; served, Ctrl-C stops them.
Either way no process it started is left (each one's command line names the demo's
folder, so ``/proc`` shows any that is).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.demo import MARKER, SUBJECTS_PER_SITE, DemoError, _fresh_folder
from consortia.demo.entry import STUDIES
from consortia.domain.templates import load_template
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.tables import data_query, form_instance, hub_analysis, subject
from processes import READ_SECONDS, START_SECONDS, read_line, started

pytestmark = pytest.mark.slow
SUBJECTS = SUBJECTS_PER_SITE  # the default: every plan analysis is released
#: Every analysis of both studies' plans, by study
PLANS = {study: list(load_template(name).analysis_plan) for name, study in STUDIES.items()}


def _left_running(folder: Path) -> list[str]:
    """Processes whose command line names ``folder`` (the demo's servers do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in command:
            found.append(f"{entry.name}: {command}")
    return found


def _count(url: str, query: sa.Select[tuple[int]]) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert verify_trail(connection).ok
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def _signatures(url: str, study: str) -> list[str]:
    """The actions of ``study``'s audit chain at a node, from its first ``form.sign`` event
    to its last."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            actions = [e.action for e in iter_events(connection, chain=study)]
    finally:
        engine.dispose()
    signs = [n for n, action in enumerate(actions) if action == "form.sign"]
    return actions[signs[0] : signs[-1] + 1] if signs else []


def test_the_demo_builds_a_consortium_of_processes_and_stops_them_all(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "consortia",
            "demo",
            "--no-serve",
            "--folder",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=START_SECONDS * 3,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    both = f"complete, sgh n={SUBJECTS}, shh n={SUBJECTS}"
    assert f"CART-LBCL pfs_km (kaplan_meier): {both}" in out
    assert f"CART-LBCL os_km (kaplan_meier): {both}" in out
    for study, plans in PLANS.items():
        for plan in plans:
            assert f"{study} {plan} (" in out, f"{study} {plan} was not released:\n{out}"
    assert "refused" not in out, out
    assert "shh joined by invitation (pull)" in out
    for login in ("admin@hub.demo", "coordinator@sgh.demo", "investigator@shh.demo"):
        assert login in out
    assert _left_running(folder) == []

    # the hub kept both analyses, each answered by the pushed and the polling member
    hub = f"sqlite:///{folder / 'hub' / 'consortia.db'}"
    engine = make_engine(hub)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(hub_analysis.c.plan, hub_analysis.c.status, hub_analysis.c.result)
            ).all()
    finally:
        engine.dispose()
    done_plans = {row.plan: row for row in rows if row.status == "done"}
    assert set(done_plans) == {plan for plans in PLANS.values() for plan in plans}
    for row in done_plans.values():
        kept = json.loads(row.result) if isinstance(row.result, str) else row.result
        assert kept["complete"] is True, row.plan
        assert all(node["n"] > 0 for node in kept["nodes"]), row.plan
    result = done_plans["pfs_km"].result
    result = json.loads(result) if isinstance(result, str) else result
    assert {n["name"]: n["n"] for n in result["nodes"]} == {"sgh": SUBJECTS, "shh": SUBJECTS}
    assert result["complete"] is True

    # each hospital's subjects were entered through its API, and signed there
    for node in ("sgh", "shh"):
        url = f"sqlite:///{folder / node / 'consortia.db'}"
        subjects = sa.select(sa.func.count()).select_from(subject)
        assert _count(url, subjects.where(subject.c.study == "CART-LBCL")) == SUBJECTS
        # every subject's screening form, signed by the investigator as one series per study
        signed = sa.select(sa.func.count()).where(form_instance.c.signed_by.is_not(None))
        screening = (
            sa.select(sa.func.count())
            .select_from(form_instance.join(subject))
            .where(
                sa.or_(
                    (subject.c.study == "CART-LBCL") & (form_instance.c.form == "eligibility"),
                    (subject.c.study == "GLUCOSE-ISO15197")
                    & (form_instance.c.form == "demographics"),
                )
            )
        )
        hosted = ["CART-LBCL", "GLUCOSE-ISO15197"] if node == "sgh" else ["CART-LBCL"]
        assert _count(url, signed) == _count(url, screening) == len(hosted) * SUBJECTS
        # signed as one series once the subjects were entered, not one by one between them:
        # one form.sign event per form, with nothing in between
        for study in hosted:
            assert _signatures(url, study) == ["form.sign"] * SUBJECTS, study
        assert _count(url, sa.select(sa.func.count()).select_from(data_query)) >= 1
    assert not list(folder.glob(".*-password"))  # the password files are gone


def test_ctrl_c_stops_the_served_demo_and_every_process(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}
    command = [sys.executable, "-u", "-m", "consortia", "demo", "--folder", str(folder)]
    with started(
        [*command, "--subjects", "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        env=env,
    ) as demo:  # fmt: skip
        lines = []
        while not lines or "Serving until Ctrl-C" not in lines[-1]:
            lines.append(read_line(demo, demo.stdout, what="the demo to serve").decode())
        # on 3 subjects a hospital's policy refuses some analyses: each refusal names its
        # rule, and the demo says why under it
        said = "".join(lines)
        refused = [line for line in lines if ": refused: " in line]
        assert refused, said
        assert all(line.split(": refused: ")[1].startswith("min_cell_count: ") for line in refused)
        assert "not a fault; more subjects per site (--subjects)" in said
        servers = [line for line in _left_running(folder) if " serve --config " in line]
        assert len(servers) == 3  # the hub and two hospitals
        demo.send_signal(signal.SIGINT)
        assert demo.wait(READ_SECONDS) == 0
    assert _left_running(folder) == []


def test_a_second_run_rebuilds_the_demos_folder_and_never_deletes_another(
    tmp_path: Path,
) -> None:
    demo = tmp_path / "demo"
    _fresh_folder(demo)
    (demo / "hub").mkdir()
    (demo / "hub" / "consortia.db").write_text("an earlier run")
    _fresh_folder(demo)
    assert sorted(p.name for p in demo.iterdir()) == [MARKER]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DemoError, match="holds files the demo did not make"):
        _fresh_folder(other)
    assert (other / "notes.txt").read_text() == "keep me"
