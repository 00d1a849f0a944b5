"""The examples in the identity modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "consortia.auth.principal",
    "consortia.auth.policy",
    "consortia.auth.passwords",
    "consortia.auth.tokens",
    "consortia.auth.sessions",
    "consortia.services.common",
    "consortia.services.users",
    "consortia.storage.migrations",
    "consortia.app",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
