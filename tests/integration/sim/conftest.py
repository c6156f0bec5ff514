"""Fixtures for the simulator conformance tests: a running simulator, a plain httpx client and
a receiver of push notifications."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from fleetwave.sim.testing import SimHandle, run_simulator

LOGIN = "/iocm/app/sec/v1.1.0/login"
REFRESH = "/iocm/app/sec/v1.1.0/refreshToken"
GROUPS = "/iocm/app/devgroup/v1.3.0/devGroups"
MEMBERS = "/iocm/app/dm/v1.2.0/devices/ids"
DEVICES = "/iocm/app/dm/v1.4.0/devices"
IODM = "/iodm/northbound/v1.5.0"
CATEGORY = f"{IODM}/category"
OPERATIONS = f"{IODM}/operations"
FW_UPGRADE = f"{OPERATIONS}/firmwareUpgrade"
SW_UPGRADE = f"{OPERATIONS}/softwareUpgrade"
SUBSCRIBE = "/iodm/app/sub/v1.1.0/subscribe"


class Api:
    """A plain httpx client that logs in and sends app_key + Bearer on every call."""

    def __init__(self, sim: SimHandle) -> None:
        self.sim = sim
        self.http = httpx.Client(base_url=sim.base_url, timeout=30.0)
        self.token: str | None = None
        self.refresh_token: str | None = None

    def login(self) -> dict[str, Any]:
        r = self.http.post(LOGIN, data={"appId": self.sim.app_id, "secret": self.sim.secret})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        self.token, self.refresh_token = body["accessToken"], body["refreshToken"]
        return body

    def headers(self) -> dict[str, str]:
        if self.token is None:
            self.login()
        return {"app_key": self.sim.app_id, "Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers(), **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, headers=self.headers(), **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = getattr(self, method)(path, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def package(self, model: str, kind: str, version: str) -> str:
        body = self.ok(
            "get",
            CATEGORY,
            params={"model": model, "fileType": f"{kind}Package", "version": version},
        )
        assert body["totalCount"] == 1, body
        return str(body["data"][0]["fileId"])

    def members(self, group_name: str, n: int = 10) -> list[str]:
        groups = self.ok("get", GROUPS, params={"name": group_name})
        gid = groups["list"][0]["id"]
        body = self.ok("get", MEMBERS, params={"devGroupId": gid, "pageNo": 0, "pageSize": n})
        return list(body["deviceIds"])

    def close(self) -> None:
        self.http.close()


def error_of(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    return r.status_code, body["error_code"]


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimHandle]:
    """One read-mostly simulator per module (real clock, no throttle)."""
    with run_simulator(devices=3000, groups=8, seed=7, rate_limit=0) as sim:
        yield sim


@pytest.fixture
def api(shared_sim: SimHandle) -> Iterator[Api]:
    a = Api(shared_sim)
    yield a
    a.close()


@pytest.fixture
def manual_sim() -> Iterator[SimHandle]:
    """A fresh simulator on a manual clock, no throttle, failure rate 0."""
    with run_simulator(
        devices=600, groups=6, seed=3, rate_limit=0, clock="manual", failure_rate=0.0
    ) as sim:
        yield sim


@pytest.fixture
def mapi(manual_sim: SimHandle) -> Iterator[Api]:
    a = Api(manual_sim)
    yield a
    a.close()


class Receiver:
    """An http.server on an ephemeral port that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.received):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; received {len(self.received)}: {self.received[:5]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
