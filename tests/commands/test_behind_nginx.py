"""examples/nginx/consortia.conf, started by a real nginx, proxies TLS to a real
``consortia serve`` on loopback: pages and ``/api/v1/health`` answer through it.

nginx comes from the OS packages (``scripts/test_nginx.py ensure`` installs it in CI); here
without it the test skips with that reason, in CI it fails.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from consortia.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "nginx" / "consortia.conf"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        reason = "nginx is not installed (`python scripts/test_nginx.py ensure` installs it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI needs it")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _site_config(text: str, replacements: dict[str, str]) -> str:
    """The example with its site-specific values replaced; each must be there once."""
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{EXAMPLE}: expected {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("CONSORTIA_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    password = tmp_path / "password"
    password.write_text("a long passphrase\n", encoding="utf-8")
    done = CliRunner().invoke(
        app,
        [
            *("init", str(tmp_path / "node"), "--admin-email", "ada@sg.example"),
            *("--admin-name", "Ada", "--admin-password-file", str(password)),
        ],
    )
    assert done.exit_code == 0, done.output
    return tmp_path / "node" / "consortia.toml"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def served(node: Path, tmp_path: Path) -> Iterator[int]:
    """``consortia serve`` on a loopback port."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "consortia", "serve", "--config", str(node), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            assert server.poll() is None, "consortia serve stopped"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200
            except httpx.TransportError:
                return False

        _wait_until(answers, "consortia serve")
        yield port
    finally:
        _stop(server)


def test_nginx_example_proxies_tls_to_the_node(served: int, tmp_path: Path) -> None:
    nginx = _nginx()
    folder = tmp_path / "nginx"
    folder.mkdir()
    cert, key = _self_signed(folder)
    http_port, https_port = _free_port(), _free_port()
    site = _site_config(
        EXAMPLE.read_text(encoding="utf-8"),
        {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{served};",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
            "/etc/ssl/consortia/fullchain.pem": str(cert),
            "/etc/ssl/consortia/privkey.pem": str(key),
        },
    )
    (folder / "consortia.conf").write_text(site, encoding="utf-8")
    # nginx's own frame, as a distribution's nginx.conf would give it (one process here:
    # no privilege drop to a user who could not read the test's folder)
    main = f"""
        daemon off;
        master_process off;
        pid {folder}/nginx.pid;
        events {{}}
        http {{
            access_log {folder}/access.log;
            client_body_temp_path {folder}/body;
            proxy_temp_path {folder}/proxy;
            fastcgi_temp_path {folder}/fastcgi;
            uwsgi_temp_path {folder}/uwsgi;
            scgi_temp_path {folder}/scgi;
            include {folder}/consortia.conf;
        }}
    """
    (folder / "nginx.conf").write_text(main, encoding="utf-8")
    error_log = folder / "error.log"
    command = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(error_log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trusted = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{https_port}"
    try:

        def listening() -> bool:
            assert proxy.poll() is None, error_log.read_text(encoding="utf-8", errors="replace")
            try:
                with socket.create_connection(("127.0.0.1", https_port), timeout=1):
                    return True
            except OSError:
                return False

        _wait_until(listening, "nginx")
        with httpx.Client(verify=trusted, timeout=30) as client:
            health = client.get(f"{base}/api/v1/health")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert health.json()["database"]["status"] == "ok"
            assert health.json()["audit"]["status"] == "ok"
            assert health.headers["strict-transport-security"] == "max-age=63072000"
            assert health.headers["cache-control"] == "no-store"  # the node's own headers pass

            page = client.get(f"{base}/login")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "<form" in page.text
            assert "content-security-policy" in page.headers

            # a TLS client that does not trust the certificate is refused
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{base}/api/v1/health", verify=ssl.create_default_context())

        plain = httpx.get(f"http://127.0.0.1:{http_port}/login")
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://127.0.0.1/login"
    finally:
        _stop(proxy)
    assert "[emerg]" not in error_log.read_text(encoding="utf-8", errors="replace")
