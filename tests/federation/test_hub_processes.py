"""A consortium of real processes on loopback, built and run from the command line only:
a hub and two hospitals that join it by invitation, one reached by push and one that polls
(``transport = "pull"``: ``consortia serve`` connects out to its hub); the hub publishes a
study, each node takes it its own way, and ``consortia analyze --study --plan`` at the hub
runs across both transports, its result equal to the same analysis over the same files in
one process (1e-8 relative), kept at the hub and shown over its API. A removed member's
key is then refused and it takes no part in the next analysis.

Every server is polled for readiness (never a fixed sleep) and reaped however the test ends.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.federation.local import analyze_local
from processes import READ_SECONDS, started, wait_for_http, wait_until

pytestmark = pytest.mark.slow
RTOL = 1e-8
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def consortia(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "consortia", *args],
        capture_output=True,
        text=True,
        timeout=READ_SECONDS * 2,
    )
    if check:
        assert done.returncode == 0, f"consortia {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def init(folder: Path, name: str, port: int, *extra: str) -> str:
    (folder.parent / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    done = consortia(
        "init",
        str(folder),
        "--node-name",
        name,
        "--node-url",
        f"http://127.0.0.1:{port}",
        "--admin-email",
        f"admin@{name}.example",
        "--admin-name",
        f"Administrator of {name}",
        "--admin-password-file",
        str(folder.parent / "password"),
        "--environment",
        "development",
        *extra,
    )
    return done.stdout + done.stderr


@contextlib.contextmanager
def serving(folder: Path, port: int) -> Iterator[subprocess.Popen[Any]]:
    log = (folder / "serve.log").open("wb")
    try:
        with started(
            [
                sys.executable,
                "-m",
                "consortia",
                "serve",
                "--config",
                str(folder / "consortia.toml"),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as process:
            wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", process=process)
            yield process
    finally:
        log.close()


def share_trial_file(folder: Path, site: str, seed: int) -> Path:
    """The hospital's analysis file, declared as table cart_efficacy in its [node]."""
    path = synthesize("cart-lbcl", subjects=120, site=site, seed=seed).write_analysis_csv(
        folder / "cart_efficacy.csv"
    )
    with (folder / "consortia.toml").open("a", encoding="utf-8") as config:
        config.write('\n[node.tables.cart_efficacy]\nfile = "cart_efficacy.csv"\n')
    return path


def assert_same_estimates(got: Any, want: Any, path: str = "estimates") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            assert_same_estimates(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), path
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same_estimates(a, b, f"{path}[{index}]")
    elif isinstance(want, float) and not isinstance(got, str):
        np.testing.assert_allclose(got, want, rtol=RTOL, err_msg=path)
    else:
        assert got == want, path


