"""REDCap data dictionaries: import, export, round trips and the logic translator."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest

from consortia.domain import expressions
from consortia.domain.study import ItemType, Study
from consortia.domain.study_yaml import load_study, load_study_text, study_from_document
from consortia.domain.yamlsource import load_yaml_text
from consortia.exceptions import ExpressionError, InterchangeError, Problem
from consortia.standards.redcap_dictionary import COLUMNS
from consortia.standards.redcap_export import export_redcap, export_redcap_file
from consortia.standards.redcap_import import import_redcap, import_redcap_text
from consortia.standards.redcap_logic import logic_to_expression
from consortia.standards.redcap_logic_writer import expression_to_logic

DATA = Path(__file__).parent / "data"
DICTIONARY = DATA / "redcap_dictionary.csv"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cart-tour.yaml"
LONG_HEADER = ",".join(f'"{long}"' for _, long, _ in COLUMNS)
SHORT_HEADER = ",".join(short for _, _, short in COLUMNS)


def same_expression(a: str | None, b: str | None) -> bool:
    """Equal as parsed trees: parentheses and spacing do not matter."""
    if a is None or b is None:
        return a is b
    return ast.dump(ast.parse(a, mode="eval")) == ast.dump(ast.parse(b, mode="eval"))


def row(name: str, form: str, kind: str, label: str, **cells: str) -> str:
    """One 18-column dictionary line; ``cells`` by column key (see COLUMNS)."""
    values = {"field_name": name, "form_name": form, "field_type": kind, "field_label": label}
    values |= cells
    out = []
    for key, _, _ in COLUMNS:
        value = values.get(key, "")
        out.append(
            f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value
        )
    return ",".join(out)


def dictionary(*rows: str, header: str = LONG_HEADER) -> str:
    return "\n".join([header, row("record_id", "demo", "text", "Record ID"), *rows]) + "\n"


def problems_of(text: str, file: str = "dd.csv") -> list[Problem]:
    with pytest.raises(InterchangeError) as caught:
        import_redcap_text(text, file)
    return list(caught.value.problems)


# --------------------------------------------------------------------- importing


@pytest.fixture(scope="module")
def imported() -> tuple[Study, tuple[Problem, ...]]:
    result = import_redcap(DICTIONARY)
    return result.study, result.warnings


def test_a_realistic_dictionary_becomes_forms_in_order_with_one_baseline_event(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported
    assert study.study.id == "redcap_dictionary"
    assert (study.study.phase.value, study.study.sponsor, study.study.version) == (
        "n/a",
        "unknown",
        "1",
    )
    assert list(study.forms) == ["enrolment", "baseline", "follow_up"]
    assert list(study.events) == ["baseline"]
    assert study.events["baseline"].day == 0
    assert study.events["baseline"].forms == ("enrolment", "baseline", "follow_up")
    assert all(list(form.groups) == ["main"] for form in study.forms.values())
    assert [name for _, _, name, _ in study.iter_items()][:6] == [
        "enrol_date",
        "dob",
        "initials",
        "sex",
        "weight",
        "height",
    ]


def test_every_field_type_maps_to_its_item_type(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported
    types = {name: item.type for _, _, name, item in study.iter_items()}
    assert types == {
        "enrol_date": ItemType.DATE,  # date_ymd
        "dob": ItemType.DATE,  # date_dmy
        "initials": ItemType.TEXT,
        "sex": ItemType.CHOICE,  # radio
        "weight": ItemType.DECIMAL,  # number_1dp
        "height": ItemType.DECIMAL,  # number
        "pregnant": ItemType.BOOLEAN,  # yesno
        "email": ItemType.TEXT,  # email validation
        "email_reason": ItemType.TEXT,  # notes
        "symptoms": ItemType.MULTICHOICE,  # checkbox
        "fever_days": ItemType.INTEGER,
        "cough_type": ItemType.CHOICE,  # dropdown
        "onset_date": ItemType.DATE,  # date_mdy
        "late_reason": ItemType.TEXT,
        "comments": ItemType.TEXT,
        "comments_seen": ItemType.BOOLEAN,
        "smoker": ItemType.BOOLEAN,  # truefalse
        "pack_years": ItemType.DECIMAL,  # number_2dp
        "pain": ItemType.INTEGER,  # slider
        "xray": ItemType.FILE,
        "visit_weight": ItemType.DECIMAL,
        "entered_by": ItemType.TEXT,
        "fu_date": ItemType.DATE,
        "fu_status": ItemType.CHOICE,
        "death_date": ItemType.DATE,
        "last_time": ItemType.TIME,
        "last_seen": ItemType.DATETIME,  # datetime_seconds_ymd
    }
    assert "record_id" not in types
    assert "consent_note" not in types


def test_ranges_precision_flags_help_and_max_length_are_read(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported
    weight, height = study.item("weight"), study.item("height")
    assert weight.precision == 1
    assert weight.required
    assert weight.help is not None
    assert (weight.range and (weight.range.min, weight.range.max)) == (20, 250)  # @FORCE-MINMAX
    assert weight.soft_range is None
    assert height.range is None  # REDCap min/max alone only ask for confirmation
    assert (height.soft_range and (height.soft_range.min, height.soft_range.max)) == (100, 230)
    assert study.item("pack_years").precision == 2
    pain = study.item("pain")
    assert pain.range is not None
    assert (pain.range.min, pain.range.max) == (0, 100)
    assert study.item("dob").identifier
    assert study.item("dob").required
    assert study.item("initials").max_length == 3
    assert study.item("initials").identifier
    assert weight.help.en == weight.help.zh == "Without shoes, in kg"
    comments = study.item("comments").label.en
    assert comments == 'Any "other" comments?\nWrite them here.'  # Excel quoting survives


def test_code_lists_are_named_after_their_field_and_keep_text_codes_and_commas(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported

    def entries(name: str) -> list[tuple[str, str]]:
        return [(e.code, e.label.en) for e in study.code_lists[name]]

    assert study.item("sex").code_list == "sex"
    assert entries("sex") == [("1", "Male"), ("2", "Female")]
    assert entries("symptoms")[2] == ("3", "Shortness of breath, at rest")
    assert entries("cough_type") == [("dry", "Dry"), ("wet", "Productive")]
    assert all(e.label.zh == e.label.en for e in study.code_lists["fu_status"])


def test_branching_logic_becomes_show_if_expressions(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported
    expected = {
        "pregnant": "sex == '2' and age >= 12",
        "email_reason": "is_missing(email)",
        "fever_days": "symptoms['1']",
        "cough_type": "symptoms['2'] and not symptoms['3']",
        "late_reason": "days_between(onset_date, enrol_date) > 7",
        "comments_seen": "not is_missing(comments)",
        "pack_years": "smoker == True",
        "death_date": "fu_status == '2' or (fu_status == '3' and (age if smoker == True else 0) > 60)",
    }
    for name, source in expected.items():
        assert same_expression(study.item(name).show_if, source), (name, study.item(name).show_if)
    assert study.item("visit_weight").show_if is None
    assert study.item("entered_by").show_if is None


def test_calc_fields_become_derived_variables(imported: tuple[Study, tuple[Problem, ...]]) -> None:
    study, _ = imported
    derived = study.derived
    assert list(derived) == ["age", "bmi", "heavy_smoker", "fu_days"]
    assert same_expression(derived["age"].expression, "abs(years_between(dob, enrol_date))")
    assert derived["age"].unit == "years"
    assert derived["age"].type.value == "decimal"
    assert same_expression(derived["bmi"].expression, "round(weight / (height / 100) ** 2, 1)")
    assert same_expression(derived["heavy_smoker"].expression, "1 if pack_years >= 20 else 0")
    assert derived["heavy_smoker"].type.value == "integer"
    assert same_expression(derived["fu_days"].expression, "days_between(enrol_date, fu_date)")
    values = {"weight": 81, "height": 180, "dob": "1970-06-01", "enrol_date": "2024-05-31"}
    assert expressions.parse(derived["bmi"].expression).evaluate(values) == 25.0
    age = expressions.parse(derived["age"].expression).evaluate(values)
    assert isinstance(age, float)
    assert 53.9 < age < 54


def test_warnings_carry_the_csv_line_where_each_record_starts(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    _, warnings = imported
    first = warnings[0]
    assert first.path == "labels"
    assert "copy of the English" in first.message
    assert sum("Chinese" in w.message for w in warnings) == 1
    by_field = {(w.path, w.line): w.message for w in warnings[1:]}
    assert "record identifier" in by_field[("record_id", 2)]
    assert "section header" in by_field[("enrol_date", 3)]
    assert "descriptive" in by_field[("consent_note", 12)]
    # line 20 holds a label over two physical lines, so visit_weight's record starts on 28
    assert "[baseline_arm_1][weight]" in by_field[("visit_weight", 28)]
    assert "another event" in by_field[("visit_weight", 28)]
    assert "smart variable" in by_field[("entered_by", 29)]
    assert all(w.file == str(DICTIONARY) for w in warnings)


def test_untranslatable_logic_is_kept_in_the_help_text(
    imported: tuple[Study, tuple[Problem, ...]],
) -> None:
    study, _ = imported
    help_text = study.item("visit_weight").help
    assert help_text is not None
    assert help_text.en == "REDCap branching logic: [baseline_arm_1][weight] > 0"
    assert help_text.zh == help_text.en


def test_the_study_id_comes_from_the_option_or_a_sanitised_file_name() -> None:
    text = dictionary(row("age", "demo", "text", "Age", validation="integer"))
    assert import_redcap_text(text, "My Trial (v2).csv").study.study.id == "My_Trial_v2"
    assert import_redcap_text(text, "x.csv", study_id="TRIAL-7").study.study.id == "TRIAL-7"
    with pytest.raises(InterchangeError, match="study id 'bad id'"):
        import_redcap_text(text, "x.csv", study_id="bad id")


def test_short_api_headers_and_a_bom_are_accepted() -> None:
    text = "\ufeff" + dictionary(
        row("age", "demo", "text", "Age", validation="integer", min="0", max="120"),
        header=SHORT_HEADER,
    )
    study = import_redcap_text(text).study
    assert study.item("age").type is ItemType.INTEGER
    assert study.item("age").soft_range is not None


def test_number_with_decimal_comma_and_unknown_validation() -> None:
    text = dictionary(
        row("dose", "demo", "text", "Dose", validation="number_3dp_comma_decimal"),
        row("code", "demo", "text", "Code", validation="my_custom_rule"),
    )
    result = import_redcap_text(text)
    assert result.study.item("dose").precision == 3
    assert result.study.item("code").type is ItemType.TEXT
    assert any(w.line == 4 and "my_custom_rule" in w.message for w in result.warnings)


def test_an_identical_choice_list_is_reused() -> None:
    text = dictionary(
        row("q1", "demo", "radio", "Q1", choices="1, Yes | 0, No"),
        row("q2", "demo", "dropdown", "Q2", choices="1, Yes|0, No"),
        row("q3", "demo", "radio", "Q3", choices="1, Yes | 0, No | 9, Unknown"),
    )
    study = import_redcap_text(text).study
    assert [study.item(n).code_list for n in ("q1", "q2", "q3")] == ["q1", "q1", "q3"]


# --------------------------------------------------------------------- bad input


def test_semicolon_separated_files_are_refused_with_advice() -> None:
    text = LONG_HEADER.replace('","', '";"') + "\nage;demo;;text;Age" + ";" * 13 + "\n"
    (problem,) = problems_of(text)
    assert problem.line == 1
    assert "semicolons" in problem.message
    assert "use comma-separated values" in problem.message


def test_tab_separated_files_are_refused() -> None:
    text = SHORT_HEADER.replace(",", "\t") + "\n"
    (problem,) = problems_of(text)
    assert "tabs" in problem.message


def test_missing_columns_are_named() -> None:
    (problem,) = problems_of("field_name,form_name,field_note\nage,demo,\n")
    assert problem.line == 1
    assert "'Field Type'" in problem.message
    assert "'Field Label'" in problem.message
    assert "'Form Name'" not in problem.message


def test_a_duplicated_column_is_refused() -> None:
    problems = problems_of("field_name,form_name,field_type,field_label,Field Type\n")
    assert any("appears twice" in p.message for p in problems)


def test_non_utf8_bytes_are_reported_with_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    text = dictionary(row("age", "démo", "text", "Âge"), row("sex", "demo", "text", "Sex"))
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InterchangeError) as caught:
        import_redcap(path)
    problems = caught.value.problems
    assert [p.line for p in problems] == [3, 3]
    assert "byte 0xE9 (byte 6 of the line" in problems[0].message
    assert "CSV UTF-8" in problems[0].message
    assert problems[0].file == str(path)


def test_every_row_problem_is_reported_at_once_with_its_line() -> None:
    text = dictionary(
        row("age", "demo", "text", "Age"),  # line 3
        row("weight", "", "text", "Weight"),  # 4: empty form name
        row("height", "demo", "textbox", "Height"),  # 5: unknown type
        row("sex", "demo", "radio", "Sex", choices="1, Male | Female"),  # 6: no code
        row("age", "demo", "text", "Age again"),  # 7: duplicate of line 3
        row("race", "demo", "checkbox", "Race", choices="1, A | 1, B"),  # 8: duplicate code
        row("eye", "demo", "dropdown", "Eye colour"),  # 9: no choices
        row("bmi", "demo", "calc", "BMI"),  # 10: no calculation
        row("temp", "demo", "text", "Temp", validation="number", min="low"),  # 11
        row("hb", "demo", "text", "Hb", validation="number", min="20", max="5"),  # 12
    )
    problems = problems_of(text)
    found = {(p.line, p.path): p.message for p in problems}
    assert found[(4, "weight")].startswith("the Form Name is empty")
    assert "unknown field type 'textbox'" in found[(5, "height")]
    assert "'Female' is not 'code, label'" in found[(6, "sex")]
    assert found[(7, "age")] == "field 'age' is defined twice: lines 3 and 7"
    assert "choice code '1' appears twice" in found[(8, "race")]
    assert "needs choices" in found[(9, "eye")]
    assert "has no calculation" in found[(10, "bmi")]
    assert "'low' is not a number" in found[(11, "temp")]
    assert "min 20 is greater than max 5" in found[(12, "hb")]
    assert all(str(p).startswith(f"dd.csv:{p.line}:") for p in problems)


def test_line_numbers_count_physical_lines_of_quoted_multiline_records() -> None:
    text = dictionary(
        row("note", "demo", "notes", "First line\nsecond line\nthird line"),  # lines 3-5
        row("bad", "demo", "nonsense", "Bad"),  # line 6
    )
    (problem,) = problems_of(text)
    assert (problem.line, problem.path) == (6, "bad")


def test_an_unclosed_quote_is_reported_where_its_record_starts() -> None:
    text = dictionary(row("age", "demo", "text", "Age"), 'sex,demo,,radio,"Sex, 1, M\n', "x,y\n")
    (problem,) = problems_of(text)
    assert problem.line == 4
    assert "never closed" in problem.message


def test_a_record_with_more_values_than_columns_is_refused() -> None:
    text = dictionary(row("age", "demo", "text", "Age") + ",surprise")
    (problem,) = problems_of(text)
    assert problem.line == 3
    assert "19 values" in problem.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the file is empty"),
        (LONG_HEADER + "\n", "no fields"),
        (dictionary(), "no data fields"),
    ],
)
def test_empty_dictionaries_are_refused(text: str, fragment: str) -> None:
    (problem,) = problems_of(text)
    assert fragment in problem.message


def test_a_reference_to_an_unknown_field_warns_and_keeps_the_field() -> None:
    text = dictionary(row("age", "demo", "text", "Age", branching_logic="[agee] > 3"))
    result = import_redcap_text(text)
    assert result.study.item("age").show_if is None
    assert any(w.line == 3 and "[agee] is not a field" in w.message for w in result.warnings)


# --------------------------------------------------------------------- logic translation

FIELDS = {
    name: (name, kind)
    for name, kind in {
        "age": ItemType.INTEGER,
        "weight": ItemType.DECIMAL,
        "sex": ItemType.CHOICE,
        "chk": ItemType.MULTICHOICE,
        "yn": ItemType.BOOLEAN,
        "d1": ItemType.DATE,
        "d2": ItemType.DATE,
        "note": ItemType.TEXT,
    }.items()
}
TYPES = {name: kind for name, (_, kind) in FIELDS.items()}


@pytest.mark.parametrize(
    ("logic", "expected"),
    [
        ("[age] >= 18", "age >= 18"),
        ("[age] >= '18'", "age >= 18"),  # a number field compares numbers
        ("[sex] = 1", "sex == '1'"),  # choice codes are text
        ("[sex] <> '2' AND [sex] != \"3\"", "sex != '2' and sex != '3'"),
        ("[age] > 5 Or ([age] < 2 and [weight] = 3.5)", "age > 5 or (age < 2 and weight == 3.5)"),
        ("[chk(2)] = '1'", "chk['2']"),
        ("[chk(2)] = '0'", "not chk['2']"),
        ("[chk(a_b)] <> '1'", "not chk['a_b']"),
        ("[yn] = '1'", "yn == True"),
        ("[yn] = 0", "yn == False"),
        ("[note] = ''", "is_missing(note)"),
        ('[note] <> ""', "not is_missing(note)"),
        ("'' = [note]", "is_missing(note)"),
        ("datediff([d1], [d2], 'd') > 30", "abs(days_between(d1, d2)) > 30"),
        ("datediff([d1], [d2], 'd', true) > 30", "days_between(d1, d2) > 30"),
        ("datediff([d1],[d2],'M','dmy',true) >= 6", "months_between(d1, d2) >= 6"),
        ("datediff([d1], 'today', 'y') >= 18", "abs(years_between(d1, today())) >= 18"),
        ("datediff([d1], [d2], 'h', false) < 1", "abs(days_between(d1, d2)) * 24 < 1"),
        ("datediff([d1], [d2], 'm') < 90", "abs(days_between(d1, d2)) * 1440 < 90"),
        ("if([yn] = 1, [age], 0) > 3", "(age if yn == True else 0) > 3"),
        (
            "if([d1] <> '', [d1], if([d2] <> '', [d2], '2024-01-01'))",
            "coalesce(d1, d2, '2024-01-01')",
        ),
        ("round([weight] / ([age] ^ 2), 2)", "round(weight / age ** 2, 2)"),
        ("sqrt([weight]) + mod([age], 7) - -1", "weight ** 0.5 + age % 7 - -1"),
        ("sum([age], [weight]) > max(1, [age])", "sum(age, weight) > max(1, age)"),
        ("[d1] > '2024-01-01'", "d1 > '2024-01-01'"),
    ],
)
def test_redcap_logic_is_translated(logic: str, expected: str) -> None:
    result = logic_to_expression(logic, FIELDS)
    assert same_expression(result, expected), result
    expressions.parse(result)


@pytest.mark.parametrize(
    ("logic", "fragment", "column"),
    [
        ("[baseline_arm_1][age] > 1", "another event or repeat instance", 1),
        ("[age][previous-instance] > 1", "another event or repeat instance", 1),
        ("[age] > 1 and [user-name] = 'x'", "[user-name] is a smart variable", 15),
        ("[sex:label] = 'Male'", "piping option", 1),
        ("rounddown([age]) > 1", "rounddown() has no equivalent", 1),
        ("[nothere] = 1", "[nothere] is not a field", 1),
        ("[chk] = '1'", "needs a code", 1),
        ("[age(2)] = '1'", "only checkbox fields take a code", 1),
        ("[chk(2)] = '2'", "compares only with '1' or '0'", 10),
        ("[age] = 'old'", "is a number", 7),
        ("[yn] = 'maybe'", "compares with '1' or '0'", 6),
        ("[age] > ''", "empty string", 7),
        ("datediff([d1], [d2], 'w')", "unit must be one of", 22),
        ("datediff([d1], 'now', 'd')", "'now' has no equivalent", 16),
        ("[age] ^ [age] > 1", "constant exponent", 9),
        ("[age] > 1 )", "unexpected ')'", 11),
        ("([age] > 1", "expected ')'", 11),
        ("[age] > 'x", "unterminated string", 9),
        ("[age > 1", "unclosed '['", 1),
        ("[age] # 1", "unexpected character '#'", 7),
        ("", "empty", 1),
    ],
)
def test_untranslatable_logic_says_what_and_where(logic: str, fragment: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        logic_to_expression(logic, FIELDS)
    assert fragment in caught.value.message
    assert caught.value.column == column


def test_unsigned_datediff_is_an_absolute_value_as_in_redcap() -> None:
    source = logic_to_expression("datediff([d1], [d2], 'd')", FIELDS)
    later_first = {"d1": date(2024, 3, 1), "d2": date(2024, 1, 1)}
    assert expressions.parse(source).evaluate(later_first) == 60
    signed = logic_to_expression("datediff([d1], [d2], 'd', true)", FIELDS)
    assert expressions.parse(signed).evaluate(later_first) == -60


@pytest.mark.parametrize(
    ("expression", "logic"),
    [
        ("age >= 18 and sex == 'F'", "[age] >= 18 and [sex] = 'F'"),
        ("sex != 'F' or age < 2 and weight > 3", "[sex] <> 'F' or ([age] < 2 and [weight] > 3)"),
        ("chk['2'] and not chk['3']", "[chk(2)] = '1' and [chk(3)] = '0'"),
        ("contains(chk, '2')", "[chk(2)] = '1'"),
        ("'2' in chk", "[chk(2)] = '1'"),
        ("yn == True", "[yn] = '1'"),
        ("yn", "[yn] = '1'"),
        ("not yn", "[yn] = '0'"),
        ("is_missing(note)", "[note] = ''"),
        ("not is_missing(note)", "[note] <> ''"),
        ("not (age > 3 and sex == 'M')", "[age] <= 3 or [sex] <> 'M'"),
        ("sex in ['1', '2']", "[sex] = '1' or [sex] = '2'"),
        ("18 <= age < 65", "18 <= [age] and [age] < 65"),
        ("days_between(d1, d2) > 7", "datediff([d1], [d2], 'd', true) > 7"),
        ("abs(years_between(d1, today())) >= 18", "datediff([d1], 'today', 'y') >= 18"),
        ('note == "it\'s"', '[note] = "it\'s"'),
    ],
)
def test_expressions_are_written_as_redcap_logic(expression: str, logic: str) -> None:
    assert expression_to_logic(expression, TYPES) == logic


@pytest.mark.parametrize(
    "expression",
    [
        "age >= 18 and sex == '1'",
        "chk['2'] or not chk['x']",
        "yn == True and not is_missing(note)",
        "days_between(d1, coalesce(d2, '2024-01-01')) > 7",
        "abs(months_between(d1, d2)) <= 3",
        "(age if yn == False else weight) > 3",
        "(age + weight) * 2 / 3 - 1 >= 0",
        "round(weight / (age / 100) ** 2, 1) > 25",
    ],
)
def test_writing_then_reading_logic_gives_the_expression_back(expression: str) -> None:
    back = logic_to_expression(expression_to_logic(expression, TYPES), FIELDS)
    assert same_expression(back, expression), back


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("len(note) > 3", "len() has no REDCap equivalent"),
        ("not age", "'not age' has no REDCap equivalent"),
        ("age", "'age' alone is not a condition"),
        ("age // 2 > 1", "has no REDCap equivalent"),
        ("note == 'a\"b\\'c'", "both kinds of quote"),
    ],
)
def test_expressions_without_redcap_equivalent_are_refused(expression: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        expression_to_logic(expression, TYPES)
    assert fragment in caught.value.message


# --------------------------------------------------------------------- exporting and round trips

SMALL_STUDY = """
study:
  id: ROUND-TRIP
  title: {en: Round trip, zh: 往返}
  phase: "2"
  sponsor: Test
  version: "3"
