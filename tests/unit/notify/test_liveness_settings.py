"""Push liveness (when may the monitor poll slowly) and the receiver's settings."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

from fleetwave.errors import UserError
from fleetwave.notify import NotifySettings
from fleetwave.notify.liveness import Liveness

T0 = pendulum.datetime(2026, 1, 5, tz="UTC")


def test_unhealthy_until_running_and_subscribed() -> None:
    live = Liveness(quiet_after=60)
    assert not live.healthy(T0)
    live.set_running(True)
    assert not live.healthy(T0)  # running but never subscribed
    live.mark_subscribed(T0)
    assert live.healthy(T0.add(seconds=60))  # grace period after subscribing
    assert not live.healthy(T0.add(seconds=61))


def test_campaign_goes_quiet_and_recovers() -> None:
    live = Liveness(quiet_after=60)
    live.set_running(True)
    live.mark_subscribed(T0)
    live.mark_campaigns({7: T0.add(seconds=100)})
    live.mark_received(T0.add(seconds=100))
    assert live.last_seen(7) == T0.add(seconds=100) and live.last_seen(8) is None
    assert live.healthy(T0.add(seconds=150), 7)
    assert not live.healthy(T0.add(seconds=150), 8)  # campaign 8 never heard from
    assert not live.healthy(T0.add(seconds=200), 7)  # quiet: polling takes over
    assert live.healthy(T0.add(seconds=200), 7, quiet_after=120)
    live.mark_campaigns({7: T0.add(seconds=50)})  # older marks never move last_seen back
    assert live.last_seen(7) == T0.add(seconds=100)
    live.expect(8, T0.add(seconds=190))
    assert live.healthy(T0.add(seconds=200), 8)
    live.set_running(False)
    assert not live.healthy(T0.add(seconds=100), 7)


def test_settings_from_env() -> None:
    s = NotifySettings.from_env(
        {
            "FLEETWAVE_NOTIFY_HOST": "0.0.0.0",
            "FLEETWAVE_NOTIFY_PORT": "8790",
            "FLEETWAVE_NOTIFY_PUBLIC_URL": "https://engine.example.net/hooks",
            "FLEETWAVE_NOTIFY_QUIET_AFTER": "120",
        }
    )
    assert (s.host, s.port, s.public_url, s.quiet_after) == (
        "0.0.0.0",
        8790,
        "https://engine.example.net/hooks",
        120.0,
    )
    assert NotifySettings.from_env({}) == NotifySettings()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"FLEETWAVE_NOTIFY_PORT": "http"}, "FLEETWAVE_NOTIFY_PORT is 'http': it must be a number"),
        ({"FLEETWAVE_NOTIFY_PORT": "70000"}, "FLEETWAVE_NOTIFY_PORT is 70000"),
        ({"FLEETWAVE_NOTIFY_PUBLIC_URL": "engine:8790"}, "FLEETWAVE_NOTIFY_PUBLIC_URL"),
        ({"FLEETWAVE_NOTIFY_HOST": "0.0.0.0"}, "set FLEETWAVE_NOTIFY_PUBLIC_URL"),
        ({"FLEETWAVE_NOTIFY_BATCH_SIZE": "0"}, "FLEETWAVE_NOTIFY_BATCH_SIZE is 0"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(UserError) as err:
        NotifySettings.from_env(env)
    assert words in str(err.value)


def test_tls_files_go_together_and_must_exist(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    s = NotifySettings.from_env(
        {"FLEETWAVE_NOTIFY_TLS_CERT": str(cert), "FLEETWAVE_NOTIFY_TLS_KEY": str(key)}
    )
    assert (s.tls_cert, s.tls_key) == (str(cert), str(key))
    with pytest.raises(UserError, match="TLS_CERT and FLEETWAVE_NOTIFY_TLS_KEY go together"):
        NotifySettings.from_env({"FLEETWAVE_NOTIFY_TLS_CERT": str(cert)})
    with pytest.raises(UserError, match=r"FLEETWAVE_NOTIFY_TLS_KEY is .*a readable PEM file"):
        NotifySettings(tls_cert=str(cert), tls_key=str(tmp_path / "missing.pem"))
