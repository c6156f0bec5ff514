"""Fixtures for the IoDM client suite: a simulator per test, settings, a sim-linked clock,
and raw TCP listeners that stand in for servers that misbehave."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from fleetwave.platforms.iodm import IoDMSettings, reset_limiters
from fleetwave.sim.testing import SimHandle, run_simulator


class SimClock:
    """A Clock on the simulator's manual clock: ``sleep(s)`` moves it to start + s.

    Concurrent sleepers share one timeline (each advances only to its own wake-up time),
    like real time, instead of adding their sleeps up.
    """

    def __init__(self, sim: SimHandle) -> None:
        self.sim = sim

    def now(self) -> pendulum.DateTime:
        return self.sim.clock()

    async def sleep(self, seconds: float) -> None:
        target = (await asyncio.to_thread(self.sim.clock)).add(
            microseconds=int(max(0.0, seconds) * 1_000_000)
        )
        current = await asyncio.to_thread(self.sim.clock)
        gap = (target - current).total_seconds()
        if gap > 0:
            await asyncio.to_thread(self.sim.advance, gap)
        await asyncio.sleep(0)


def settings_for(sim: SimHandle, **overrides: Any) -> IoDMSettings:
    """Client settings for a simulator; tests pass small backoffs to stay fast."""
    values: dict[str, Any] = {
        "base_url": sim.base_url,
        "app_id": sim.app_id,
        "secret": sim.secret,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
    }
    values.update(overrides)
    return IoDMSettings(**values)


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    reset_limiters()
    yield
    reset_limiters()


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=1000, groups=4, rate_limit=0, clock="manual") as handle:
        yield handle


def endpoint_calls(sim: SimHandle, endpoint: str) -> dict[str, int]:
    calls: dict[str, dict[str, int]] = sim.stats(tasks=False)["calls"]
    return calls.get(endpoint, {})


class Listener:
    """A TCP listener on a free 127.0.0.1 port whose thread hands every accepted connection
    to :meth:`on_connection` (subclasses say what to do with it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on_connection(self, conn: socket.socket) -> None:
        conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.on_connection(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
