"""The examples in the federation modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "consortia.federation.protocol",
    "consortia.federation.signing",
    "consortia.federation.audit",
    "consortia.federation.apps",
    "consortia.federation.witness",
    "consortia.federation.nodeconfig",
    "consortia.federation.node_yaml",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
