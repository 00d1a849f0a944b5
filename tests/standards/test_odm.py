"""CDISC ODM 1.3.2: export validates against the official XSD, import reads ours exactly and
OpenClinica / REDCap files as well as ODM allows, and hostile or broken files are refused with
every problem and its line."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from consortia.domain.study import Range, Study
from consortia.domain.study_yaml import load_study, load_study_text
from consortia.exceptions import InterchangeError
from consortia.standards import odm
from consortia.standards.odm import (
    SCHEMA,
    SCHEMA_DIR,
    export_odm,
    export_odm_file,
    import_odm,
    import_odm_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "odm"
NS = {"odm": odm.ODM_NS}
WHEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)

# Every feature the study language has and ODM can carry, with awkward cases on purpose:
# upper-case names, a check without an item, a check on an item of another form, a check
# naming a derived variable, an unused code list, integer-looking and text codes.
SMALL = """\
study:
  id: ODM-T.1
  title: {en: ODM test study, zh: ODM测试研究}
  phase: "1/2"
  sponsor: Test Sponsor
  partners: [Hospital A, "Hospital B; Unit 2"]
  version: "2.1"
  description: {en: A study to test ODM, zh: 用于测试ODM的研究}
sites:
  SG01: {name: Hospital A, country: SG, node: sg}
arms:
  a: {label: {en: A, zh: 甲}}
code_lists:
  sex:
    - {code: F, label: {en: Female, zh: 女}}
    - {code: M, label: {en: Male, zh: 男}}
  yn:
    - {code: "1", label: {en: "Yes", zh: 是}}
    - {code: "0", label: {en: "No", zh: 否}}
  unused:
    - {code: x, label: {en: X, zh: 叉}}
  symptoms:
    - {code: "1", label: {en: Fever, zh: 发热}}
    - {code: "2", label: {en: Cough, zh: 咳嗽}}
events:
  screening:
    label: {en: Screening, zh: 筛选}
    day: -14
    window: {before: 2, after: 7}
    forms: [demo, labs]
  visit:
    label: {en: Visit, zh: 访视}
    day: 30
    repeating: true
    forms: [labs]
  extra:
    label: {en: Extra, zh: 额外}
    unscheduled: true
    repeating: true
    forms: [ae]
forms:
  demo:
    label: {en: Demographics, zh: 人口学}
    groups:
      main:
        label: {en: Main, zh: 主要}
        items:
          ECOG:
            type: integer
            label: {en: ECOG, zh: ECOG评分}
            range: {min: 0, max: 5}
            soft_range: {min: 0, max: 2}
            required: true
          sex:
            type: choice
            code_list: sex
            label: {en: Sex, zh: 性别}
          smoker:
            type: choice
            code_list: yn
            label: {en: Smoker, zh: 吸烟}
          initials:
            type: text
            label: {en: Initials, zh: 姓名缩写}
            identifier: true
            max_length: 3
            help: {en: First letters, zh: 首字母}
          pregnant:
            type: boolean
            label: {en: Pregnant, zh: 妊娠}
            show_if: sex == 'F' and ECOG < 3
          symptoms:
            type: multichoice
            code_list: symptoms
            label: {en: Symptoms, zh: 症状}
          scan:
            type: file
            label: {en: Scan, zh: 扫描件}
          visit_time:
            type: time
            label: {en: Time, zh: 时间}
          seen_at:
            type: datetime
            label: {en: Seen at, zh: 就诊时间}
    checks:
      - name: no_item
        expression: ECOG <= 4 or sex == 'M'
        severity: warning
        message: {en: Check ECOG, zh: 请核对ECOG}
      - name: fever_check
        expression: "not symptoms['1'] or ECOG >= 0"
        severity: error
        message: {en: Fever, zh: 发热}
        item: symptoms
  labs:
    label: {en: Labs, zh: 实验室}
    groups:
      values:
        repeating: true
        items:
          hb:
            type: decimal
            precision: 1
            unit: g/dL
            label: {en: Haemoglobin, zh: 血红蛋白}
            range: {min: 2.5, max: 25}
            soft_range: {min: 8.25, max: 18}
          lab_date:
            type: date
            label: {en: Date, zh: 日期}
            required: true
    checks:
      - name: other_form
        expression: hb > 3 or ECOG > 1
        severity: error
        message: {en: Odd, zh: 异常}
        item: ECOG
      - name: on_derived
        expression: anaemia == 0 or hb < 13
        severity: warning
        message: {en: Derived, zh: 衍生}
        item: anaemia
  ae:
    label: {en: Adverse event, zh: 不良事件}
    groups:
      events:
        repeating: true
        items:
          term:
            type: text
            label: {en: Term, zh: 术语}
