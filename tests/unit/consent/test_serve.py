"""Whether a run serves the consent API, and what it does when the port is taken (plain
functions); the FLEETWAVE_CONSENT_* settings; the store fingerprint the API answers with."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetwave import store
from fleetwave.consent.serve import (
    ApiIdentity,
    ServeKind,
    bind_failure_decision,
    local_url,
    serve_consent_api,
    serving_decision,
)
from fleetwave.consent.settings import ConsentServeSettings
from fleetwave.errors import UserError

OURS = "sha256:00112233aabbccdd"
URL = "http://127.0.0.1:8780"
IN_USE = "the consent API cannot listen on 127.0.0.1:8780: Address already in use"


def test_only_a_consent_campaign_is_served_and_the_switch_turns_it_off() -> None:
    on = ConsentServeSettings()
    assert serving_decision(consent=False, settings=on).kind is ServeKind.OFF
    served = serving_decision(consent=True, settings=on)
    assert served.kind is ServeKind.BIND and "127.0.0.1:8780" in served.reason
    off = serving_decision(consent=True, settings=ConsentServeSettings(serve=False))
    assert off.kind is ServeKind.OFF
    assert "FLEETWAVE_CONSENT_SERVE is false" in off.reason
    assert "fleetwave consent serve" in off.reason


def test_a_consent_api_on_the_same_store_is_reused() -> None:
    found = ApiIdentity(store=OURS, version="0.1.0")
    decision = bind_failure_decision(error=IN_USE, in_use=True, found=found, store_id=OURS, url=URL)
    assert decision.kind is ServeKind.REUSE
    assert f"reusing the one already serving this store on {URL}" in decision.reason


@pytest.mark.parametrize(
    ("found", "in_use", "expected"),
    [
        (None, True, "what listens there is not a fleetwave consent API"),
        (ApiIdentity("sha256:ffffffffffffffff", "0.1.0"), True, "serves another store"),
        (None, False, "cannot listen on"),  # e.g. an address this machine does not have
    ],
)
def test_anything_else_on_the_port_is_refused_with_what_to_do(
    found: ApiIdentity | None, in_use: bool, expected: str
) -> None:
    decision = bind_failure_decision(
        error=IN_USE
        if in_use
        else "the consent API cannot listen on 10.9.9.9:8780: Cannot assign requested address",
        in_use=in_use,
        found=found,
        store_id=OURS,
        url=URL,
    )
    assert decision.kind is ServeKind.REFUSE
    assert expected in decision.reason
    assert "FLEETWAVE_CONSENT_PORT" in decision.reason and "\n" not in decision.reason


def test_local_url_reaches_a_wildcard_address_on_loopback() -> None:
    assert local_url("0.0.0.0", 8780) == "http://127.0.0.1:8780"
    assert local_url("::", 8780) == "http://[::1]:8780"
    assert local_url("10.0.0.5", 80) == "http://10.0.0.5:80"


def test_settings_from_the_environment() -> None:
    assert ConsentServeSettings.from_env({}) == ConsentServeSettings(True, "127.0.0.1", 8780)
    got = ConsentServeSettings.from_env(
        {
            "FLEETWAVE_CONSENT_SERVE": "off",
            "FLEETWAVE_CONSENT_HOST": "0.0.0.0",
            "FLEETWAVE_CONSENT_PORT": " 9000 ",
        }
    )
    assert got == ConsentServeSettings(False, "0.0.0.0", 9000)
    assert ConsentServeSettings.from_env({"FLEETWAVE_CONSENT_SERVE": "TRUE"}).serve


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEETWAVE_CONSENT_SERVE": "maybe"}, "FLEETWAVE_CONSENT_SERVE is 'maybe'"),
        ({"FLEETWAVE_CONSENT_PORT": "http"}, "FLEETWAVE_CONSENT_PORT is 'http'"),
        ({"FLEETWAVE_CONSENT_PORT": "70000"}, "FLEETWAVE_CONSENT_PORT is 70000"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        ConsentServeSettings.from_env(env)
    assert "\n" not in str(err.value)


def test_store_fingerprint_names_the_store_without_its_password(tmp_path: Path) -> None:
    pg = "postgresql+psycopg://fleet:s3cret-pw@db.example:5432/fleet"
    fp = store.store_fingerprint(pg)
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16
    assert "s3cret" not in fp and "db.example" not in fp
    # the same store whatever the password or driver; another database is another store
    assert store.store_fingerprint("postgresql://fleet:other@db.example:5432/fleet") == fp
    assert store.store_fingerprint("postgresql+psycopg://fleet@db.example:5432/other") != fp
    # a SQLite file by its real path: a symlink to it is the same store
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    a = store.store_fingerprint(f"sqlite:///{tmp_path / 'real' / 'fw.db'}")
    assert store.store_fingerprint(f"sqlite:///{tmp_path / 'link' / 'fw.db'}") == a
    assert store.store_fingerprint(f"sqlite:///{tmp_path / 'other.db'}") != a


def test_a_run_serves_nothing_without_consent_or_when_switched_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = store.get_engine("sqlite://")  # never touched: nothing is served
    caplog.set_level(logging.INFO, logger="fleetwave.consent.serve")
    on, off = ConsentServeSettings(port=0), ConsentServeSettings(serve=False, port=0)
    assert serve_consent_api(engine, consent=False, now=_now, settings=on) is None
    assert not caplog.records  # a campaign without consent: not a word
    assert serve_consent_api(engine, consent=True, now=_now, settings=off) is None
    assert [r.getMessage() for r in caplog.records] == [
        "FLEETWAVE_CONSENT_SERVE is false: this run does not serve the end-user consent API "
        "(owners reach the one `fleetwave consent serve` serves)"
    ]
    engine.dispose()


def _now() -> datetime:
    return datetime(2026, 1, 5, tzinfo=UTC)