def test_a_hub_analysis_across_a_pushed_and_a_polling_member(tmp_path: Path) -> None:
    hub, sgh, shh = (tmp_path / name for name in ("hub", "sgh", "shh"))
    ports = {name: free_port() for name in ("hub", "sgh", "shh")}
    hub_config = str(hub / "consortia.toml")
    output = init(hub, "hub", ports["hub"], "--hub", "--name", "Test consortium")
    hub_fingerprint = output.split("hub key fingerprint ")[1].split()[0]
    with serving(hub, ports["hub"]):
        invitations = {
            name: consortia("hub", "invite", name, "--config", hub_config).stdout.strip()
            for name in ("sgh", "shh")
        }
        joined = init(
            sgh,
            "sgh",
            ports["sgh"],
            "--join",
            invitations["sgh"],
            "--institution",
            "Singapore General (fictional)",
            "--country",
            "SG",
        )
        assert f"its key fingerprint {hub_fingerprint} matches the invitation's" in joined
        init(
            shh,
            "shh",
            ports["shh"],
            "--join",
            invitations["shh"],
            "--institution",
            "Shanghai Ruijin (fictional)",
            "--country",
            "CN",
            "--transport",
            "pull",
            "--accept-studies",
            "auto",
        )
        again = consortia(
            "init",
            str(tmp_path / "again"),
            "--join",
            invitations["sgh"],
            "--institution",
            "x",
            "--country",
            "SG",
            "--node-name",
            "sgh",
            "--admin-email",
            "a@x.example",
            "--admin-name",
            "A",
            "--admin-password-file",
            str(tmp_path / "password"),
            check=False,
        )
        assert again.returncode == 1
        assert "the invitation was used already" in again.stderr
        assert not (tmp_path / "again" / "consortia.toml").exists()
        members = json.loads(consortia("hub", "members", "--json", "--config", hub_config).stdout)
        assert {(m["name"], m["transport"], m["status"]) for m in members} == {
            ("sgh", "push", "active"),
            ("shh", "pull", "active"),
        }
        files = {"sgh": share_trial_file(sgh, "SG01", 21), "shh": share_trial_file(shh, "SH01", 22)}
        with serving(sgh, ports["sgh"]), serving(shh, ports["shh"]):
            study = tmp_path / "cart-lbcl.yaml"
            study.write_text(template_text("cart-lbcl"), encoding="utf-8")
            published = consortia(
                "hub",
                "publish",
                str(study),
                "--site",
                "SG01=sgh",
                "--site",
                "SH01=shh",
                "--config",
                hub_config,
            ).stdout
            assert "sgh: pending" in published  # its administrator decides
            assert "shh: accepted" in published  # its policy accepts its hub's versions
            listed = consortia("node", "studies", "list", "--config", str(sgh / "consortia.toml"))
            offer = listed.stdout.splitlines()[2].split()[0]
            consortia("node", "studies", "accept", offer, "--config", str(sgh / "consortia.toml"))

            done = consortia(
                "analyze",
                "--study",
                "CART-LBCL",
                "--plan",
                "pfs_km",
                "--json",
                "--config",
                hub_config,
            )
            result = json.loads(done.stdout)
            assert result["complete"] is True
            assert {n["name"]: n["n"] for n in result["nodes"]} == {"sgh": 120, "shh": 120}
            plan = {
                "kind": "kaplan_meier",
                "table": "cart_efficacy",
                "time": "pfs_days",
                "event": "pfs_event",
                "group": "arm",
            }
            reference = analyze_local(plan, files).to_dict()
            assert_same_estimates(result["estimates"], reference["estimates"])

            token = consortia(
                "token",
                "create",
                "admin@hub.example",
                "--name",
                "test",
                "--all-studies",
                "--config",
                hub_config,
            ).stdout.strip()
            kept = httpx.get(
                f"http://127.0.0.1:{ports['hub']}/api/v1/hub/analyses/{result['analysis']}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=READ_SECONDS,
            )
            assert kept.status_code == 200, kept.text
            assert kept.json()["status"] == "done"
            assert kept.json()["transport"] == {"sgh": "push", "shh": "pull"}
            assert_same_estimates(kept.json()["result"]["estimates"], reference["estimates"])

            adhoc = tmp_path / "adhoc.json"
            adhoc.write_text(
                json.dumps({"kind": "describe", "table": "cart_efficacy", "variable": "mrn"}),
                encoding="utf-8",
            )
            refused = consortia(
                "analyze",
                "--study",
                "CART-LBCL",
                "--request",
                str(adhoc),
                "--config",
                hub_config,
                check=False,
            )
            assert refused.returncode == 1
            assert "refused" in refused.stderr
            listed = httpx.get(
                f"http://127.0.0.1:{ports['hub']}/api/v1/hub/analyses",
                headers={"Authorization": f"Bearer {token}"},
                timeout=READ_SECONDS,
            ).json()
            assert listed[0]["status"] == "failed"
            assert {r["node"] for r in listed[0]["result"]["refusals"]} == {"sgh", "shh"}
            assert all(r["rule"] for r in listed[0]["result"]["refusals"])

            consortia("hub", "remove", "shh", "--config", hub_config)
            after = json.loads(
                consortia(
                    "analyze",
                    "--study",
                    "CART-LBCL",
                    "--plan",
                    "pfs_km",
                    "--json",
                    "--config",
                    hub_config,
                ).stdout
            )
            assert [n["name"] for n in after["nodes"]] == ["sgh"]

            def refused_poll_logged() -> bool:
                return "is revoked" in (shh / "serve.log").read_text(errors="replace")

            wait_until(refused_poll_logged, what="the removed member's poll to be refused")
