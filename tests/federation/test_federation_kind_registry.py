"""The registry of analysis kinds: built-in kinds load when first named, unknown names are
refused with the list of known ones."""

from __future__ import annotations

import pytest

from consortia.federation.kinds import BUILT_IN, KINDS, InvalidRequest, get_kind, kind_names


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_each_built_in_kind_loads_under_its_own_name(name: str) -> None:
    kind = get_kind(name)
    assert kind.name == name
    assert KINDS[name] is kind
    assert get_kind(name) is kind  # loaded once


def test_an_unknown_kind_is_refused_naming_every_known_one() -> None:
    with pytest.raises(InvalidRequest) as refused:
        get_kind("anova")
    assert str(refused.value) == f"kind: 'anova' is not an analysis kind; use one of {kind_names()}"
    assert set(BUILT_IN) <= set(kind_names())
