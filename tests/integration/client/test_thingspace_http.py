"""The ThingSpace driver's HTTP behaviour against the ThingSpace simulator over real sockets:
single-flight credentials, no blind login retries, session expiry, lost creates,
throttling and redaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from fleetwave.platforms.base import PackageKind, TaskPolicy
from fleetwave.platforms.errors import AuthFailed, OutcomeUnknown
from fleetwave.platforms.thingspace import ThingSpacePlatform, ThingSpaceSettings, reset_limiters
from fleetwave.platforms.thingspace.errors import LoginRefused
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import TSHandle, run_thingspace_simulator

FIRMWARE = "FOTA_Aquaflow_WM-200_1.4.2To1.5.0"


@pytest.fixture
def sim() -> Iterator[TSHandle]:
    reset_limiters()
    with run_thingspace_simulator(devices=300, groups=3, seed=2, clock="manual", rate_limit=0) as h:
        yield h


def _settings(sim: TSHandle) -> ThingSpaceSettings:
    return ThingSpaceSettings(
        base_url=sim.base_url,
        key=sim.client_key,
        secret=sim.client_secret,
        username=sim.username,
        password=sim.password,
        account_name=sim.account,
        rate_limit=0,
        backoff_base=0.01,
        backoff_cap=0.05,
    )


def _platform(sim: TSHandle, **changes: Any) -> tuple[ThingSpacePlatform, SimLinkedClock]:
    clock = SimLinkedClock(sim.base_url, cache_seconds=0)
    settings = _settings(sim).model_copy(update=changes)
    return ThingSpacePlatform(settings, clock=clock), clock


def _meters(sim: TSHandle, n: int) -> list[str]:
    """WM-200 devices still on 1.4.2 (the firmware image's from-version)."""
    out = []
    for imei in sim.imeis("WM-200"):
        if sim.device(imei)["softwareList"][0]["version"] == "1.4.2":
            out.append(imei)
            if len(out) == n:
                return out
    raise AssertionError("not enough WM-200 devices on 1.4.2")


async def test_many_callers_cause_one_token_and_one_session(sim: TSHandle) -> None:
    platform, clock = _platform(sim)
    try:
        await asyncio.gather(*(platform.get_package(FIRMWARE) for _ in range(20)))
        auth = platform.client.auth
        assert (auth.token_logins, auth.session_logins) == (1, 1)
        stats = sim.stats(requests=False)
        assert stats["token_requests"] == 1 and stats["logins"] == 1
    finally:
        await platform.aclose()
        clock.close()


async def test_a_refused_login_is_not_tried_again(sim: TSHandle) -> None:
    platform, clock = _platform(sim, password=SecretStr("wrong-password-1234"))
    try:
        with pytest.raises(LoginRefused, match="will not try again") as first:
            await platform.get_package(FIRMWARE)
        assert "THINGSPACE_USERNAME and THINGSPACE_PASSWORD" in str(first.value)
        assert "wrong-password-1234" not in str(first.value)
        for _ in range(6):  # later calls fail at once, without another login
            with pytest.raises(AuthFailed):
                await platform.get_package(FIRMWARE)
        stats = sim.stats(requests=False)
        assert stats["failed_logins"] == 1 and not stats["locked"]
        assert platform.call_counts()["POST /api/m2m/v1/session/login"] == 1
    finally:
        await platform.aclose()
        clock.close()


async def test_an_expired_session_is_renewed_once_and_the_call_replayed(sim: TSHandle) -> None:
    platform, clock = _platform(sim)
    try:
        await platform.get_package(FIRMWARE)
        assert sim.expire_sessions() == 1
        package = await platform.get_package(FIRMWARE)
        assert package.version == "1.5.0"
        assert platform.client.auth.session_logins == 2
        assert platform.client.auth.token_logins == 1
    finally:
        await platform.aclose()
        clock.close()


async def test_an_idle_session_is_renewed_before_it_expires(sim: TSHandle) -> None:
    platform, clock = _platform(sim)
    try:
        await platform.get_package(FIRMWARE)
        sim.advance(19 * 60)  # the session lapses after 20 minutes unused
        await platform.get_package(FIRMWARE)
        counts = platform.call_counts()
        assert platform.client.auth.session_logins == 2  # renewed ahead, not refused
        assert counts["GET /api/fota/v1/firmware/{account}"] == 2  # no refused call replayed
    finally:
        await platform.aclose()
        clock.close()


async def test_a_revoked_token_is_replaced_once(sim: TSHandle) -> None:
    platform, clock = _platform(sim)
    try:
        await platform.get_package(FIRMWARE)
        sim.set_faults(revoke_token_rate=1.0, count=1, path_prefix="/api/fota/v1/firmware")
        assert (await platform.get_package(FIRMWARE)).version == "1.5.0"
        assert platform.client.auth.token_logins == 2
    finally:
        await platform.aclose()
        clock.close()


async def test_a_lost_create_is_outcome_unknown_and_never_resent(sim: TSHandle) -> None:
    platform, clock = _platform(sim)
    devices = _meters(sim, 3)
    try:
        sim.set_faults(error_rate=1.0, methods=["POST"], path_prefix="/api/fota/v1/upgrades")
        with pytest.raises(OutcomeUnknown, match="not sent again"):
            await platform.create_upgrade_task(
                kind=PackageKind.FIRMWARE, file_id=FIRMWARE, device_ids=devices, policy=TaskPolicy()
            )
        assert platform.call_counts()["POST /api/fota/v1/upgrades"] == 1
    finally:
        sim.clear_faults()
        await platform.aclose()
        clock.close()


async def test_throttled_calls_wait_and_succeed(sim: TSHandle) -> None:
    with run_thingspace_simulator(devices=50, groups=1, seed=2, clock="manual", rate_limit=3) as t:
        platform, clock = _platform(t)
        try:
            for _ in range(4):  # token, session, then firmware lists past 3 a minute
                await platform.get_package(FIRMWARE)
            assert sum(platform.call_counts().values()) > 6  # the 429s were retried
        finally:
            await platform.aclose()
            clock.close()


async def test_no_secret_or_token_in_debug_logs(
    sim: TSHandle, caplog: pytest.LogCaptureFixture
) -> None:
    platform, clock = _platform(sim)
    try:
        # httpx's own level too: an in-process CLI test may have left it at WARNING
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
            await platform.get_package(FIRMWARE)
            sim.expire_sessions()
            await platform.get_package(FIRMWARE)
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "HTTP Request" in text  # httpx logged the calls
        for secret in (sim.client_key, sim.client_secret, sim.password):
            assert secret not in text
        auth = platform.client.auth
        for held in (auth._token, auth._session):
            assert held is not None and held.value not in text
    finally:
        await platform.aclose()
        clock.close()
