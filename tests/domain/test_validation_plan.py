"""The compiled form checks agree with the interpreter they replace, problem for problem.

``reference_validation.reference_validate_form`` is validate_form as first written; the
compiled :class:`~consortia.domain.validation.FormPlan` must give the same errors and
warnings, in the same order, and the same values, on every form of every template: as
generated, corrupted in the ways a site or a file gets them wrong, with and without the
subject's other forms as context, complete or not.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_validation import reference_validate_form

from consortia.domain.study import ItemType, Study
from consortia.domain.synthetic import FormEntry, synthesize
from consortia.domain.templates import TEMPLATE_NAMES, load_template
from consortia.domain.validation import form_plan, typed_value, validate_form
from consortia.exceptions import NotFoundError

SITES = {"cart-lbcl": "SG01", "ortho-3dp": "SH02", "glucose-iso15197": "SG01",
         "ai-diagnostic": "SG01"}  # fmt: skip
TODAY = date(2025, 6, 30)

#: Text that goes wrong in every way an item type can refuse
ODD_TEXT = ("", "  ", "x", "-1", "0", "1", "2", "5", "6", "99999", "1e3", "3.14159", "38.5",
            " 37 ", "yes", "no", "true", "2024-02-30", "2024-01-31", "2024-01-31T10:00",
            "10:30", "|", "a|b", "CR", "PR", "grade", "unarousable")  # fmt: skip
#: Typed values an API client may send instead of text
ODD_TYPED: tuple[object, ...] = (None, 0, 1, 7, -3, 2.5, True, False, Decimal("1.25"),
                                 date(2024, 1, 31), ["a"], [], ("CR",), {"x": 1})  # fmt: skip


@cache
def _entries(template: str) -> tuple[FormEntry, ...]:
    return synthesize(template, subjects=6, site=SITES[template], seed=5).entries


def _context(study: Study, entries: tuple[FormEntry, ...], entry: FormEntry) -> dict[str, object]:
    """Typed non-repeating values of the subject's other forms (as an import builds it)."""
    own = {name for group in study.forms[entry.form].groups.values() for name in group.items}
    context: dict[str, object] = {}
    for other in entries:
        if other.subject_id != entry.subject_id:
            continue
        for name, raw in other.values.items():
            value = None if isinstance(raw, list) else typed_value(study, name, raw)
            if value is not None and name not in own:
                context[name] = value
    return context


def _same(
    study: Study,
    form: str,
    values: Mapping[str, object],
    *,
    complete: bool,
    context: Mapping[str, object] | None,
) -> None:
    compiled = validate_form(study, form, values, complete=complete, context=context, today=TODAY)
    expected = reference_validate_form(
        study, form, values, complete=complete, context=context, today=TODAY
    )
    assert compiled == expected


