"""The SDK over HTTPS: the simulator serves TLS (``--tls-cert``/``--tls-key``) as the real
platform does; the SDK trusts its self-signed certificate through ``REQUESTS_CA_BUNDLE``."""

from __future__ import annotations

from pathlib import Path

import pytest
from verizon.models.log_in_request import LogInRequest

from fleetwave.sim.testing import run_thingspace_simulator
from tests.certs import self_signed
from tests.conformance.thingspace_sdk.conftest import local_configuration

pytestmark = pytest.mark.timeout(120)


def test_token_login_and_firmware_list_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
    from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
    from verizon.verizon_client import VerizonClient

    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with run_thingspace_simulator(
        devices=50, clock="manual", rate_limit=0, tls_cert=cert, tls_key=key
    ) as ts:
        assert ts.base_url.startswith("https://")
        creds = ThingspaceOauthCredentials(ts.client_key, ts.client_secret)
        bare = VerizonClient(
            config=local_configuration(ts.base_url, thingspace_oauth_credentials=creds)
        )
        login = bare.session_management.start_connectivity_management_session(
            LogInRequest(username=ts.username, password=ts.password)
        )
        client = VerizonClient(
            config=local_configuration(
                ts.base_url,
                thingspace_oauth_credentials=creds,
                vz_m2m_token_credentials=VZM2mTokenCredentials(login.body.session_token),
            )
        )
        firmware = client.firmware_v1.list_available_firmware(ts.account).body
        assert "FOTA_Sensorix_NBS-10_3.1.0To3.2.0" in [f.firmware_name for f in firmware]
