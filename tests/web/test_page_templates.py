"""The page templates' structure: every page's content is in its body, never in its title.

A child template's text outside a block is dropped by Jinja without a word, and text in the
``title`` block lands inside ``<title>``, where a browser shows markup as the tab's name and
nothing on the page. Both once hid the enrolment form. The first test reads every template;
the second renders every page and reads what each ``<title>`` holds.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import jinja2
import pytest
from jinja2 import nodes
from test_capture import ADMIN, FORM, STUDY, SUBJECT, _signed_in, study_site
from web_client import PASSWORD, Browser, Site

from consortia.services import studies, users
from consortia.web import pages

TEMPLATES = Path(pages.__file__).parent / "templates"
ENVIRONMENT = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
BASE_BLOCKS = {
    block.name
    for block in ENVIRONMENT.parse((TEMPLATES / "base.html").read_text(encoding="utf-8")).find_all(
        nodes.Block
    )
}
CHILDREN = sorted(path.name for path in TEMPLATES.glob("*.html") if path.name != "base.html")
STEWARD = "steward@sg.example"
TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)

__all__ = ["study_site"]  # the fixture, shared with test_capture


def _parsed(name: str) -> nodes.Template:
    return ENVIRONMENT.parse((TEMPLATES / name).read_text(encoding="utf-8"))


def test_the_base_template_has_a_title_and_a_main_block() -> None:
    assert {"title", "main"} <= BASE_BLOCKS
    assert CHILDREN  # the glob found the templates


@pytest.mark.parametrize("name", [*CHILDREN, "base.html"])
def test_no_template_styles_inline_or_runs_inline_script(name: str) -> None:
    """The pages' CSP allows styles from the node's stylesheet only and no script: an
    inline ``<style>``, ``style=`` or ``<script>`` would be dropped by every browser."""
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    inline = r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=|javascript:"
    assert not re.search(inline, text, re.IGNORECASE), name


@pytest.mark.parametrize("name", CHILDREN)
def test_a_page_template_puts_its_content_in_blocks_of_the_base_and_no_markup_in_its_title(
    name: str,
) -> None:
    template = _parsed(name)
    (extends,) = template.find_all(nodes.Extends)
    assert isinstance(extends.template, nodes.Const)
    assert extends.template.value == "base.html"
    for node in template.body:
        if isinstance(node, nodes.Output):  # text outside every block is dropped
            text = "".join(
                child.data for child in node.nodes if isinstance(child, nodes.TemplateData)
            )
            assert not text.strip(), f"{name}: {text.strip()[:60]!r} is outside every block"
            assert all(isinstance(child, nodes.TemplateData) for child in node.nodes), name
        else:
            assert isinstance(node, nodes.Extends | nodes.Block | nodes.Macro), (name, node)
    blocks = {block.name: block for block in template.find_all(nodes.Block)}
    assert set(blocks) <= BASE_BLOCKS, f"{name}: blocks the base never shows"
    assert {"title", "main"} <= set(blocks), name
    title = blocks["title"]
    markup = [
        data.data for data in title.find_all(nodes.TemplateData) if re.search(r"[<>]", data.data)
    ]
    assert not markup, f"{name}: markup in the title: {markup}"
    # only text goes in a title: words from the catalogue and values (escaped), no tags,
    # no conditions or loops that could carry a page's content
    assert not list(title.find_all(nodes.If | nodes.For | nodes.Macro | nodes.CallBlock)), name


def _steward(site: Site) -> Browser:
    operator = users.cli_operator()
    users.create_user(site.engine, operator, email=STEWARD, name="Stew", password=PASSWORD)
    users.grant_role(site.engine, operator, email=STEWARD, study="*", site="*", role="node_admin")
    return _signed_in(site, STEWARD)


def _title(page_html: str) -> str:
    (title,) = TITLE.findall(page_html)
    return title


def test_every_page_has_a_title_of_plain_text(study_site: Site) -> None:
    browser = _signed_in(study_site)
    subject = f"/studies/{STUDY}/subjects/{SUBJECT}"
    ae = f"{subject}/events/ae_log/forms/ae"
    shown = {
        "/login": study_site.browser().get("/login"),
        "/": browser.get("/"),
        "/approvals": _steward(study_site).get("/approvals"),
        f"/studies/{STUDY}/subjects": browser.get(f"/studies/{STUDY}/subjects"),
        subject: browser.get(subject),
        FORM: browser.get(FORM),
        ae: browser.get(ae),
        "/studies/NOPE/subjects": browser.get("/studies/NOPE/subjects"),  # the error page
    }
    assert studies.read_definition(study_site.engine, ADMIN, STUDY)  # the study is there
    for path, response in shown.items():
        assert response.headers["content-type"].startswith("text/html"), path
        title = _title(response.text)
        assert "\n" not in title.strip(), (path, title)
        assert len(title) < 200, (path, title)
        assert not re.search(r"[<>]", html.unescape(title)), (path, title)
        assert title.endswith(" · Consortia"), (path, title)
        body = response.text.split("</head>", 1)[1]
        assert "<form" not in response.text.split("</head>", 1)[0], path
        if path != "/studies/NOPE/subjects":
            assert response.status_code == 200, path
            assert re.search(r"<main[\s>]", body), path
        # every page has the node's own stylesheet and no inline style (the CSP forbids it)
        head = response.text.split("</head>", 1)[0]
        sheet = r'<link rel="stylesheet" href="/static/consortia\.css\?v=[0-9a-f]{16}">'
        assert re.search(sheet, head), path
        assert "<style" not in response.text, path
        assert " style=" not in response.text, path
    listing = shown[f"/studies/{STUDY}/subjects"].text.split("</head>", 1)[1]
    assert 'id="enrol"' in listing  # in the page, not in its title