derived:
  anaemia:
    type: integer
    label: {en: Anaemia, zh: 贫血}
    expression: "1 if hb < 10 else 0"
  hb_mmol:
    type: decimal
    unit: mmol/L
    label: {en: Hb in mmol/L, zh: 血红蛋白（mmol/L）}
    expression: hb * 0.6206
analysis_plan:
  hb:
    kind: describe
    table: labs
"""


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA), parser))


@pytest.fixture(scope="module")
def small() -> Study:
    return load_study_text(SMALL)


@pytest.fixture(scope="module")
def cart() -> Study:
    return load_study(ROOT / "examples" / "cart-tour.yaml")


def _valid(schema: etree.XMLSchema, xml: bytes) -> None:
    document = etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False))
    assert schema.validate(document), "\n".join(str(e) for e in schema.error_log)


def _without_unportable(study: Study) -> Study:
    """What ODM 1.3.2 metadata carries: everything but sites, arms, the analysis plan and
    the status gates."""
    return study.model_copy(update={"sites": {}, "arms": {}, "analysis_plan": {}, "statuses": {}})


def _problems(xml: str | bytes) -> list[str]:
    data = xml.encode() if isinstance(xml, str) else xml
    with pytest.raises(InterchangeError) as caught:
        import_odm_bytes(data, "in.xml")
    return [str(problem) for problem in caught.value.problems]


def _odm(metadata: str, *, before: str = "", after: str = "") -> str:
    """A minimal foreign ODM file around ``metadata`` (one MetaDataVersion's content)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileOID="F1" FileType="Snapshot"
     CreationDateTime="2024-01-01T00:00:00" ODMVersion="1.3.2">
  <Study OID="S1">
    <GlobalVariables>
      <StudyName>Study</StudyName><StudyDescription/><ProtocolName>P1</ProtocolName>
    </GlobalVariables>
    {before}
    <MetaDataVersion OID="MDV1" Name="v1">
{metadata}
    </MetaDataVersion>
  </Study>
  {after}
</ODM>
"""


ONE_ITEM = """\
      <Protocol><StudyEventRef StudyEventOID="SE1" OrderNumber="1" Mandatory="Yes"/></Protocol>
      <StudyEventDef OID="SE1" Name="Visit" Repeating="No" Type="Scheduled">
        <FormRef FormOID="F1" Mandatory="Yes"/>
      </StudyEventDef>
      <FormDef OID="F1" Name="Form" Repeating="No">
        <ItemGroupRef ItemGroupOID="IG1" Mandatory="Yes"/>
      </FormDef>
      <ItemGroupDef OID="IG1" Name="Group" Repeating="No">
        <ItemRef ItemOID="I1" Mandatory="Yes"/>
      </ItemGroupDef>
      <ItemDef OID="I1" Name="AGE" DataType="integer">
        <Question><TranslatedText xml:lang="en">Age</TranslatedText>
                  <TranslatedText xml:lang="zh">年龄</TranslatedText></Question>
      </ItemDef>
"""


# --- the vendored schema ---------------------------------------------------------------------


def test_the_official_schema_is_vendored_with_its_origin_and_resolves_offline() -> None:
    names = {path.name for path in SCHEMA_DIR.iterdir()}
    assert {
        "ODM1-3-2.xsd",
        "ODM1-3-2-foundation.xsd",
        "xml.xsd",
        "xmldsig-core-schema.xsd",
        "README.txt",
    } <= names
    readme = (SCHEMA_DIR / "README.txt").read_text(encoding="utf-8")
    assert "CDISC" in readme
    assert "odmlib" in readme
    assert "W3C" in readme
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    for path in SCHEMA_DIR.glob("*.xsd"):
        tree = etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False))
        locations = tree.xpath(
            "//xs:import/@schemaLocation | //xs:include/@schemaLocation", namespaces=xs
        )
        assert all((SCHEMA_DIR / location).is_file() for location in locations), path.name


def test_src_parses_xml_without_lxml() -> None:
    for path in (ROOT / "src" / "consortia" / "standards").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert not any(name.startswith("lxml") for name in imported), path.name


# --- export ----------------------------------------------------------------------------------


def test_exporting_a_small_study_gives_odm_valid_against_the_official_xsd(
    schema: etree.XMLSchema, small: Study
) -> None:
    _valid(schema, export_odm(small, creation_datetime=WHEN))


def test_exporting_the_cart_example_gives_odm_valid_against_the_official_xsd(
    schema: etree.XMLSchema, cart: Study
) -> None:
    _valid(schema, export_odm(cart))


def test_export_writes_the_snapshot_header_and_global_variables(small: Study) -> None:
    root = etree.fromstring(export_odm(small, creation_datetime=WHEN))
    assert root.get("FileType") == "Snapshot"
    assert root.get("ODMVersion") == "1.3.2"
    assert root.get("CreationDateTime") == "2024-05-01T09:30:00+00:00"
    assert root.get("FileOID")
    assert root.xpath("odm:Study/@OID", namespaces=NS) == ["S.ODM-T.1"]
    assert root.xpath("string(//odm:StudyName)", namespaces=NS) == "ODM test study"
    assert root.xpath("string(//odm:StudyDescription)", namespaces=NS) == "A study to test ODM"
    assert root.xpath("string(//odm:ProtocolName)", namespaces=NS) == "ODM-T.1"
    assert root.xpath("//odm:MetaDataVersion/@OID", namespaces=NS) == ["MDV.2.1"]


def test_export_maps_types_ranges_and_references(small: Study) -> None:
    root = etree.fromstring(export_odm(small, creation_datetime=WHEN))

    def item(name: str) -> etree._Element:
        found: list[etree._Element] = root.xpath(f"//odm:ItemDef[@OID='I.{name}']", namespaces=NS)
        assert len(found) == 1
        return found[0]

    assert item("hb").get("DataType") == "float"
    assert item("hb").get("SignificantDigits") == "1"
    assert item("smoker").get("DataType") == "integer"  # its codes are all integers
    assert item("sex").get("DataType") == "text"
    assert item("symptoms").get("DataType") == "text"
    assert item("scan").get("DataType") == "URI"
    assert item("initials").get("Length") == "3"
    aliases = {
        (a.get("Context"), a.get("Name")) for a in item("symptoms").iter(f"{{{odm.ODM_NS}}}Alias")
    }
    assert ("consortia:type", "multichoice") in aliases
    assert item("symptoms").xpath("odm:CodeListRef/@CodeListOID", namespaces=NS) == ["CL.symptoms"]
    assert item("initials").xpath(
        "odm:Alias[@Context='consortia:identifier']/@Name", namespaces=NS
    ) == ["Yes"]
    checks = [
        (c.get("Comparator"), c.get("SoftHard"), c.findtext("odm:CheckValue", namespaces=NS))
        for c in item("hb").xpath("odm:RangeCheck[@Comparator]", namespaces=NS)
    ]
    assert checks == [
        ("GE", "Hard", "2.5"),
        ("LE", "Hard", "25"),
        ("GE", "Soft", "8.25"),
        ("LE", "Soft", "18"),
    ]
    assert item("ECOG").xpath("odm:Question/odm:TranslatedText/@xml:lang", namespaces=NS) == [
        "en",
        "zh",
    ]
    ref = root.xpath("//odm:ItemRef[@ItemOID='I.pregnant']", namespaces=NS)[0]
    assert ref.get("Mandatory") == "No"
    condition = root.xpath(
        f"//odm:ConditionDef[@OID='{ref.get('CollectionExceptionConditionOID')}']"
        "/odm:FormalExpression",
        namespaces=NS,
    )[0]
    assert condition.get("Context") == "consortia"
    assert condition.text == "not (sex == 'F' and ECOG < 3)"
    method = root.xpath("//odm:ItemRef[@ItemOID='I.anaemia']/@MethodOID", namespaces=NS)[0]
    assert root.xpath(f"//odm:MethodDef[@OID='{method}']/@Type", namespaces=NS) == ["Computation"]
    events = root.xpath("//odm:StudyEventDef", namespaces=NS)
    assert [(e.get("Repeating"), e.get("Type")) for e in events] == [
        ("No", "Scheduled"),
        ("Yes", "Scheduled"),
        ("Yes", "Unscheduled"),
    ]
    symbol = root.xpath(
        "//odm:MeasurementUnit[@Name='g/dL']/odm:Symbol/odm:TranslatedText", namespaces=NS
    )
    assert [s.text for s in symbol] == ["g/dL"]


def test_export_odm_file_writes_the_same_bytes(tmp_path: Path, small: Study) -> None:
    target = tmp_path / "study.xml"
    export_odm_file(small, target, creation_datetime=WHEN)
    assert target.read_bytes() == export_odm(small, creation_datetime=WHEN)


# --- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "cart"])
def test_importing_our_export_gives_back_the_study_field_by_field(
    which: str, request: pytest.FixtureRequest
) -> None:
    study: Study = request.getfixturevalue(which)
    result = import_odm_bytes(export_odm(study, creation_datetime=WHEN), "ours.xml")
    expected = _without_unportable(study)
    assert result.warnings == ()
    for field in Study.model_fields:
        assert getattr(result.study, field) == getattr(expected, field), field
    assert list(result.study.forms) == list(expected.forms)
    for name, form in expected.forms.items():
        assert list(result.study.forms[name].groups) == list(form.groups)
        assert [c.name for c in result.study.forms[name].checks] == [c.name for c in form.checks]
    assert result.study == expected


def test_import_odm_reads_a_file(tmp_path: Path, small: Study) -> None:
    path = tmp_path / "study.xml"
    export_odm_file(small, path)
    assert import_odm(path).study == _without_unportable(small)


# --- other systems ---------------------------------------------------------------------------


def test_an_openclinica_export_is_imported_with_its_extensions() -> None:
    result = import_odm(DATA / "openclinica.xml")
    study = result.study
    assert study.study.id == "HF-REG-01"
    assert study.study.phase.value == "4"
    assert study.study.sponsor == "Cardiology Research Network"
    assert list(study.events) == ["screening", "followup", "adverseevent"]
    assert study.events["followup"].repeating
    assert study.events["adverseevent"].unscheduled
    assert study.events["screening"].forms == ("demographics_v10", "vitals_v10")
    demo = study.forms["demographics_v10"].groups["demog_ungrouped"].items
    assert list(demo) == ["initials", "dob", "age", "sex", "pregnant", "risks"]
    assert demo["initials"].identifier
    assert demo["dob"].identifier
    assert not demo["age"].identifier
    assert demo["age"].unit == "years"
    assert demo["age"].range == Range(min=18, max=120)  # LT 121 on an integer is LE 120
    assert demo["sex"].type.value == "choice"
    assert demo["sex"].code_list == "sex"
    assert demo["pregnant"].show_if == "sex == '2'"
    assert demo["risks"].type.value == "multichoice"
    assert [e.code for e in study.code_lists[demo["risks"].code_list or ""]] == ["1", "2", "3"]
    assert demo["dob"].help is not None
    assert demo["dob"].help.en.startswith("Date of birth")
    vitals = study.forms["vitals_v10"].groups["vital_ungrouped"].items
    weight = vitals["weight"]
    assert weight.type.value == "decimal"
    assert weight.precision == 1
    assert weight.unit == "kg"
    assert weight.range == Range(min=20, max=300)
    assert weight.soft_range == Range(min=35, max=200)
    assert vitals["sbp"].range is None
    assert vitals["sbp"].soft_range is not None
    assert study.code_lists["nyha"][0].label.zh == "I级"
    assert study.forms["ae_v10"].groups["ae_events"].repeating
    assert study.forms["ae_v10"].groups["ae_events"].items["aereport"].type.value == "file"
    messages = [w.message for w in result.warnings]
    assert len([m for m in messages if "Chinese" in m]) == 1  # warned once
    assert all(w.line > 0 for w in result.warnings)


def test_a_redcap_export_is_imported_with_checkboxes_and_branching_logic() -> None:
    result = import_odm(DATA / "redcap.xml")
    study = result.study
    assert list(study.events) == ["baseline_arm_1", "month_6_arm_1"]
    assert study.events["month_6_arm_1"].day == 180
    assert study.events["month_6_arm_1"].window.before == 14
    assert list(study.forms) == ["demographics", "labs"]
    groups = study.forms["demographics"].groups
    assert list(groups) == ["demographics_and_consent"]  # the Form Status group is left out
    items = groups["demographics_and_consent"].items
    assert "demographics_complete" not in items
    assert items["comorbid"].type.value == "multichoice"
    assert [(e.code, e.label.en) for e in study.code_lists["comorbid"]] == [
        ("1", "Hypertension"),
        ("2", "Chronic kidney disease"),
        ("3", "Other"),
    ]
    assert not any(name.startswith("comorbid___") for name in items)
    assert items["comorbid_other"].show_if == "comorbid['3']"
    assert items["pregnant"].type.value == "boolean"
    assert items["pregnant"].show_if == "sex == '0'"
    assert items["menopause"].show_if == ("sex == '0' and abs(years_between(dob, today())) >= 45")
    assert items["name_last"].identifier
    assert items["dob"].identifier
    assert items["consent_form"].type.value == "file"
    assert items["weight"].soft_range is not None
    assert items["weight"].range is None
    assert items["sex"].required
    assert not items["record_id"].required
    labs = study.forms["labs"].groups["lab_date"].items
    assert labs["glucose"].show_if == "fasting == '1'"
    assert set(study.code_lists) == {"sex", "fasting", "comorbid"}
    assert labs["egfr"].show_if is None
    lines = (DATA / "redcap.xml").read_text(encoding="utf-8").splitlines()

    def warned_at(words: str) -> str:
        (warning,) = [w for w in result.warnings if words in w.message]
        return lines[warning.line - 1]

    assert 'OID="egfr"' in warned_at("branching logic")
    assert 'OID="bmi"' in warned_at("calculated field")
    assert "<Study" in warned_at("trial phase")
    assert "<Study" in warned_at("sponsor")


def test_foreign_names_become_valid_unique_lowercase_study_names() -> None:
    long_name = "X" * 80
    metadata = (
        ONE_ITEM.replace(
            '<ItemRef ItemOID="I1" Mandatory="Yes"/>',
            '<ItemRef ItemOID="I1" Mandatory="Yes"/><ItemRef ItemOID="I2" Mandatory="No"/>'
            '<ItemRef ItemOID="I3" Mandatory="No"/><ItemRef ItemOID="I4" Mandatory="No"/>',
        )
        + f"""
      <ItemDef OID="I2" Name="Age" DataType="integer"/>
      <ItemDef OID="I3" Name="1st visit date" DataType="date"/>
      <ItemDef OID="I4" Name="{long_name}" DataType="text"/>
"""
    )
    result = import_odm_bytes(_odm(metadata).encode())
    names = list(result.study.forms["f1"].groups["ig1"].items)
    assert names == ["age", "age_2", "item_1st_visit_date", "x" * 64]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name) for name in names)


def test_missing_chinese_text_is_copied_from_english_and_warned_once() -> None:
    metadata = ONE_ITEM.replace('<TranslatedText xml:lang="zh">年龄</TranslatedText>', "")
    result = import_odm_bytes(_odm(metadata).encode(), "in.xml")
    item = result.study.forms["f1"].groups["ig1"].items["age"]
    assert item.label.zh == item.label.en == "Age"
    chinese = [w for w in result.warnings if "Chinese" in w.message]
    assert len(chinese) == 1
    assert chinese[0].line > 0


def test_a_foreign_condition_in_the_expression_language_becomes_show_if() -> None:
    metadata = (
        ONE_ITEM.replace(
            '<ItemRef ItemOID="I1" Mandatory="Yes"/>',
            '<ItemRef ItemOID="I1" Mandatory="Yes"/>'
            '<ItemRef ItemOID="I2" Mandatory="No" CollectionExceptionConditionOID="C1"/>'
            '<ItemRef ItemOID="I3" Mandatory="No" CollectionExceptionConditionOID="C2"/>',
        )
        + """
      <ItemDef OID="I2" Name="WEIGHT" DataType="float"/>
      <ItemDef OID="I3" Name="HEIGHT" DataType="float"/>
      <ConditionDef OID="C1" Name="young">
        <Description><TranslatedText>Under 18</TranslatedText></Description>
        <FormalExpression Context="Python">age &lt; 18</FormalExpression>
      </ConditionDef>
      <ConditionDef OID="C2" Name="xpath">
        <Description><TranslatedText>XPath</TranslatedText></Description>
        <FormalExpression Context="XPath">//ItemData[@ItemOID='I1']/@Value &lt; 18</FormalExpression>
      </ConditionDef>
"""
    )
    result = import_odm_bytes(_odm(metadata).encode(), "in.xml")
    items = result.study.forms["f1"].groups["ig1"].items
    assert items["weight"].show_if == "not (age < 18)"
    assert items["height"].show_if is None
    assert any("not a study expression" in w.message and w.line > 0 for w in result.warnings)


def test_unsupported_odm_constructs_are_warnings_with_their_lines() -> None:
    metadata = (
        '      <Include StudyOID="S0" MetaDataVersionOID="M0"/>\n'
        + ONE_ITEM.replace(
            '<ItemGroupRef ItemGroupOID="IG1" Mandatory="Yes"/>',
            '<ItemGroupRef ItemGroupOID="IG1" Mandatory="Yes"/>\n'
            '        <ArchiveLayout OID="AL1" PdfFileName="form.pdf"/>',
        )
        + """
      <ImputationMethod OID="IM1">LOCF</ImputationMethod>
      <Presentation OID="P1">stylesheet</Presentation>
"""
    )
    xml = _odm(
        metadata,
        after='<ClinicalData StudyOID="S1" MetaDataVersionOID="MDV1"/>',
    ).replace(
        "</MetaDataVersion>", '</MetaDataVersion>\n    <MetaDataVersion OID="MDV2" Name="v2"/>', 1
    )
    result = import_odm_bytes(xml.encode(), "in.xml")
    lines = xml.splitlines()
    found = {w.message.split(" ")[0]: w.line for w in result.warnings}
    for element in ("Include", "ArchiveLayout", "ImputationMethod", "Presentation", "ClinicalData"):
        line = found[element]
        assert f"<{element}" in lines[line - 1], element
    assert any("only the first MetaDataVersion" in w.message for w in result.warnings)


def test_unknown_vendor_extensions_are_ignored_silently() -> None:
    metadata = (
        ONE_ITEM.replace(
            "</ItemDef>", '<acme:Widget xmlns:acme="urn:acme" Colour="red"/></ItemDef>'
        )
        + '      <acme:Thing xmlns:acme="urn:acme"/>\n'
    )
    result = import_odm_bytes(_odm(metadata).encode())
    messages = [w.message for w in result.warnings]
    assert len(messages) == 3  # only the phase, the sponsor and the missing Chinese labels
    assert not any(word in m for m in messages for word in ("acme", "Widget", "Thing"))


# --- broken and hostile input ----------------------------------------------------------------


def test_xml_that_is_not_well_formed_is_refused_with_line_and_column() -> None:
    problems = _problems(
        '<?xml version="1.0"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">\n'
        '  <Study OID="S1"></Studdy>\n</ODM>'
    )
    assert problems == ["in.xml:3:21: not well-formed XML: mismatched tag"]


def test_a_file_in_another_namespace_is_refused_naming_the_expected_one() -> None:
    problems = _problems('<ODM xmlns="http://www.cdisc.org/ns/odm/v1.2"><Study OID="S"/></ODM>')
    assert len(problems) == 1
    assert "http://www.cdisc.org/ns/odm/v1.2" in problems[0]
    assert "http://www.cdisc.org/ns/odm/v1.3" in problems[0]
    assert problems[0].startswith("in.xml:1:1:")


def test_dangling_references_and_missing_attributes_are_all_reported_with_their_lines() -> None:
    metadata = """\
      <Protocol><StudyEventRef StudyEventOID="SE1" OrderNumber="1" Mandatory="Yes"/></Protocol>
      <StudyEventDef OID="SE1" Name="Visit" Repeating="No" Type="Scheduled">
        <FormRef FormOID="F404" Mandatory="Yes"/>
      </StudyEventDef>
      <FormDef OID="F1" Name="Form" Repeating="No">
        <ItemGroupRef ItemGroupOID="IG1" Mandatory="Yes"/>
      </FormDef>
      <ItemGroupDef OID="IG1" Name="Group" Repeating="No">
        <ItemRef ItemOID="I404" Mandatory="Yes"/>
        <ItemRef ItemOID="I1" Mandatory="Yes"/>
      </ItemGroupDef>
      <ItemDef OID="I1" Name="a" DataType="text">
        <CodeListRef CodeListOID="CL404"/>
      </ItemDef>
      <ItemDef Name="no_oid" DataType="text"/>
      <ItemDef OID="I3" DataType="text"/>
      <ItemDef OID="I4" Name="no_type"/>
      <CodeList OID="CL1" Name="codes"/>
"""
    xml = _odm(metadata)
    problems = _problems(xml)
    lines = xml.splitlines()

    def line_of(snippet: str) -> int:
        return next(index for index, line in enumerate(lines, start=1) if snippet in line)

    expected = {
        line_of('FormOID="F404"'): "FormDef 'F404', which is not defined",
        line_of('ItemOID="I404"'): "ItemDef 'I404', which is not defined",
        line_of('CodeListOID="CL404"'): "CodeList 'CL404', which is not defined",
        line_of('Name="no_oid"'): "ItemDef needs a OID attribute",
        line_of('OID="I3"'): "ItemDef needs a Name attribute",
        line_of('Name="no_type"'): "ItemDef needs a DataType attribute",
        line_of('Name="codes"'): "CodeList needs a DataType attribute",
    }
    assert len(problems) == len(expected)
    for line, message in expected.items():
        assert any(p.startswith(f"in.xml:{line}:") and message in p for p in problems), message


def test_an_unknown_data_type_is_an_error_listing_the_right_ones() -> None:
    problems = _problems(_odm(ONE_ITEM.replace('DataType="integer"', 'DataType="number"')))
    assert len(problems) == 1
    assert "DataType 'number' is not an ODM 1.3.2 data type" in problems[0]
    assert "integer" in problems[0]
    assert "float" in problems[0]


def test_an_import_that_would_break_the_study_rules_is_refused_whole() -> None:
    metadata = (
        ONE_ITEM.replace(
            '<ItemRef ItemOID="I1" Mandatory="Yes"/>',
            '<ItemRef ItemOID="I1" Mandatory="Yes" CollectionExceptionConditionOID="C1"/>',
        )
        + """
      <ConditionDef OID="C1" Name="bad">
        <Description><TranslatedText>bad</TranslatedText></Description>
        <FormalExpression Context="consortia">not (age['1'])</FormalExpression>
      </ConditionDef>
"""
    )
    problems = _problems(_odm(metadata))
    assert any("the imported study is not valid" in p and "multichoice" in p for p in problems)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study OID="&lol9;"/></ODM>
"""


def test_a_billion_laughs_file_is_refused_without_expanding_entities() -> None:
    problems = _problems(BILLION_LAUGHS)
    assert len(problems) == 1
    assert "DOCTYPE" in problems[0]
    assert problems[0].startswith("in.xml:2:")
    assert "lol" not in problems[0]


def test_an_external_entity_file_is_refused_without_reading_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    xxe = (
        f'<?xml version="1.0"?>\n<!DOCTYPE odm [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study OID="&xxe;"/></ODM>\n'
    )
    path = tmp_path / "xxe.xml"
    path.write_text(xxe, encoding="utf-8")
    with pytest.raises(InterchangeError) as caught:
        import_odm(path)
    text = str(caught.value)
    assert "TOP-SECRET-CONTENT" not in text
    assert "DOCTYPE" in text


def test_files_over_the_size_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    with big.open("wb") as handle:  # sparse: nothing is really written or read
        handle.truncate(odm.MAX_BYTES + 1)
    with pytest.raises(InterchangeError, match="refused"):
        import_odm(big)
    with pytest.raises(InterchangeError, match="refused"):
        import_odm_bytes(b"<" * (odm.MAX_BYTES + 1))


def test_a_missing_file_is_an_interchange_error(tmp_path: Path) -> None:
    with pytest.raises(InterchangeError, match="cannot read"):
        import_odm(tmp_path / "absent.xml")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"<Study/>",
        b'<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"/>',
        b'<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study OID="S"/></ODM>',
        b'<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study><MetaDataVersion/></Study></ODM>',
    ],
)
def test_broken_input_is_an_interchange_error_never_a_traceback(data: bytes) -> None:
    with pytest.raises(InterchangeError) as caught:
        import_odm_bytes(data)
    assert caught.value.problems


