"""Connection settings from the environment: profiles, simulator fallback, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.errors import UserError
from fleetwave.platforms import open_platform
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.platforms.iodm.settings import SIM_DEFAULT_APP_ID, SIM_DEFAULT_BASE_URL


def test_default_profile_falls_back_to_the_embedded_simulator() -> None:
    s = IoDMSettings.from_env(environ={})
    assert s.base_url == SIM_DEFAULT_BASE_URL
    assert s.app_id == SIM_DEFAULT_APP_ID
    assert s.rate_limit == 100


def test_named_profile_reads_its_own_prefix(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    s = IoDMSettings.from_env(
        "prod",
        environ={
            "IODM_PROD_BASE_URL": "https://iot.example.com:8743/",
            "IODM_PROD_APP_ID": "app-1",
            "IODM_PROD_SECRET_FILE": str(secret_file),
            "IODM_PROD_RATE_LIMIT": "60",
            "IODM_PROD_PREFECT_RATE_LIMIT": "iodm-prod",
            "IODM_BASE_URL": "https://ignored",
        },
    )
    assert s.base_url == "https://iot.example.com:8743"
    assert s.secret.get_secret_value() == "from-a-file"
    assert s.rate_limit == 60
    assert s.prefect_rate_limit == "iodm-prod"


def test_unconfigured_named_profile_says_which_variables() -> None:
    with pytest.raises(UserError, match="IODM_STAGING_BASE_URL"):
        IoDMSettings.from_env("staging", environ={})


def test_missing_secret_is_named() -> None:
    with pytest.raises(UserError, match="IODM_SECRET is unset"):
        IoDMSettings.from_env(environ={"IODM_BASE_URL": "https://x:1", "IODM_APP_ID": "a"})


def test_bad_values_name_the_variable() -> None:
    env = {
        "IODM_BASE_URL": "https://x:1",
        "IODM_APP_ID": "a",
        "IODM_SECRET": "hunter2-secret",
        "IODM_RATE_LIMIT": "lots",
        "IODM_CA_BUNDLE": "/nonexistent/ca.pem",
    }
    with pytest.raises(UserError) as caught:
        IoDMSettings.from_env(environ=env)
    text = str(caught.value)
    assert "IODM_RATE_LIMIT" in text
    assert "IODM_CA_BUNDLE" in text
    assert "hunter2-secret" not in text


def test_base_url_with_a_path_is_refused() -> None:
    with pytest.raises(UserError, match="IODM_BASE_URL"):
        IoDMSettings.from_env(
            environ={"IODM_BASE_URL": "https://x:1/iocm", "IODM_APP_ID": "a", "IODM_SECRET": "b"}
        )


def test_mutual_tls_needs_cert_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="both a client certificate and its key"):
        IoDMSettings(base_url="https://x:1", app_id="a", secret="b", client_cert=cert)


def test_reprs_hide_the_secret() -> None:
    s = IoDMSettings(base_url="https://x:1", app_id="a", secret="very-secret-value")
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" not in str(s)
    assert "very-secret-value" not in repr(s.model_dump())


def test_bad_profile_name() -> None:
    with pytest.raises(UserError, match="not a valid name"):
        IoDMSettings.from_env("no spaces", environ={})


async def test_open_platform_builds_the_iodm_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IODM_LAB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IODM_LAB_APP_ID", "lab")
    monkeypatch.setenv("IODM_LAB_SECRET", "lab-secret")
    async with open_platform("lab") as platform:
        assert isinstance(platform, IoDMPlatform)
        assert platform.capabilities.max_devices_per_task == 256
        assert platform.settings.app_id == "lab"
        assert platform.call_counts() == {}


async def test_the_adapter_satisfies_the_platform_protocol() -> None:
    from fleetwave.platforms.base import Platform

    async with IoDMPlatform(IoDMSettings(base_url="https://x:1", app_id="a", secret="b")) as p:
        assert isinstance(p, Platform)


def test_the_fallback_credentials_are_the_simulators_demo_ones() -> None:
    from fleetwave.platforms.iodm.settings import SIM_DEFAULT_SECRET
    from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET

    assert (SIM_DEFAULT_APP_ID, SIM_DEFAULT_SECRET) == (DEMO_APP_ID, DEMO_SECRET)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"IODM_APP_ID": "real-app", "IODM_SECRET": "real-secret-1"},
            "IODM_APP_ID and IODM_SECRET",
        ),
        ({"IODM_APP_ID": "real-app"}, "IODM_APP_ID holds"),
        ({"IODM_SECRET": "real-secret-1"}, "IODM_SECRET holds"),
    ],
)
def test_no_simulator_fallback_with_real_credentials(env: dict[str, str], named: str) -> None:
    with pytest.raises(UserError) as caught:
        IoDMSettings.from_env(environ=env)
    text = str(caught.value)
    assert "IODM_BASE_URL is unset" in text and named in text
    assert "real-secret-1" not in text


def test_no_simulator_fallback_with_a_real_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("real-secret-from-file\n")
    with pytest.raises(UserError, match="IODM_SECRET_FILE holds") as caught:
        IoDMSettings.from_env(environ={"IODM_SECRET_FILE": str(secret_file)})
    assert "real-secret-from-file" not in str(caught.value)


def test_credentials_in_a_base_url_are_refused_in_code_and_in_a_profile() -> None:
    with pytest.raises(UserError, match="IODM_PROD_BASE_URL carries a user name") as caught:
        IoDMSettings.from_env(
            "prod",
            environ={
                "IODM_PROD_BASE_URL": "https://u:hunter2@iot.example.com:8743",
                "IODM_PROD_APP_ID": "a",
                "IODM_PROD_SECRET": "b",
            },
        )
    assert "hunter2" not in str(caught.value)
    assert "https://***@iot.example.com:8743" in str(caught.value)
    assert "IODM_PROD_APP_ID" in str(caught.value)
    with pytest.raises(UserError) as direct:
        IoDMSettings(base_url="http://u:hunter2@127.0.0.1:1", app_id="a", secret="b")
    assert "hunter2" not in str(direct.value) and "http://***@127.0.0.1:1" in str(direct.value)
