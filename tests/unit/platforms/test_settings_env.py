"""A platform's settings written as environment variables read back as the same settings:
what the demo and the simulator handles hand to a flow run's process."""

from __future__ import annotations

from pathlib import Path

from fleetwave.platforms.iodm.settings import IoDMSettings
from fleetwave.platforms.thingspace.settings import ThingSpaceSettings
from fleetwave.sim.testing import SimConfig, SimHandle
from fleetwave.sim.thingspace.config import TSConfig
from fleetwave.sim.thingspace.testing import TSHandle


def test_iodm_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    settings = IoDMSettings(
        base_url="https://iodm.example:8743",
        app_id="app-1",
        secret="s3cret",
        rate_limit=0,
        ca_bundle=ca,
        verify_tls=True,
    )
    env = settings.to_env("prod")
    assert env["IODM_PROD_SECRET"] == "s3cret"
    assert env["IODM_PROD_RATE_LIMIT"] == "0"
    assert IoDMSettings.from_env("prod", env) == settings


def test_thingspace_settings_round_trip_through_the_environment() -> None:
    settings = ThingSpaceSettings(
        base_url="https://thingspace.example",
        key="k",
        secret="s",
        username="u",
        password="p",
        account_name="0000123456-00001",
        rate_limit=0,
    )
    env = settings.to_env()
    assert env["THINGSPACE_PASSWORD"] == "p"
    assert ThingSpaceSettings.from_env("default", env) == settings


def test_simulator_handles_name_their_drivers_settings() -> None:
    iodm = SimHandle("http://127.0.0.1:1", SimConfig())
    try:
        env = iodm.driver_env()
    finally:
        iodm.close()
    read = IoDMSettings.from_env("default", env)
    assert (read.base_url, read.app_id, read.rate_limit) == ("http://127.0.0.1:1", iodm.app_id, 0)
    assert read.secret.get_secret_value() == iodm.secret
    ts = TSHandle("http://127.0.0.1:2", TSConfig())
    try:
        ts_env = ts.driver_env()
    finally:
        ts.close()
    got = ThingSpaceSettings.from_env("default", ts_env)
    assert (got.base_url, got.username, got.account_name) == (
        "http://127.0.0.1:2",
        ts.username,
        ts.account,
    )
    assert got.password.get_secret_value() == ts.password
