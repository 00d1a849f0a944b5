"""Accessibility checks of a page as Chromium presents it to assistive technology.

Names and landmarks are read from Playwright's accessibility tree (``aria_snapshot``), so a
control counts as named only when the browser computes a name for it (a label, an
``aria-label``, its text), not when the HTML merely looks right. Contrast is computed in
the page from the styles Chromium applied (WCAG 2.x relative luminance, AA thresholds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

CONTROL_ROLES = (
    *("button", "checkbox", "combobox", "listbox", "radio", "searchbox", "slider"),
    *("spinbutton", "switch", "textbox"),
)
"""The roles of form controls (input, select, textarea, button) in the accessibility tree."""

_ITEM = re.compile(r"^\s*- (?P<item>.*)$")
_NODE = re.compile(r'^(?P<role>[a-z]+)(?: (?P<name>"(?:[^"\\]|\\.)*"|/.*?/))?(?P<rest>.*)$')
_YAML_QUOTED = re.compile(r"^'(?P<text>(?:[^']|'')*)'(?P<colon>:?)$")


@dataclass(frozen=True)
class TreeNode:
    """One line of an aria snapshot: a role, its accessible name ("" when it has none)."""

    role: str
    name: str
    line: str


def tree_nodes(page: Page) -> list[TreeNode]:
    """Every node of the page's accessibility tree (what ``aria_snapshot`` shows)."""
    nodes = []
    for line in page.locator("html").aria_snapshot().splitlines():
        item = _ITEM.match(line)
        if item is None:
            continue  # properties of the node above (/url:, /placeholder:)
        entry = item["item"]
        quoted = _YAML_QUOTED.match(entry)  # a line with ": " in it is quoted as YAML
        if quoted is not None:
            entry = quoted["text"].replace("''", "'") + quoted["colon"]
        match = _NODE.match(entry)
        if match is None:
            continue  # a text node
        name = match["name"] or ""
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"')
        nodes.append(TreeNode(match["role"], name.strip(), entry))
    return nodes


def unnamed_controls(page: Page) -> list[str]:
    """The form controls the accessibility tree shows without an accessible name."""
    return [node.line for node in tree_nodes(page) if node.role in CONTROL_ROLES and not node.name]


def landmark_problems(page: Page, lang_prefix: str, *, navigation: bool = True) -> list[str]:
    """What is missing from the page's outline: one ``main``, a ``banner``, a named
    ``navigation`` (the bar; not on the sign-in page, which has nowhere to go), one level-1
    heading, and a document language starting with ``lang_prefix``."""
    nodes = tree_nodes(page)
    roles = [node.role for node in nodes]
    problems = []
    if roles.count("main") != 1:
        problems.append(f"{roles.count('main')} main landmarks, not 1")
    if "banner" not in roles:
        problems.append("no banner landmark")
    if navigation and not any(n.role == "navigation" and n.name for n in nodes):
        problems.append("no named navigation landmark")
    h1 = [n for n in nodes if n.role == "heading" and "[level=1]" in n.line]
    if len(h1) != 1:
        problems.append(f"{len(h1)} level-1 headings, not 1")
    lang = page.evaluate("document.documentElement.lang")
    if not (lang == lang_prefix or lang.startswith(lang_prefix + "-")):
        problems.append(f"<html lang={lang!r}>, not {lang_prefix}")
    return problems


CONTRAST_JS = """() => {
  const parse = (text) => {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  // a colour with alpha laid over an opaque one
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  // the opaque colour behind an element: its own and its ancestors' backgrounds, laid one
  // over the other down to the first opaque one (or the white canvas)
  const backdrop = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let colour = [255, 255, 255, 1];
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const selector = (e) => {
    const parts = [];
    for (; e && e.nodeType === 1 && e !== document.body; e = e.parentElement) {
      if (e.id) { parts.unshift("#" + CSS.escape(e.id)); break; }
      let part = e.localName;
      if (e.classList.length) part += "." + [...e.classList].map(c => CSS.escape(c)).join(".");
      const same = e.parentElement
        ? [...e.parentElement.children].filter(s => s.localName === e.localName) : [];
      if (same.length > 1) part += ":nth-of-type(" + (same.indexOf(e) + 1) + ")";
      parts.unshift(part);
    }
    return parts.join(" > ");
  };
  const shown = (e) => {
    if (!e.getClientRects().length) return false;
    const style = getComputedStyle(e);
    if (style.visibility !== "visible") return false;
    for (let a = e; a; a = a.parentElement) {
      if (Number(getComputedStyle(a).opacity) === 0) return false;
    }
    return true;
  };
  const failures = [];
  const controls = "input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea";
  for (const e of document.body.querySelectorAll("*")) {
    if (["SCRIPT", "STYLE", "NOSCRIPT", "OPTION"].includes(e.tagName)) continue;
    const own = [...e.childNodes]
      .filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent).join("").trim();
    const control = e.matches(controls);
    const value = control ? (e.value || e.placeholder || "").trim() : "";
    const text = own || value;
    // an empty control shows its placeholder, drawn in the ::placeholder colour
    const placeholder = control && !e.value && e.placeholder;
    if (!text || !shown(e)) continue;
    if (e.disabled || e.closest("[disabled], [aria-disabled=true]")) continue;  // inactive
    const style = getComputedStyle(e);
    const background = backdrop(e);
    const drawn = placeholder ? getComputedStyle(e, "::placeholder").color : style.color;
    const colour = over(parse(drawn), background);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const needed = large ? 3 : 4.5;
    const found = ratio(colour, background);
    if (found < needed) {
      failures.push({
        selector: selector(e), text: text.slice(0, 60), color: drawn,
        background: "rgb(" + background.slice(0, 3).map(Math.round).join(", ") + ")",
        ratio: Math.round(found * 100) / 100, needed: needed,
      });
    }
  }
  return failures;
}"""
"""In the page: every visible text element (and every text control's value) whose contrast
with its effective background is under 4.5:1 (3:1 for large text)."""


def contrast_failures(page: Page) -> list[dict[str, Any]]:
    """The visible text of the page whose colour is too close to its background."""
    failures: list[dict[str, Any]] = page.evaluate(CONTRAST_JS)
    return failures


def open_disclosures(page: Page) -> int:
    """Open every ``<details>`` in the page's main content (the forms the pages fold away),
    so that their controls are in the accessibility tree and their text is drawn; the
    number opened."""
    opened: int = page.evaluate(
        "() => [...document.querySelectorAll('main details:not([open])')]"
        ".map(d => { d.open = true; }).length"
    )
    return opened


def page_problems(page: Page, lang_prefix: str, *, navigation: bool = True) -> list[str]:
    """Everything the three checks find on the page as it stands, one line each."""
    where = page.url
    problems = [f"{where}: unnamed control {line}" for line in unnamed_controls(page)]
    problems += [
        f"{where}: {problem}"
        for problem in landmark_problems(page, lang_prefix, navigation=navigation)
    ]
    problems += [
        f"{where}: contrast {f['ratio']} < {f['needed']} at {f['selector']} "
        f"({f['text']!r}, {f['color']} on {f['background']})"
        for f in contrast_failures(page)
    ]
    return problems