code_lists:
  sex:
    - {code: F, label: {en: Female, zh: 女}}
    - {code: M, label: {en: Male, zh: 男}}
  symptoms:
    - {code: "1", label: {en: Fever, zh: 发热}}
    - {code: "2", label: {en: Cough, zh: 咳嗽}}
events:
  screening: {label: {en: Screening, zh: 筛选}, day: -7, forms: [demo]}
  visit: {label: {en: Visit, zh: 访视}, day: 0, repeating: true, forms: [clinical]}
forms:
  demo:
    label: {en: Demographics, zh: 人口学}
    groups:
      main:
        items:
          initials: {type: text, label: {en: Initials, zh: 缩写}, identifier: true, max_length: 3}
          dob: {type: date, label: {en: Date of birth, zh: 出生日期}, identifier: true, required: true}
          sex: {type: choice, code_list: sex, label: {en: Sex, zh: 性别}, required: true}
          age:
            type: integer
            label: {en: Age, zh: 年龄}
            unit: years
            range: {min: 18, max: 99}
            help: {en: Age at consent, zh: 签署同意时年龄}
          pregnant: {type: boolean, label: {en: Pregnant, zh: 妊娠}, show_if: "sex == 'F' and age < 55"}
  clinical:
    label: {en: Clinical, zh: 临床}
    groups:
      vitals:
        label: {en: Vital signs, zh: 生命体征}
        items:
          visit_date: {type: date, label: {en: Visit date, zh: 访视日期}, required: true}
          visit_time: {type: time, label: {en: Visit time, zh: 访视时间}}
          seen_at: {type: datetime, label: {en: Seen at, zh: 就诊时间}}
          weight:
            type: decimal
            precision: 1
            unit: kg
            label: {en: Weight, zh: 体重}
            soft_range: {min: 30, max: 200}
      symptoms_group:
        repeating: true
        items:
          symptoms: {type: multichoice, code_list: symptoms, label: {en: Symptoms, zh: 症状}}
          fever_days:
            type: integer
            label: {en: Days with fever, zh: 发热天数}
            show_if: "symptoms['1'] and not symptoms['2']"
          other: {type: text, label: {en: Other, zh: 其他}, show_if: "is_missing(fever_days)"}
          scan: {type: file, label: {en: Scan, zh: 扫描}, show_if: "days_between(dob, visit_date) > 7"}
    checks:
      - name: plausible_weight
        expression: weight < 150
        severity: warning
        message: {en: Heavy, zh: 体重大}