def test_deeply_nested_expressions_and_elements_are_warnings_or_errors_never_tracebacks() -> None:
    deep = "(" * 3000 + "age" + ")" * 3000
    metadata = ONE_ITEM.replace(
        '<ItemRef ItemOID="I1" Mandatory="Yes"/>',
        '<ItemRef ItemOID="I1" Mandatory="Yes" CollectionExceptionConditionOID="C1"/>',
    ).replace(
        'DataType="integer"',
        'DataType="integer" xmlns:redcap="https://projectredcap.org" '
        f'redcap:BranchingLogic="{"(" * 3000}[AGE] = 1{")" * 3000}"',
    ) + (
        '<ConditionDef OID="C1" Name="c"><Description><TranslatedText>c</TranslatedText>'
        f"</Description><FormalExpression>{deep}</FormalExpression></ConditionDef>"
    )
    xml = _odm(metadata).replace(
        "</Protocol>",
        f'<Alias Context="consortia:partners" Name="{"[" * 50_000}{"]" * 50_000}"/></Protocol>',
    )
    result = import_odm_bytes(xml.encode())
    assert result.study.forms["f1"].groups["ig1"].items["age"].show_if is None
    assert any("not a study expression" in w.message for w in result.warnings)
    assert all(len(w.message) < 300 for w in result.warnings)
    elements = f"<ODM xmlns='{odm.ODM_NS}'>{'<a>' * 100_000}{'</a>' * 100_000}</ODM>"
    with pytest.raises(InterchangeError):
        import_odm_bytes(elements.encode())


def test_every_truncation_of_a_real_file_is_an_interchange_error() -> None:
    data = (DATA / "openclinica.xml").read_bytes()
    for cut in range(50, len(data) - 20, len(data) // 40):
        with pytest.raises(InterchangeError):
            import_odm_bytes(data[:cut])
