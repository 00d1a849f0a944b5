"""The [node] section's consortium fields: a hub holds no tables, a member's hub is one of
its pinned peers, and a member that polls polls its hub."""

from __future__ import annotations

import pytest

from consortia.config import Settings
from consortia.exceptions import ConfigurationError
from consortia.federation.nodeconfig import node_config_from_settings
from consortia.federation.signing import generate_key, public_key_b64

HUB_PEER = {"name": "hub", "url": "http://hub.test", "public_key": public_key_b64(generate_key())}


def config(**node: object) -> object:
    return node_config_from_settings(Settings(node_name="n", node=node))


def test_a_hub_holds_no_patient_records() -> None:
    with pytest.raises(ConfigurationError, match="a hub holds no patient records"):
        config(role="hub", tables={"t": {"file": "t.csv"}})


def test_a_members_hub_must_be_a_pinned_peer() -> None:
    with pytest.raises(ConfigurationError, match="hub 'hub' is not among the"):
        config(hub="hub")


def test_a_member_that_polls_polls_its_hub() -> None:
    member = config(hub="hub", transport="pull", peers=[HUB_PEER])
    assert member.pull_url() == "http://hub.test"  # type: ignore[attr-defined]
    pushed = config(hub="hub", peers=[HUB_PEER])
    assert pushed.pull_url() is None  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match='transport = "pull" needs a hub'):
        config(transport="pull")


def test_unknown_values_are_refused_with_their_field() -> None:
    with pytest.raises(ConfigurationError, match=r"node\.accept_studies"):
        config(hub="hub", peers=[HUB_PEER], accept_studies="always")