def _corrupt(study: Study, entry: FormEntry, rng: random.Random) -> dict[str, object]:
    """The entry's values with a few things wrong."""
    values: dict[str, object] = {
        k: [dict(i) for i in v] if isinstance(v, list) else v for k, v in entry.values.items()
    }
    form = study.forms[entry.form]
    flat = [n for g in form.groups.values() if not g.repeating for n in g.items]
    groups = [n for n, g in form.groups.items() if g.repeating]
    others = [n for _, _, n, _ in study.iter_items() if n not in flat]
    for _ in range(rng.randint(1, 4)):
        move = rng.randrange(9)
        if move <= 2 and flat:
            values[rng.choice(flat)] = rng.choice(ODD_TEXT)
        elif move == 3 and flat:
            values[rng.choice(flat)] = rng.choice(ODD_TYPED)
        elif move == 4 and flat:
            values.pop(rng.choice(flat), None)
        elif move == 5:
            values[rng.choice([*others, "no_such_item"])] = "1"
        elif move == 6 and groups:
            group = rng.choice(groups)
            values[group] = rng.choice(["text", [1, {}], None, [{"zzz": "1"}]])
        elif move == 7 and groups:
            instances = values.get(rng.choice(groups))
            if isinstance(instances, list) and instances:
                instance = rng.choice(instances)
                if not isinstance(instance, dict):
                    continue
                name = rng.choice([*instance, "no_such_item"]) if instance else "no_such_item"
                instance[name] = rng.choice(ODD_TEXT)
        elif flat:
            name = rng.choice(flat)
            item = next(g.items[name] for g in form.groups.values() if name in g.items)
            if item.type in (ItemType.INTEGER, ItemType.DECIMAL):
                values[name] = rng.choice(["-1000", "1000000", "0.001", "12.5"])
            elif item.code_list:
                codes = [e.code for e in study.code_lists[item.code_list]]
                values[name] = "|".join(rng.sample(codes, min(2, len(codes))))
    return values


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_compiled_checks_agree_with_the_interpreter_on_generated_forms(template: str) -> None:
    study = load_template(template)
    entries = _entries(template)
    for entry in entries:
        context = _context(study, entries, entry)
        for complete in (True, False):
            _same(study, entry.form, entry.values, complete=complete, context=context)
        _same(study, entry.form, entry.values, complete=True, context=None)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_compiled_checks_agree_with_the_interpreter_on_corrupted_forms(template: str) -> None:
    study = load_template(template)
    entries = _entries(template)
    rng = random.Random(template)
    for _ in range(3):
        for entry in entries:
            values = _corrupt(study, entry, rng)
            context = _context(study, entries, entry) if rng.random() < 0.7 else {}
            if context and rng.random() < 0.3:  # a context with missing values in it
                context[rng.choice(list(context))] = rng.choice(["", None, (), "  "])
            _same(study, entry.form, values, complete=rng.random() < 0.6, context=context)


@st.composite
def _cart_form(draw: st.DrawFn) -> tuple[str, dict[str, object], dict[str, object]]:
    study = load_template("cart-lbcl")
    form_name = draw(st.sampled_from(sorted(study.forms)))
    form = study.forms[form_name]
    cell = st.one_of(st.sampled_from(ODD_TEXT), st.sampled_from(ODD_TYPED), st.text(max_size=4))
    values: dict[str, object] = {}
    for group_name, group in form.groups.items():
        names = sorted(group.items)
        if group.repeating:
            count = draw(st.integers(0, 2))
            values[group_name] = [
                draw(st.dictionaries(st.sampled_from(names), cell, max_size=len(names)))
                for _ in range(count)
            ]
        else:
            values |= draw(st.dictionaries(st.sampled_from(names), cell, max_size=len(names)))
    items = sorted(name for _, _, name, _ in study.iter_items())
    context = draw(st.dictionaries(st.sampled_from(items), st.sampled_from(ODD_TYPED), max_size=8))
    return form_name, values, context


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cart_form(), complete=st.booleans())
def test_compiled_checks_agree_with_the_interpreter_on_any_values(
    case: tuple[str, dict[str, object], dict[str, object]], complete: bool
) -> None:
    form, values, context = case
    _same(load_template("cart-lbcl"), form, values, complete=complete, context=context)


def test_a_new_study_object_gets_its_own_plan() -> None:
    first, second = load_template("cart-lbcl"), load_template("cart-lbcl").model_copy(deep=True)
    assert form_plan(first, "eligibility") is form_plan(first, "eligibility")
    assert form_plan(first, "eligibility") is not form_plan(second, "eligibility")
    assert form_plan(second, "eligibility").study is second


def test_a_form_the_study_lacks_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="form 'nope' is not in study"):
        validate_form(load_template("cart-lbcl"), "nope", {}, complete=False)


def test_typed_value_parses_like_the_form_and_remembers_nothing_wrong() -> None:
    study = load_template("cart-lbcl")
    assert typed_value(study, "max_temp", "38.5") == Decimal("38.5")
    assert typed_value(study, "max_temp", "38.5") == Decimal("38.5")  # from the memo
    assert typed_value(study, "ecog", "6") == 6  # ranges are the form check's business
    assert typed_value(study, "ecog", "six") is None
    assert typed_value(study, "ecog", " ") is None
    assert typed_value(study, "no_such_item", "1") is None
