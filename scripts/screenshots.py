"""Screenshots of the main pages, in English and Chinese, for the README and docs/pages.md.

    .venv/bin/python scripts/test_chromium.py ensure   # Chromium and a Chinese font
    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

A node on a fresh SQLite database in a temporary folder gets the CAR-T study, twelve
subjects at two sites with forms in every state, an open query, and a coordinator of both
sites; it is served on a free loopback port, and Debian's Chromium (Playwright with
``executable_path``) signs in and saves each page at 1,280 × 800: the record-status
dashboard, a subject, a form as the live form shows it, the query list. Each in
``<page>-en.png`` and ``<page>-zh.png``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
from datetime import date
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
STUDY = "CART-LBCL"
EMAIL = "mei.lin@sg.example"
PASSWORD = "screenshots passphrase"
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}


def _node(folder: Path) -> str:
    """The database URL of a node with the study and its subjects."""
    from consortia.auth.principal import Grant, Principal, Role
    from consortia.domain.templates import template_text
    from consortia.services import data_entry, form_states, queries, studies, subjects, users
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import upgrade

    url = f"sqlite:///{folder / 'node.db'}"
    engine = make_engine(url)
    upgrade(engine)
    admin = Principal(
        1,
        "admin@sg.example",
        "Admin",
        frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
    )
    reviewer = Principal(
        2,
        "monitor@sg.example",
        "Monitor",
        frozenset(Grant(STUDY, "*", r) for r in (Role.MONITOR, Role.DATA_MANAGER)),
    )
    studies.load_definition(engine, admin, template_text("cart-lbcl"))
    operator = users.cli_operator()
    users.create_user(engine, operator, email=EMAIL, name="Mei Lin", password=PASSWORD)
    for site in ("SG01", "SH01"):
        users.grant_role(engine, operator, email=EMAIL, study=STUDY, site=site, role="coordinator")
    for n in range(1, 13):
        site = "SG01" if n % 3 else "SH01"
        subject_id = f"{site}-{n:04d}"
        subjects.enrol_subject(
            engine,
            admin,
            STUDY,
            subjects.SubjectInput(subject_id, site, screening_date=date(2026, 3, n)),
        )
        if n % 4 == 0:
            continue  # nothing entered yet
        where = (STUDY, subject_id, "screening", "eligibility")
        save = data_entry.FormSave(version=0, values=ELIGIBILITY, complete=n % 5 != 0)
        data_entry.save_form(engine, admin, STUDY, subject_id, "screening", "eligibility", save)
        if n % 3 == 1 and n % 5 != 0:
            form_states.verify_form(engine, reviewer, where, 1)
        if n == 2:
            queries.open_query(engine, reviewer, *where, "ecog", "ECOG 1 in the clinic note?")
    engine.dispose()
    return url


def _serve(url: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    from consortia.app import create_app
    from consortia.config import Settings

    app = create_app(Settings(database_url=url, environment="development"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the node stopped before it served")
        threading.Event().wait(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        server, thread, base = _serve(_node(Path(folder)))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                for lang in ("en", "zh"):
                    context = browser.new_context(
                        base_url=base, viewport={"width": 1280, "height": 800}
                    )
                    page = context.new_page()
                    page.goto(f"/login?lang={lang}")
                    page.fill("#email", EMAIL)
                    page.fill("#password", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_url(f"{base}/")
                    shots = {
                        "dashboard": f"/studies/{STUDY}/dashboard",
                        "subject": f"/studies/{STUDY}/subjects/SG01-0002",
                        "form": f"/studies/{STUDY}/subjects/SG01-0002/events/screening/"
                        "forms/eligibility",
                        "queries": f"/studies/{STUDY}/queries",
                    }
                    for name, path in shots.items():
                        page.goto(path)
                        target = args.out / f"{name}-{lang}.png"
                        page.screenshot(path=str(target))
                        print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
                    context.close()
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
