"""The test harness: run a simulator in-process on an ephemeral port and drive its admin API.

``with run_simulator(devices=200, clock="manual") as sim:`` gives a :class:`SimHandle`
with the base URL, the credentials, and thin wrappers over ``/sim/`` (clock, faults,
device overrides, statistics). Usable from sync and async tests alike. With
``tls_cert=``/``tls_key=`` it serves HTTPS (``sim.base_url`` starts with ``https://``).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pendulum

from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET, SimConfig
from fleetwave.sim.linked_clock import parse_sim_time
from fleetwave.sim.server import SimServer

__all__ = ["DEMO_APP_ID", "DEMO_SECRET", "SimConfig", "SimHandle", "run_simulator"]


class SimHandle:
    """A running simulator: where it is, whom it lets in, and its admin API."""

    def __init__(self, base_url: str, config: SimConfig) -> None:
        self.base_url = base_url
        self.app_id = config.app_id
        self.secret = config.secret
        self.config = config
        # over HTTPS the admin API trusts the served certificate itself (self-signed in tests)
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(config.tls_cert)) if config.tls_cert else True
        )
        self._http = httpx.Client(base_url=base_url, timeout=30.0, verify=verify)

    def __repr__(self) -> str:
        return f"SimHandle({self.base_url!r}, app_id={self.app_id!r})"

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} failed: HTTP {resp.status_code} {resp.text}")
        return resp.json()

    def clock(self) -> pendulum.DateTime:
        """The simulator's now (GET /sim/clock)."""
        return parse_sim_time(self._call("GET", "/sim/clock"))

    def advance(self, seconds: float) -> pendulum.DateTime:
        """Move a manual clock forward (POST /sim/clock/advance) and return the new now."""
        return parse_sim_time(self._call("POST", "/sim/clock/advance", json={"seconds": seconds}))

    def set_faults(self, **faults: Any) -> None:
        """Replace the fault set (POST /sim/faults); see the README for the fields."""
        self._call("POST", "/sim/faults", json=faults)

    def clear_faults(self) -> None:
        self._call("POST", "/sim/faults", json={})

    def set_devices(self, **body: Any) -> None:
        """Failure probability / connectivity overrides (POST /sim/devices)."""
        self._call("POST", "/sim/devices", json=body)

    def stats(self, *, tasks: bool = True) -> dict[str, Any]:
        """Call counts, tasks created and per-device task counts (GET /sim/stats)."""
        params = None if tasks else {"tasks": "false"}
        result: dict[str, Any] = self._call("GET", "/sim/stats", params=params)
        return result

    def close(self) -> None:
        self._http.close()


@contextmanager
def run_simulator(config: SimConfig | None = None, **overrides: Any) -> Iterator[SimHandle]:
    """Serve a simulator on 127.0.0.1 with an ephemeral port in a daemon thread; stop on exit."""
    config = dataclasses.replace(config or SimConfig(), **overrides)
    server = SimServer(config, "127.0.0.1", 0)
    server.start_in_thread()
    handle = SimHandle(server.base_url, config)
    try:
        yield handle
    finally:
        handle.close()
        server.stop()
