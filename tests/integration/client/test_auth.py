"""Token lifecycle on the simulator: expiry mid-listing, refresh, supersession, single-flight."""

from __future__ import annotations

import asyncio

import httpx

from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.testing import SimHandle

from .conftest import SimClock, endpoint_calls, settings_for

DEVICES = "GET /iocm/app/dm/v1.4.0/devices"
DEVICE = "GET /iocm/app/dm/v1.4.0/devices/{deviceId}"
REFRESH = "POST /iocm/app/sec/v1.1.0/refreshToken"


async def test_token_expiry_in_the_middle_of_a_paged_listing_relogs_once(sim: SimHandle) -> None:
    # The client runs on real time, so only the platform knows the token expired:
    # the next page is refused (403 1010005), the client logs in once and replays it.
    async with IoDMPlatform(settings_for(sim)) as platform:
        seen: list[str] = []
        async for device in platform.devices():
            seen.append(device.device_id)
            if len(seen) == 260:  # inside the second page of 250
                sim.advance(3601)
        assert len(seen) == 1000
        assert len(set(seen)) == 1000
        assert sim.stats(tasks=False)["logins"] == 2
        assert endpoint_calls(sim, DEVICES) == {"200": 4, "403": 1}
        assert platform.client.auth.logins == 2


async def test_token_refreshed_before_expiry_when_the_clock_says_so(sim: SimHandle) -> None:
    # The client shares the simulator's clock: it sees the token is due and refreshes
    # with the refreshToken before the platform would refuse it; no 403, no second login.
    async with IoDMPlatform(settings_for(sim), clock=SimClock(sim)) as platform:
        seen = []
        async for device in platform.devices():
            seen.append(device.device_id)
            if len(seen) == 300:
                sim.advance(3500)  # 100 s left, inside the 300 s refresh margin
        assert len(set(seen)) == 1000
        stats = sim.stats(tasks=False)
        assert stats["logins"] == 1
        assert endpoint_calls(sim, REFRESH) == {"200": 1}
        assert "403" not in endpoint_calls(sim, DEVICES)


async def test_token_superseded_by_another_login_is_replaced(sim: SimHandle) -> None:
    async with IoDMPlatform(settings_for(sim)) as platform:
        first = await platform.get_device("dev-00000001")
        # someone else logs in with the same app: our token is no longer the latest
        answer = httpx.post(
            f"{sim.base_url}/iocm/app/sec/v1.1.0/login",
            data={"appId": sim.app_id, "secret": sim.secret},
        )
        assert answer.status_code == 200
        again = await platform.get_device("dev-00000001")
        assert again == first
        assert sim.stats(tasks=False)["logins"] == 3
        assert endpoint_calls(sim, DEVICE) == {"200": 2, "403": 1}
        assert platform.client.call_counts()[DEVICE] == 3


async def test_fifty_concurrent_calls_on_an_expired_token_cause_exactly_one_login(
    sim: SimHandle,
) -> None:
    # rate_limit=0: the burst of 50 calls + 50 replays must not wait for the next minute
    async with IoDMPlatform(settings_for(sim, rate_limit=0)) as platform:
        await platform.get_device("dev-00000000")
        assert sim.stats(tasks=False)["logins"] == 1
        sim.advance(4000)
        ids = [f"dev-{i:08d}" for i in range(50)]
        devices = await asyncio.gather(*(platform.get_device(d) for d in ids))
        assert [d.device_id for d in devices] == ids
        assert sim.stats(tasks=False)["logins"] == 2  # exactly one new login
        calls = endpoint_calls(sim, DEVICE)
        assert calls["200"] == 51
        assert 1 <= calls.get("403", 0) <= 50


async def test_fifty_concurrent_calls_with_a_due_token_cause_exactly_one_refresh(
    sim: SimHandle,
) -> None:
    async with IoDMPlatform(settings_for(sim, rate_limit=0), clock=SimClock(sim)) as platform:
        await platform.get_device("dev-00000000")
        sim.advance(3550)
        devices = await asyncio.gather(*(platform.get_device(f"dev-{i:08d}") for i in range(50)))
        assert len(devices) == 50
        assert sim.stats(tasks=False)["logins"] == 1
        assert endpoint_calls(sim, REFRESH) == {"200": 1}
        assert "403" not in endpoint_calls(sim, DEVICE)


async def test_wrong_secret_is_a_clear_auth_error(sim: SimHandle) -> None:
    from fleetwave.platforms.errors import AuthFailed

    async with IoDMPlatform(settings_for(sim, secret="not-the-secret")) as platform:
        try:
            await platform.get_device("dev-00000000")
        except AuthFailed as exc:
            text = str(exc)
            assert "100208" in text
            assert "IODM_SECRET" in text
            assert "POST /iocm/app/sec/v1.1.0/login" in text
        else:
            raise AssertionError("a wrong secret must raise AuthFailed")
