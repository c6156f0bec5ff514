"""Fixtures for the ThingSpace simulator's behaviour tests: a running simulator on a manual
clock, an httpx client that holds a token and a session, and a callback receiver."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pendulum
import pytest

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator

V1 = "/api/fota/v1"
V2 = "/api/fota/v2"
TOKEN = "/api/ts/v1/oauth2/token"
LOGIN = "/api/m2m/v1/session/login"
SW_METERS = "SW_Aquaflow_WM-200_2.0.1To2.1.0"
FW_SENSORS = "FOTA_Sensorix_NBS-10_3.1.0To3.2.0"


class Client:
    """A plain HTTP client of the simulator with a token and a session."""

    def __init__(self, ts: TSHandle) -> None:
        self.ts = ts
        # TCP_NODELAY: a POST's headers and body leave at once (no Nagle/delayed-ACK stall)
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        self.http = httpx.Client(base_url=ts.base_url, timeout=30.0, transport=transport)
        self.headers: dict[str, str] = {}
        self.login()

    def login(self) -> None:
        token = self.http.post(
            TOKEN,
            auth=(self.ts.client_key, self.ts.client_secret),
            data={"grant_type": "client_credentials"},
        )
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        session = self.http.post(
            LOGIN,
            headers=self.headers,
            json={"username": self.ts.username, "password": self.ts.password},
        )
        session.raise_for_status()
        self.headers["VZ-M2M-Token"] = session.json()["sessionToken"]

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.call(method, path, **kw)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def close(self) -> None:
        self.http.close()


def day(ts: TSHandle, offset: int = 0) -> str:
    return (ts.clock() + pendulum.duration(days=offset)).date().isoformat()


def campaign_body(ts: TSHandle, devices: list[str], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "campaignName": "it",
        "softwareName": SW_METERS,
        "softwareFrom": "2.0.1",
        "softwareTo": "2.1.0",
        "distributionType": "HTTP",
        "startDate": day(ts),
        "endDate": day(ts, 2),
        "deviceList": devices,
    }
    body.update(over)
    return body


def free_devices(ts: TSHandle, model: str, kind: str, version: str, n: int) -> list[str]:
    """``n`` IMEIs of ``model`` on ``version`` of ``kind``, in no request yet."""
    busy = set(ts.stats()["device_request_counts"])
    out: list[str] = []
    for imei in ts.imeis(model):
        if imei in busy:
            continue
        dev = ts.device(imei)
        versions = {s["name"].rsplit("-", 1)[-1]: s["version"] for s in dev["softwareList"]}
        if dev["fotaEligible"] and versions[kind] == version:
            out.append(imei)
            if len(out) == n:
                return out
    raise AssertionError(f"not {n} free {model} devices on {kind} {version}")


@pytest.fixture
def ts() -> Iterator[TSHandle]:
    with run_thingspace_simulator(
        devices=400, groups=5, clock="manual", rate_limit=0, allow_http_callbacks=True
    ) as handle:
        yield handle


@pytest.fixture
def client(ts: TSHandle) -> Iterator[Client]:
    c = Client(ts)
    yield c
    c.close()


class Receiver:
    """An HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS."""
        self.bodies: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length))
                with outer.cond:
                    outer.bodies.append(body)
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/callbacks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: predicate(self.bodies), timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
