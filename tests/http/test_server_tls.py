"""HTTPS with the guide's variables: the server serves SSL_CERT_FILE, and nothing else takes it for a CA bundle.

OpenSSL, Python's ssl and rustls (obstore) read SSL_CERT_FILE as the CAs that outbound TLS trusts
(codeapi/config/server_tls.py). Each test runs a real `codeapi serve` with the variable in its process
environment, as docker compose passes `.env`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.backends import SeaweedServer
from tests.apiserver import START_TIMEOUT_S, Replica
from tests.conftest import API_KEY, shared_backend

HEADERS = {"x-api-key": API_KEY}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codeapi test server")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    cert_file, key_file = directory / "fullchain.pem", directory / "privkey.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def https_replica(root: Path, cert_file: Path, key_file: Path, **extra: Any) -> Replica:
    replica = Replica(
        root, {"ENABLE_HTTPS": "true", "SSL_CERT_FILE": str(cert_file), "SSL_KEY_FILE": str(key_file), **extra}
    )
    replica.url = replica.url.replace("http://", "https://")
    return replica


def wait_serving(replica: Replica, client: httpx.Client) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert replica.process.poll() is None, f"the server exited: {replica.log.name}"
        with contextlib.suppress(httpx.HTTPError):
            if client.get("/health").status_code == 200:
                return
        assert time.monotonic() < deadline, f"the server did not start: {replica.log.name}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def certificate(test_root: Path) -> tuple[Path, Path]:
    return self_signed_certificate(test_root / "server-tls" / "ssl")


@pytest.fixture(scope="module")
def https_server(test_root: Path, certificate: tuple[Path, Path]) -> Iterator[tuple[Replica, httpx.Client]]:
    replica = https_replica(test_root / "server-tls" / "https", *certificate)
    try:
        with httpx.Client(base_url=replica.url, headers=HEADERS, verify=trusting(certificate[0]), timeout=60) as client:
            wait_serving(replica, client)
            yield replica, client
    finally:
        replica.stop()


def trusting(cert_file: Path) -> ssl.SSLContext:
    """A client context whose only CA is the server's certificate (and checks it names 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(cert_file))


def parent_pids() -> dict[int, int]:
    """pid -> parent pid, of every process on the host."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue  # exited meanwhile
    return parents


def descendants(pid: int) -> list[int]:
    parents = parent_pids()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, its_parent in parents.items() if its_parent == parent]
        found += children
        frontier += children
    return found


def environments(pids: list[int]) -> dict[str, list[str]]:
    """ "<pid> <command name>" -> environment entries, of the processes still there."""
    found: dict[str, list[str]] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            found[f"{pid} {name}"] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def test_https_serves_the_certificate_ssl_cert_file_names(
    https_server: tuple[Replica, httpx.Client], certificate: tuple[Path, Path]
) -> None:
    replica, client = https_server
    port = int(replica.url.rsplit(":", 1)[1])
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(certificate[0].read_text())
    assert client.get("/health").json()["status"] == "healthy"


def processes_given(cert_file: Path, app_pid: int) -> list[str]:
    """The processes below the app's that got SSL_CERT_FILE (after a Python run: its kept sandbox,
    nsjail and the jail, is among them)."""
    envs = environments(descendants(app_pid))
    assert any("nsjail" in name for name in envs), envs.keys()
    return [name for name, env in envs.items() if f"SSL_CERT_FILE={cert_file}" in env]


def test_no_process_the_server_starts_inherits_ssl_cert_file(
    https_server: tuple[Replica, httpx.Client], certificate: tuple[Path, Path]
) -> None:
    replica, client = https_server
    assert client.post("/exec", json={"lang": "py", "code": "x = 1"}).status_code == 200
    assert processes_given(certificate[0], replica.process.pid) == []


@pytest.mark.parametrize(("lang", "code"), [("bash", "env"), ("py", "import os\nprint(os.environ)")])
def test_sandboxed_code_does_not_see_ssl_cert_file(
    https_server: tuple[Replica, httpx.Client], certificate: tuple[Path, Path], lang: str, code: str
) -> None:
    _, client = https_server
    response = client.post("/exec", json={"lang": lang, "code": code})
    assert response.status_code == 200, response.text
    stdout = response.json()["stdout"]
    assert "PATH" in stdout
    assert "SSL_CERT_FILE" not in stdout and str(certificate[0]) not in stdout


def test_https_with_api_reload_serves_the_same_certificate(test_root: Path, certificate: tuple[Path, Path]) -> None:
    # API_RELOAD runs the app in a worker process that reads the settings again: it must still see
    # ENABLE_HTTPS=true with the certificate the operator named.
    replica = https_replica(test_root / "server-tls" / "reload", *certificate, API_RELOAD="true")
    try:
        with httpx.Client(base_url=replica.url, headers=HEADERS, verify=trusting(certificate[0]), timeout=60) as client:
            wait_serving(replica, client)
            assert client.post("/exec", json={"lang": "bash", "code": "echo over-tls"}).json()["stdout"] == "over-tls\n"
            assert client.post("/exec", json={"lang": "py", "code": "x = 1"}).status_code == 200
            # The worker got the variable from the reloader, to read its settings; nothing below it did.
            (worker,) = [
                pid
                for pid, parent in parent_pids().items()
                if parent == replica.process.pid and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert processes_given(certificate[0], worker) == []
    finally:
        replica.stop()


def test_a_missing_ssl_cert_file_in_the_environment_does_not_stop_s3(
    test_root: Path, api_seaweed: SeaweedServer
) -> None:
    # docker compose with .env.example as it was: SSL_CERT_FILE names a file that does not exist (HTTPS
    # stays off). rustls took it for its only CA bundle, loaded no CA at all, and obstore could not
    # open the store: the API exited at start-up.
    missing = test_root / "server-tls" / "no-such-dir" / "fullchain.pem"
    replica = Replica(
        test_root / "server-tls" / "compose-default", {**shared_backend(api_seaweed), "SSL_CERT_FILE": missing}
    )
    try:
        replica.wait_ready()
        with httpx.Client(base_url=replica.url, headers=HEADERS, timeout=60) as client:
            upload = client.post("/upload", files={"file": ("kept.txt", b"in s3")})
            assert upload.status_code == 200, upload.text
            session_id, file_id = upload.json()["session_id"], upload.json()["files"][0]["fileId"]
            assert client.get(f"/download/{session_id}/{file_id}").content == b"in s3"
    finally:
        replica.stop()
