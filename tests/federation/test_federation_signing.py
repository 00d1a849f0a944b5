"""Node keys (PEM, mode 0600), the trust store, and the verifier's rules."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consortia.exceptions import ConfigurationError
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    load_key,
    node_identity,
    public_key_b64,
    save_key,
    sign_message,
)


def test_a_saved_key_is_readable_by_its_owner_only_and_loads_back(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "keys" / "node.pem"
    save_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public_key_b64(load_key(path)) == public_key_b64(key)


def test_saving_over_an_existing_key_is_refused_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.pem"
    save_key(generate_key(), path)
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        save_key(generate_key(), path)
    replacement = generate_key()
    save_key(replacement, path, overwrite=True)
    assert public_key_b64(load_key(path)) == public_key_b64(replacement)


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.pem"
    save_key(generate_key(), path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_key(path)


def test_the_identity_line_names_the_node_its_url_and_raw_public_key() -> None:
    key = generate_key()
    name, url, public = node_identity("sgh", "https://sgh.example", key).split()
    assert (name, url, public) == ("sgh", "https://sgh.example", public_key_b64(key))
    assert len(public) == 44  # base64 of 32 raw bytes


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_the_trust_store_round_trips_through_a_file(tmp_path: Path, suffix: str) -> None:
    store = TrustStore(
        [
            Peer(
                name="lead", url="https://lead.example", public_key=public_key_b64(generate_key())
            ),
            Peer(name="nuh", public_key=public_key_b64(generate_key()), trusted=False),
        ]
    )
    path = tmp_path / f"trust{suffix}"
    store.save(path)
    assert TrustStore.load(path).to_dict() == store.to_dict()


def test_a_peer_with_a_malformed_public_key_is_refused_with_its_place() -> None:
    with pytest.raises(ConfigurationError, match=r"peers\[0\]\.public_key"):
        TrustStore.from_dict({"peers": [{"name": "x", "public_key": "not-a-key"}]})


def test_each_verification_rule_has_its_own_name() -> None:
    key = generate_key()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    verifier = Verifier(
        TrustStore([Peer(name="lead", public_key=public_key_b64(key))]),
        clock_skew_seconds=300,
        clock=lambda: now,
    )

    def rule(message: object) -> str:
        with pytest.raises(MessageRejected) as rejected:
            verifier.verify(message)
        return rejected.value.rule

    good = sign_message({"a": 1}, key, "lead", now=now)
    assert verifier.verify(good) == ("lead", {"a": 1})
    assert rule(good) == "signature.replay"
    assert rule({"body": {"a": 1}}) == "signature.unsigned"
    assert (
        rule(sign_message({"a": 1}, generate_key(), "lead", now=now)) == "signature.bad_signature"
    )
    assert rule(sign_message({"a": 1}, generate_key(), "eve", now=now)) == "signature.untrusted_key"
    tampered = sign_message({"a": 1}, key, "lead", now=now)
    tampered["body"]["a"] = 2
    assert rule(tampered) == "signature.body_hash"
    late = sign_message({"a": 1}, key, "lead", now=now - timedelta(seconds=301))
    assert rule(late) == "signature.clock_skew"
    within = sign_message({"a": 1}, key, "lead", now=now - timedelta(seconds=299))
    assert verifier.verify(within)[0] == "lead"


def test_a_nonce_is_forgotten_only_after_its_message_could_no_longer_be_accepted() -> None:
    key = generate_key()
    moment = [datetime(2025, 1, 1, tzinfo=UTC)]
    verifier = Verifier(
        TrustStore([Peer(name="lead", public_key=public_key_b64(key))]),
        clock_skew_seconds=300,
        clock=lambda: moment[0],
    )
    message = sign_message({"a": 1}, key, "lead", now=moment[0])
    verifier.verify(message)
    moment[0] += timedelta(seconds=299)
    with pytest.raises(MessageRejected, match="replay"):
        verifier.verify(message)
    moment[0] += timedelta(seconds=10)
    with pytest.raises(MessageRejected, match="clock_skew"):
        verifier.verify(message)