derived:
  age_now:
    expression: "abs(years_between(dob, today()))"
    label: {en: Age today, zh: 当前年龄}
    unit: years
  bmi_flag:
    type: integer
    expression: "1 if weight > 100 else 0"
    label: {en: Heavy, zh: 体重大}
  first_date:
    type: date
    expression: "coalesce(visit_date, dob)"
    label: {en: First date, zh: 首个日期}
"""


def assert_equivalent_for_redcap(original: Study, back: Study) -> None:
    """Every feature a data dictionary holds survives: compare field by field."""
    assert list(back.forms) == list(original.forms)
    assert [(f, n) for f, _, n, _ in back.iter_items()] == [
        (f, n) for f, _, n, _ in original.iter_items()
    ]
    for _, _, name, item in original.iter_items():
        other = back.item(name)
        assert other.type == item.type, name
        assert other.label.en == item.label.en, name
        assert (other.unit, other.precision, other.max_length) == (
            item.unit,
            item.precision,
            item.max_length,
        ), name
        assert (other.required, other.identifier) == (item.required, item.identifier), name
        assert other.range == item.range, name
        assert other.soft_range == (item.soft_range if item.range is None else None), name
        assert (other.help and other.help.en) == (item.help and item.help.en), name
        assert same_expression(other.show_if, item.show_if), (name, other.show_if)
        if item.code_list is not None:
            assert other.code_list is not None
            codes = [(e.code, e.label.en) for e in original.code_lists[item.code_list]]
            assert [(e.code, e.label.en) for e in back.code_lists[other.code_list]] == codes
    assert list(back.derived) == list(original.derived)
    for name, derived in original.derived.items():
        other_derived = back.derived[name]
        assert same_expression(other_derived.expression, derived.expression), name
        assert (other_derived.type, other_derived.label.en, other_derived.unit) == (
            derived.type,
            derived.label.en,
            derived.unit,
        ), name


def test_a_small_study_survives_export_and_import() -> None:
    original = load_study_text(SMALL_STUDY, "small.yaml")
    exported = export_redcap(original)
    back = import_redcap_text(exported.text, "small.csv").study
    assert_equivalent_for_redcap(original, back)
    assert list(back.events) == ["baseline"]


def test_exporting_a_small_study_warns_about_what_redcap_cannot_hold() -> None:
    exported = export_redcap(load_study_text(SMALL_STUDY, "small.yaml"))
    warnings = {w.path: w.message for w in exported.warnings}
    assert "2 events not written" in warnings["events"]
    assert "plausible_weight" in warnings["forms.clinical.checks"]
    assert "repeating" in warnings["forms.clinical.groups.symptoms_group"]
    assert "Chinese" in warnings["labels"]
    assert "numeric" in warnings["derived.first_date"]
    assert all(w.line == 0 for w in exported.warnings)


def test_the_exported_dictionary_has_redcaps_18_columns_and_a_record_id_first() -> None:
    exported = export_redcap(load_study_text(SMALL_STUDY, "small.yaml"))
    lines = exported.text.split("\r\n")
    assert lines[0].startswith("Variable / Field Name,Form Name,Section Header,Field Type,")
    assert lines[0].endswith("Matrix Ranking?,Field Annotation")
    assert lines[1] == "record_id,demo,,text,Record ID" + "," * 13
    assert "visit_date,clinical,Vital signs,text,Visit date,,,date_ymd" in exported.text
    assert "age,demo,,text,Age,,Age at consent,integer,18,99" in exported.text
    assert '@FORCE-MINMAX @CONSORTIA-UNIT=""years""' in exported.text
    assert "weight,clinical,,text,Weight,,,number_1dp,30,200" in exported.text  # soft: no tag
    assert 'symptoms,clinical,,checkbox,Symptoms,"1, Fever | 2, Cough"' in exported.text
    assert "pregnant,demo,,yesno,Pregnant,,,,,,,[sex] = 'F' and [age] < 55" in exported.text
    assert 'bmi_flag,derived_variables,,calc,Heavy,"if([weight] > 100, 1, 0)"' in exported.text


def test_an_expression_redcap_cannot_hold_is_dropped_with_a_warning() -> None:
    study = load_study_text(
        SMALL_STUDY.replace('show_if: "is_missing(fever_days)"', 'show_if: "len(initials) > 2"'),
        "small.yaml",
    )
    exported = export_redcap(study)
    path = "forms.clinical.groups.symptoms_group.items.other.show_if"
    assert any(w.path == path and "len()" in w.message for w in exported.warnings)
    assert import_redcap_text(exported.text).study.item("other").show_if is None


def test_the_example_study_survives_export_and_import_for_what_redcap_holds(tmp_path: Path) -> None:
    original = load_study(EXAMPLE)
    path = tmp_path / "cart.csv"
    warnings = export_redcap_file(original, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM, as REDCap's downloads
    back = import_redcap(path, study_id="CART-TOUR").study
    assert_equivalent_for_redcap(original, back)
    assert back.study.id == "CART-TOUR"
    dropped = {w.path for w in warnings}
    assert {"events", "sites", "arms", "analysis_plan", "labels"} <= dropped
    assert "forms.demographics.groups.main.items.age.soft_range" in dropped
    assert "forms.adverse_event.groups.events" in dropped


def test_a_redcap_dictionary_survives_import_export_import() -> None:
    first = import_redcap(DICTIONARY).study
    second = import_redcap_text(export_redcap(first).text, "again.csv").study
    assert_equivalent_for_redcap(first, second)


def test_names_redcap_cannot_hold_are_lowercased_in_names_and_logic() -> None:
    study = load_study_text(
        SMALL_STUDY.replace("          age:", "          Age:").replace("age < 55", "Age < 55"),
        "small.yaml",
    )
    exported = export_redcap(study)
    assert "[sex] = 'F' and [age] < 55" in exported.text
    path = "forms.demo.groups.main.items.Age"  # the item's path in the study, not items.Age
    assert any(w.path == path and "'age'" in w.message for w in exported.warnings)


def test_export_warnings_name_the_study_files_line_when_given_its_source() -> None:
    text = SMALL_STUDY.replace("          age:", "          Age:").replace("age < 55", "Age < 55")
    source = load_yaml_text(text, "small.yaml")
    exported = export_redcap(study_from_document(source), source)
    lines = text.splitlines()
    where = {w.path: (w.file, w.line) for w in exported.warnings}
    assert all(file == "small.yaml" and line > 0 for file, line in where.values()), where
    for path, line in (
        ("forms.demo.groups.main.items.Age", "          Age:"),
        ("events", "events:"),
        ("forms.clinical.groups.symptoms_group", "      symptoms_group:"),
        ("labels", "  title: {en: Round trip, zh: 往返}"),  # the first text with Chinese
    ):
        assert lines[where[path][1] - 1] == line, path
    assert str(exported.warnings[0]).startswith("small.yaml:")
    # without the source, the warnings are the same, with no place
    plain = export_redcap(load_study_text(text, "small.yaml"))
    assert [(w.path, w.message) for w in plain.warnings] == [
        (w.path, w.message) for w in exported.warnings
    ]
    assert all(w.line == 0 for w in plain.warnings)


def test_a_calc_that_cannot_be_translated_is_left_out_with_everything_that_uses_it() -> None:
    text = dictionary(
        row("age", "demo", "text", "Age", validation="integer"),  # line 3
        row("decade", "demo", "calc", "Decade", choices="rounddown([age] / 10)"),  # 4
        row("decade2", "demo", "calc", "Decade x2", choices="[decade] * 2"),  # 5: uses decade
        row("older", "demo", "yesno", "Older", branching_logic="[decade2] > 4"),  # 6
        row("double", "demo", "calc", "Age x2", choices="[age] * 2"),  # 7: fine
    )
    result = import_redcap_text(text)
    assert list(result.study.derived) == ["double"]
    assert result.study.item("older").show_if is None
    lines = {w.line: w.message for w in result.warnings}
    assert "rounddown() has no equivalent" in lines[4]
    assert "[decade] is not a field" in lines[5]
    assert "[decade2] is not a field" in lines[6]


def test_deeply_nested_branching_logic_warns_instead_of_crashing() -> None:
    from consortia.standards.redcap_import import import_redcap_text

    header = (
        "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"
        '"Choices, Calculations, OR Slider Labels",Field Note,'
        "Text Validation Type OR Show Slider Number,Text Validation Min,Text Validation Max,"
        "Identifier?,Branching Logic (Show field only if...),Required Field?,Custom Alignment,"
        "Question Number (surveys only),Matrix Group Name,Matrix Ranking?,Field Annotation\n"
    )
    logic = "(" * 3000 + "[age] = 1" + ")" * 3000
    text = header + "record_id,demo,,text,ID,,,,,,,,,,,,,\n"
    text += "age,demo,,text,Age,,,integer,,,,,,,,,,\n"
    text += f"note,demo,,text,Note,,,,,,,{logic},,,,,,\n"
    result = import_redcap_text(text, "deep.csv")
    assert "show_if" not in result.study.item("note").model_fields_set
    assert any(w.line == 4 and "nested deeper than 40" in w.message for w in result.warnings)


def test_a_randomisation_scheme_is_named_among_what_a_data_dictionary_cannot_hold() -> None:
    from consortia.domain.templates import load_template

    warnings = export_redcap(load_template("cart-lbcl")).warnings
    assert any(
        w.path == "randomisation" and "not part of a data dictionary" in w.message for w in warnings
    )
