"""The simulator over HTTPS (``--tls-cert``/``--tls-key``), reached by the IoDM client through its
CA settings (``ca_bundle`` / ``IODM_CA_BUNDLE``) with a throwaway self-signed certificate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.platforms.errors import PlatformUnavailable
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings, reset_limiters
from fleetwave.serving import stop_process_group
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import run_simulator
from tests.certs import self_signed


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "sim")


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    reset_limiters()
    yield
    reset_limiters()


async def test_in_process_simulator_serves_https(cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert
    with run_simulator(
        devices=40, groups=1, rate_limit=0, tls_cert=cert_path, tls_key=key_path
    ) as sim:
        assert sim.base_url.startswith("https://127.0.0.1:")
        settings = IoDMSettings(
            base_url=sim.base_url,
            app_id=sim.app_id,
            secret=sim.secret,
            ca_bundle=cert_path,
            rate_limit=0,
        )
        async with IoDMPlatform(settings) as platform:
            device = await platform.get_device("dev-00000003")
        assert device.device_id == "dev-00000003"
        calls = sim.stats(tasks=False)["calls"]  # the admin API is on HTTPS too
        assert calls["GET /iocm/app/dm/v1.4.0/devices/{deviceId}"] == {"200": 1}


def _start_cli(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetwave",
            "sim",
            "serve",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--devices",
            "50",
            "--groups",
            "1",
            "--rate-limit",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, first
        time.sleep(0.05)
    return proc, first


async def test_cli_serves_https_for_a_client_with_that_ca(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    cert_path, key_path = cert
    proc, first = _start_cli(tmp_path, "--tls-cert", str(cert_path), "--tls-key", str(key_path))
    try:
        port = int((tmp_path / "port").read_text())
        url = f"https://127.0.0.1:{port}"
        assert first.strip().endswith(url), first
        env = {
            "IODM_BASE_URL": url,
            "IODM_APP_ID": DEMO_APP_ID,
            "IODM_SECRET": DEMO_SECRET,
            "IODM_CA_BUNDLE": str(cert_path),
            "IODM_RATE_LIMIT": "0",
        }
        async with IoDMPlatform(IoDMSettings.from_env(environ=env)) as platform:
            assert (await platform.get_device("dev-00000001")).device_id == "dev-00000001"
        reset_limiters()
        # without that CA the self-signed certificate is refused: TLS is really on
        without_ca = {k: v for k, v in env.items() if k != "IODM_CA_BUNDLE"}
        async with IoDMPlatform(IoDMSettings.from_env(environ=without_ca)) as platform:
            with pytest.raises(PlatformUnavailable) as caught:
                await platform.get_device("dev-00000001")
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        stop_process_group(proc)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tls-cert", "{cert}"], "--tls-cert needs --tls-key too"),
        (["--tls-key", "{key}"], "--tls-key needs --tls-cert too"),
        (["--tls-cert", "{other}", "--tls-key", "{key}"], "cannot load them"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "no such file"),
    ],
)
def test_bad_tls_options_are_one_line_errors(
    tmp_path: Path, cert: tuple[Path, Path], args: list[str], expected: str
) -> None:
    other, _ = self_signed(tmp_path, "other")  # a certificate that is not the key's
    names = {"cert": cert[0], "key": cert[1], "other": other, "missing": tmp_path / "nope.pem"}
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in args]
    r = subprocess.run(
        [sys.executable, "-m", "fleetwave", "sim", "serve", "--port", "0", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
