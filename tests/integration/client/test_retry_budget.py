"""The retry budget is time, not a handful of tries: reads ride out an outage or token churn
longer than the old ~5 attempts, say what they wait for, and give up with a clear error
saying how long they tried. Against the simulator's fault injection on its own clock.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.errors import PlatformUnavailable
from fleetwave.platforms.iodm import IoDMPlatform, IoDMServerError, IoDMSettings
from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import SimHandle

from .conftest import Listener, SimClock, endpoint_calls, settings_for

DEVICE = "GET /iocm/app/dm/v1.4.0/devices/{deviceId}"
LOGGER = "fleetwave.platforms.iodm.client"


@pytest.mark.parametrize(
    "fault",
    [{"error_rate": 1.0}, {"drop_rate": 1.0}],
    ids=["http-500", "dropped-connection"],
)
async def test_a_read_survives_an_outage_longer_than_five_attempts(
    sim: SimHandle, fault: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(sim, rate_limit=0, backoff_base=1.0, backoff_cap=4.0)
    async with IoDMPlatform(settings, clock=SimClock(sim)) as platform:
        await platform.get_device("dev-00000000")  # logged in, token in hand
        sim.set_faults(methods=["GET"], count=9, **fault)  # 9 failures in a row, then healthy
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            device = await platform.get_device("dev-00000001")
    assert device.device_id == "dev-00000001"
    calls = endpoint_calls(sim, DEVICE)
    assert calls.get("200") == 2
    assert calls.get("500", 0) + calls.get("dropped", 0) == 9
    assert platform.call_counts()[DEVICE] == 11
    waits = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(waits) == 9
    assert "(attempt 9)" in waits[-1]
    for line in waits:  # what failed, what is awaited, how long, the budget left
        assert "GET /iocm/app/dm/v1.4.0/devices/dev-00000001" in line
        assert "waiting" in line and "retry budget left" in line
        assert sim.secret not in line


async def test_a_budget_shorter_than_the_outage_gives_up_saying_how_long_it_tried(
    sim: SimHandle,
) -> None:
    settings = settings_for(
        sim, rate_limit=0, backoff_base=1.0, backoff_cap=4.0, max_retry_seconds=20
    )
    async with IoDMPlatform(settings, clock=SimClock(sim)) as platform:
        await platform.get_device("dev-00000000")
        sim.set_faults(methods=["GET"], error_rate=1.0)  # down for good
        with pytest.raises(IoDMServerError) as caught:
            await platform.get_device("dev-00000001")
        tries = platform.call_counts()[DEVICE] - 1
    text = str(caught.value)
    assert f"gave up after {tries} attempts in" in text
    assert "retry budget 20 s, IODM_MAX_RETRY_SECONDS" in text
    assert endpoint_calls(sim, DEVICE) == {"200": 1, "500": tries}
    assert tries > 5  # more than the old fixed count, fewer than forever
    assert sim.secret not in text


async def test_token_churn_is_ridden_out_with_fresh_logins(sim: SimHandle) -> None:
    # Another client keeps logging in with the same appId: every token is revoked before
    # the next read. One re-login used to be all; now it re-logs in within the budget.
    settings = settings_for(sim, rate_limit=0, backoff_base=1.0, backoff_cap=4.0)
    async with IoDMPlatform(settings, clock=SimClock(sim)) as platform:
        await platform.get_device("dev-00000000")
        sim.set_faults(methods=["GET"], revoke_token_rate=1.0, count=3)
        device = await platform.get_device("dev-00000001")
        assert device.device_id == "dev-00000001"
        assert platform.client.auth.logins == 4  # the first one and one per revocation
    assert endpoint_calls(sim, DEVICE) == {"200": 2, "403": 3}


class Silent(Listener):
    """A server that accepts connections, reads the request and never answers."""

    def __init__(self) -> None:
        self.conns: list[socket.socket] = []
        super().__init__()

    def on_connection(self, conn: socket.socket) -> None:
        self.conns.append(conn)

    def close(self) -> None:
        super().close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    try:
        yield server
    finally:
        server.close()


async def test_a_server_that_never_answers_is_a_clear_error(
    silent: Silent, caplog: pytest.LogCaptureFixture
) -> None:
    settings = IoDMSettings(
        base_url=f"http://127.0.0.1:{silent.port}",
        app_id=DEMO_APP_ID,
        secret=DEMO_SECRET,
        rate_limit=0,
        read_timeout=0.2,
        max_attempts=2,
        backoff_cap=0.05,
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with IoDMPlatform(settings, clock=ManualClock()) as platform:
            with pytest.raises(PlatformUnavailable) as caught:
                await platform.get_device("dev-00000000")
    text = str(caught.value)
    host = f"127.0.0.1:{silent.port}"
    assert f"no answer from {host} within 0.2 s for POST /iocm/app/sec/v1.1.0/login" in text
    assert "gave up after 2 attempts" in text and "IODM_TIMEOUT" in text
    assert not text.startswith("ReadTimeout")
    assert DEMO_SECRET not in text
    waits = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(waits) == 1 and f"no answer from {host} within 0.2 s" in waits[0]
    assert "waiting" in waits[0] and "for the platform to answer" in waits[0]
