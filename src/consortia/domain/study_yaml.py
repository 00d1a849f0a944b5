"""A study file read into a checked :class:`~consortia.domain.study.Study`, and written back.

:func:`load_study` validates the YAML into the frozen models of :mod:`consortia.domain.study`,
then runs the checks of :mod:`consortia.domain.study_checks`, and reports *every* problem at
once, each with the file, line, column and dotted path, as a
:class:`~consortia.exceptions.StudyDefinitionError`. :func:`study_to_yaml` writes a study
that loads back to an equal one.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from consortia.domain.study import Study
from consortia.domain.study_checks import semantic_problems
from consortia.domain.yamlsource import (
    PathKey,
    YamlDocument,
    dotted,
    load_yaml_file,
    load_yaml_text,
)
from consortia.exceptions import Problem, StudyDefinitionError

__all__ = ["load_study", "load_study_text", "study_from_document", "study_to_yaml"]

# --- loading ---------------------------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _field_names(loc: tuple[str | int, ...]) -> list[str]:
    """The keys a model accepts at the parent of ``loc`` (for 'unknown key' messages)."""
    annotation: Any = Study
    for part in loc[:-1]:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            origin = get_origin(annotation)
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            if origin not in (dict, tuple, list) or not args:
                return []
            annotation = args[-1]
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to X."""
    for _ in range(8):
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (UnionType, Union):
            options = [a for a in get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation
    return annotation


def _pydantic_problems(exc: PydanticValidationError, doc: YamlDocument) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc: PathKey = tuple(error["loc"])
        bad_key = loc[-1:] == ("[key]",)  # a mapping's key is wrong, not its value
        # pydantic puts tagged-union/function names in loc; keep only real keys
        loc = tuple(part for part in loc if isinstance(part, int) or "[" not in str(part))
        kind = error["type"]
        if kind == "extra_forbidden":
            line, column = doc.key_position(loc)
            allowed = _field_names(loc)
            hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            message = f"unknown key {loc[-1]!r}{hint}"
        elif bad_key:  # reported at the key, such as a status that does not exist
            line, column = doc.key_position(loc)
            message = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {error.get('input')!r})"
        elif kind == "missing":
            line, column = doc.position(loc[:-1])
            parent = loc[-2] if len(loc) > 1 else ""
            if loc[-1] in ("en", "zh"):
                message = f"label {parent!r} needs both 'en' and 'zh' text; '{loc[-1]}' is missing"
            else:
                message = f"required key {loc[-1]!r} is missing"
        else:
            line, column = doc.position(loc)
            given = error.get("input")
            shown = repr(given) if not isinstance(given, dict | list) else type(given).__name__
            message = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {shown})"
        problems.append(Problem(dotted(loc), message, doc.file, line, column))
    return problems


def study_from_document(doc: YamlDocument) -> Study:
    """Validate a loaded document into a :class:`Study`, reporting every problem."""
    if not isinstance(doc.value, dict):
        raise StudyDefinitionError(
            [
                Problem(
                    "",
                    "a study file is a mapping with keys study, events, forms, ...",
                    doc.file,
                    1,
                    1,
                )
            ]
        )
    try:
        study = Study.model_validate(doc.value)
    except PydanticValidationError as exc:
        problems = _pydantic_problems(exc, doc)
        raise StudyDefinitionError(sorted(problems, key=lambda p: (p.line, p.column))) from None
    problems = semantic_problems(study, doc)
    if problems:
        raise StudyDefinitionError(sorted(problems, key=lambda p: (p.line, p.column)))
    return study


def load_study(path: str | Path) -> Study:
    """Load and check a study file; raise :class:`StudyDefinitionError` listing every problem.

    >>> study = load_study("examples/cart-tour.yaml")  # doctest: +SKIP
    >>> study.summary()  # doctest: +SKIP
    'CART-TOUR v1.0: 8 forms, ...'
    """
    return study_from_document(load_yaml_file(path))


def load_study_text(text: str, file: str = "<input>") -> Study:
    """Like :func:`load_study`, from text (used by templates and tests)."""
    return study_from_document(load_yaml_text(text, file))


def study_to_yaml(study: Study) -> str:
    """Write a study as YAML that :func:`load_study_text` reads back to an equal study.

    Defaults are left out so the file stays short; key order follows the definition order.
    """
    import yaml

    data = study.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
