"""The ThingSpace test harness: run the simulator on an ephemeral port in a daemon thread and
drive its ``/sim/`` admin API (re-exported by :mod:`fleetwave.sim.testing`)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pendulum

from fleetwave.sim.linked_clock import parse_sim_time
from fleetwave.sim.thingspace.config import TSConfig
from fleetwave.sim.thingspace.server import TSServer

__all__ = ["TSHandle", "run_thingspace_simulator"]


class TSHandle:
    """A running ThingSpace simulator: where it is, its credentials, and its admin API."""

    def __init__(self, base_url: str, config: TSConfig) -> None:
        self.base_url = base_url
        self.config = config
        self.account = config.account
        self.client_key = config.client_key
        self.client_secret = config.client_secret
        self.username = config.username
        self.password = config.password
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(config.tls_cert)) if config.tls_cert else True
        )
        self._http = httpx.Client(base_url=base_url, timeout=30.0, verify=verify)

    def driver_env(self, *, rate_limit: int = 0, profile: str = "default") -> dict[str, str]:
        """The ThingSpace driver's environment variables pointing at this simulator with its
        account's credentials; ``rate_limit`` 0: no client-side pacing."""
        from fleetwave.platforms.thingspace.settings import ThingSpaceSettings

        settings = ThingSpaceSettings(
            base_url=self.base_url,
            key=self.client_key,
            secret=self.client_secret,
            username=self.username,
            password=self.password,
            account_name=self.account,
            rate_limit=rate_limit,
        )
        return settings.to_env(profile)

    def __repr__(self) -> str:
        return f"TSHandle({self.base_url!r}, account={self.account!r})"

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} failed: HTTP {resp.status_code} {resp.text}")
        return resp.json()

    def clock(self) -> pendulum.DateTime:
        return parse_sim_time(self._call("GET", "/sim/clock"))

    def advance(self, seconds: float) -> pendulum.DateTime:
        return parse_sim_time(self._call("POST", "/sim/clock/advance", json={"seconds": seconds}))

    def set_faults(self, **faults: Any) -> None:
        self._call("POST", "/sim/faults", json=faults)

    def clear_faults(self) -> None:
        self._call("POST", "/sim/faults", json={})

    def stats(self, *, requests: bool = True) -> dict[str, Any]:
        """Call counts, logins, callbacks and (unless ``requests=False``) every upgrade and
        campaign with ``device_request_counts`` per IMEI (GET /sim/stats)."""
        result: dict[str, Any] = self._call(
            "GET", "/sim/stats", params=None if requests else {"requests": "false"}
        )
        return result

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/sim/info")
        return result

    def device(self, imei: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/sim/devices/{imei}")
        return result

    def callbacks(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/sim/callbacks")
        return result

    def unlock(self) -> None:
        self._call("POST", "/sim/unlock")

    def expire_sessions(self) -> int:
        return int(self._call("POST", "/sim/sessions/expire")["expired"])

    def set_devices(self, **body: Any) -> None:
        """Failure rate / connectivity overrides by ``device_ids`` (IMEIs) or ``models``
        (POST /sim/devices); they apply to requests created afterwards."""
        self._call("POST", "/sim/devices", json=body)

    def set_failure_rate(self, rate: float) -> None:
        self._call("POST", "/sim/failure-rate", json={"rate": rate})

    def imeis(self, make_model: str | None = None) -> list[str]:
        """Every IMEI of the fleet (of one ``model``, e.g. ``WM-200``), in fleet order."""
        from fleetwave.sim.thingspace.catalog import luhn_digit

        info = self.info()
        out: list[str] = []
        for g in info["groups"]:
            if make_model is not None and g["model"] != make_model:
                continue
            first, last = int(g["first_imei"][8:14]), int(g["last_imei"][8:14])
            for serial in range(first, last + 1):
                body = g["first_imei"][:8] + f"{serial:06d}"
                out.append(body + str(luhn_digit(body)))
        return out

    def close(self) -> None:
        self._http.close()


@contextmanager
def run_thingspace_simulator(
    config: TSConfig | None = None, **overrides: Any
) -> Iterator[TSHandle]:
    """Serve a ThingSpace simulator on 127.0.0.1 with an ephemeral port; stop on exit."""
    config = dataclasses.replace(config or TSConfig(), **overrides)
    server = TSServer(config, "127.0.0.1", 0)
    server.start_in_thread()
    handle = TSHandle(server.base_url, config)
    try:
        yield handle
    finally:
        handle.close()
        server.stop()
