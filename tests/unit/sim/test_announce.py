"""What ``fleetwave sim serve`` prints at start-up for the IoDM simulator: its address, the
demo credentials, the fleet, and over HTTPS the setting clients trust the certificate by."""

from __future__ import annotations

from pathlib import Path

from fleetwave.sim.config import SimConfig
from fleetwave.sim.server import announce_lines


def test_the_banner_names_credentials_fleet_and_admin_paths() -> None:
    config = SimConfig(devices=500, groups=4, seed=7, rate_limit=0)
    lines = announce_lines(config, "http://127.0.0.1:8743")
    assert lines[0] == "fleetwave IoDM simulator listening on http://127.0.0.1:8743"
    assert f"  appId:  {config.app_id}" in lines
    assert f"  secret: {config.secret}" in lines
    assert any(
        "500 devices in 4 groups, seed 7" in line and "unlimited/min" in line for line in lines
    )
    assert not any(line.lstrip().startswith("tls:") for line in lines)


def test_over_https_the_banner_says_which_setting_trusts_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "sim.pem", tmp_path / "sim.key"
    config = SimConfig(tls_cert=cert, tls_key=key)
    (tls,) = [line for line in announce_lines(config, "https://127.0.0.1:8743") if "tls:" in line]
    assert str(cert) in tls and "IODM_CA_BUNDLE" in tls
