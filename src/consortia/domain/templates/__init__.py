"""Study templates shipped with Consortia: complete, realistic protocols to start from.

Each template is a study YAML file in this package (``<name>.yaml``), checked like any other
study file. They are what ``consortia demo`` and the synthetic-data generators
(:mod:`consortia.domain.synthetic`) build on:

==================  ===========================================================================
``cart-lbcl``       randomised CAR-T vs standard of care; daily CRS/ICANS raw inputs with ASTCT
                    grades derived; CTCAE adverse events; Lugano response; PFS and OS
``ortho-3dp``       3D-printed tumour prostheses: printing details, MSTS, Henderson failure
                    types, revision-free implant survival
``glucose-iso15197``  paired meter and reference glucose readings for ISO 15197:2013 accuracy
``ai-diagnostic``   an AI score and a reader's call against a reference standard (STARD)
==================  ===========================================================================

>>> [info.name for info in list_templates()]
['cart-lbcl', 'ortho-3dp', 'glucose-iso15197', 'ai-diagnostic']
>>> load_template("ai-diagnostic").study.id
'AI-NODULE-DX'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from consortia.domain.study import Study
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import Problem, StudyDefinitionError

__all__ = ["TEMPLATE_NAMES", "TemplateInfo", "list_templates", "load_template", "template_text"]

TEMPLATE_NAMES: Final = ("cart-lbcl", "ortho-3dp", "glucose-iso15197", "ai-diagnostic")


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a template is, for a chooser: its name, titles and a one-paragraph description."""

    name: str
    title_en: str
    title_zh: str
    description: str


def _check_name(name: str) -> None:
    if name not in TEMPLATE_NAMES:
        raise StudyDefinitionError(
            [
                Problem(
                    "template",
                    f"{name!r} is not a study template; known templates: "
                    f"{', '.join(TEMPLATE_NAMES)}",
                )
            ]
        )


def template_text(name: str) -> str:
    """The YAML text of template ``name``, as shipped (comments included).

    >>> template_text("glucose-iso15197").startswith("# Template:")
    True
    """
    _check_name(name)
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


@cache
def load_template(name: str) -> Study:
    """Template ``name`` as a checked :class:`~consortia.domain.study.Study` (cached: studies
    are immutable). An unknown name raises :class:`StudyDefinitionError` listing the known ones.

    >>> load_template("cart-lbcl").arms["car_t"].label.en
    'CAR-T cell therapy'
    """
    return load_study_text(template_text(name), f"{name}.yaml")


def list_templates() -> list[TemplateInfo]:
    """Every shipped template, in the order of :data:`TEMPLATE_NAMES`.

    The description is the first paragraph of the study's English description.

    >>> list_templates()[0].title_en[:26]
    'Anti-CD19 CAR-T cells vers'
    """
    infos = []
    for name in TEMPLATE_NAMES:
        study = load_template(name)
        description = study.study.description.en if study.study.description else ""
        infos.append(
            TemplateInfo(
                name=name,
                title_en=study.study.title.en,
                title_zh=study.study.title.zh,
                description=description.split("\n\n")[0].strip(),
            )
        )
    return infos
