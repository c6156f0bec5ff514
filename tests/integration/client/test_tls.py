"""TLS to the platform: a self-signed CA bundle (IODM_CA_BUNDLE) and mutual TLS (client cert)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetwave.platforms.errors import PlatformUnavailable
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.sim.app import create_app
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET, SimConfig
from fleetwave.sim.server import bind_socket


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("fleetwave test CA")
    s_key, s_cert = _leaf(ca_key, ca_cert, "127.0.0.1", server=True)
    c_key, c_cert = _leaf(ca_key, ca_cert, "fleetwave client", server=False)
    _, other = _ca("some other CA")
    return Pki(
        ca=_write_cert(ca_cert, d / "ca.pem"),
        server_cert=_write_cert(s_cert, d / "server.pem"),
        server_key=_write_key(s_key, d / "server.key"),
        client_cert=_write_cert(c_cert, d / "client.pem"),
        client_key=_write_key(c_key, d / "client.key"),
        other_ca=_write_cert(other, d / "other-ca.pem"),
    )


def _serve_tls(pki: Pki, *, require_client_cert: bool) -> Iterator[str]:
    app = create_app(SimConfig(devices=40, groups=1, rate_limit=0))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    extra = (
        {"ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        if require_client_cert
        else {}
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            ssl_certfile=str(pki.server_cert),
            ssl_keyfile=str(pki.server_key),
            **extra,  # type: ignore[arg-type]
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.started, "the TLS simulator did not start"
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def tls_url(pki: Pki) -> Iterator[str]:
    yield from _serve_tls(pki, require_client_cert=False)


@pytest.fixture
def mtls_url(pki: Pki) -> Iterator[str]:
    yield from _serve_tls(pki, require_client_cert=True)


async def test_tls_with_a_self_signed_ca_bundle_from_the_environment(
    tls_url: str, pki: Pki
) -> None:
    env = {
        "IODM_BASE_URL": tls_url,
        "IODM_APP_ID": DEMO_APP_ID,
        "IODM_SECRET": DEMO_SECRET,
        "IODM_CA_BUNDLE": str(pki.ca),
        "IODM_RATE_LIMIT": "0",
    }
    async with IoDMPlatform(IoDMSettings.from_env(environ=env)) as platform:
        device = await platform.get_device("dev-00000000")
    assert device.device_id == "dev-00000000"


async def test_tls_refuses_a_server_the_bundle_does_not_vouch_for(tls_url: str, pki: Pki) -> None:
    settings = IoDMSettings(
        base_url=tls_url,
        app_id=DEMO_APP_ID,
        secret=DEMO_SECRET,
        ca_bundle=pki.other_ca,
        rate_limit=0,
    )
    async with IoDMPlatform(settings) as platform:
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.get_device("dev-00000000")
        assert platform.call_counts() == {"POST /iocm/app/sec/v1.1.0/login": 1}  # no retries
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "IODM_CA_BUNDLE" in str(caught.value)


async def test_mutual_tls_with_a_client_certificate(mtls_url: str, pki: Pki) -> None:
    base = {
        "base_url": mtls_url,
        "app_id": DEMO_APP_ID,
        "secret": DEMO_SECRET,
        "ca_bundle": pki.ca,
        "rate_limit": 0,
        "max_attempts": 1,
    }
    with_cert = IoDMSettings(**base, client_cert=pki.client_cert, client_key=pki.client_key)
    async with IoDMPlatform(with_cert) as platform:
        assert (await platform.get_device("dev-00000001")).device_id == "dev-00000001"
    async with IoDMPlatform(IoDMSettings(**base)) as platform:
        with pytest.raises(PlatformUnavailable):
            await platform.get_device("dev-00000001")


@pytest.mark.parametrize("server", ["tls_url", "resetting_tls_url"])
async def test_http_to_a_tls_server_says_to_use_https(
    server: str, request: pytest.FixtureRequest
) -> None:
    """Plain HTTP to a TLS server, refused with a TLS alert (uvicorn) or a reset."""
    tls_url: str = request.getfixturevalue(server)
    plain = tls_url.replace("https://", "http://")
    settings = IoDMSettings(
        base_url=plain, app_id=DEMO_APP_ID, secret=DEMO_SECRET, rate_limit=0, backoff_cap=0.05
    )
    async with IoDMPlatform(settings) as platform:
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.get_device("dev-00000000")
        # the login was not retried: the answer is certain, not transient
        assert platform.call_counts() == {"POST /iocm/app/sec/v1.1.0/login": 1}
    text = str(caught.value)
    assert "speaks TLS" in text and "https://" in text and "IODM_BASE_URL" in text
    assert DEMO_SECRET not in text


@pytest.fixture
def resetting_tls_url(pki: Pki) -> Iterator[str]:
    """A TLS server that resets a plain-text connection before any alert reaches the client.

    This is how a busy TLS server often refuses an ``http://`` request: the client sees a
    ReadError (connection reset), not a RemoteProtocolError.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    listener = bind_socket("127.0.0.1", 0)
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                first = conn.recv(1, socket.MSG_PEEK)
                if first == b"\x16":  # a TLS ClientHello: complete the handshake
                    with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
                        pass
                else:  # plain text: reset the connection (RST, no alert)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
