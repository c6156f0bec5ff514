"""The webhook receiver: a FastAPI app on ``POST /notify/{token}`` served by uvicorn in a thread.

Only a request whose path carries the channel's token is read: anything else gets 401.
A body that is not one of the four upgrade notifications gets 400, a full queue 503, and
no request, however malformed, escapes as an unhandled error. Access logs stay off because
the request line carries the token.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pendulum
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from fleetwave.notify.events import NotificationError, PushEvent, parse_notification

__all__ = ["CALLBACK_PREFIX", "ReceiverCounters", "ReceiverServer", "create_receiver_app"]

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "/notify/"


@dataclass(slots=True)
class ReceiverCounters:
    """Requests seen by the receiver, by outcome (updated from the server thread)."""

    accepted: int = 0
    unauthorized: int = 0
    malformed: int = 0
    too_large: int = 0
    overloaded: int = 0
    errors: int = 0


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_receiver_app(
    *,
    token: str,
    sink: Callable[[PushEvent], bool],
    now: Callable[[], pendulum.DateTime],
    counters: ReceiverCounters | None = None,
    max_body_bytes: int = 65_536,
) -> FastAPI:
    """The receiver app. ``sink`` queues one event (False: queue full); ``now`` stamps arrival."""
    expected = token.encode()
    tally = counters if counters is not None else ReceiverCounters()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return None
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > max_body_bytes:
                return None
        return bytes(body)

    @app.post(CALLBACK_PREFIX + "{given}")
    async def notify(given: str, request: Request) -> Response:
        if not secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected):
            tally.unauthorized += 1
            return _error(401, "unknown callback token")
        try:
            try:
                raw = await read_body(request)
            except ClientDisconnect:
                tally.malformed += 1
                return _error(400, "the client went away before sending the whole body")
            if raw is None:
                tally.too_large += 1
                return _error(413, f"the body is larger than {max_body_bytes} bytes")
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                tally.malformed += 1
                return _error(400, f"the body is not JSON: {type(exc).__name__}")
            try:
                event = parse_notification(body, received_at=now())
            except NotificationError as exc:
                tally.malformed += 1
                return _error(400, str(exc))
            if not sink(event):
                tally.overloaded += 1
                return _error(503, "the receiver is busy; retry later")
            tally.accepted += 1
            return Response(status_code=200)
        except Exception:  # never let one request take the receiver down
            tally.errors += 1
            log.exception("the push receiver failed on one request")
            return _error(500, "internal error")

    @app.api_route(
        "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    )
    async def everything_else(rest: str) -> Response:
        tally.unauthorized += 1
        return _error(401, "this endpoint needs the callback token in its path")

    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the push receiver cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    return sock


class ReceiverServer:
    """uvicorn serving one app on a socket bound at construction (so the port is known)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.sock = _bind(host, port)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,  # the request line carries the token
                lifespan="off",
                server_header=False,
                timeout_keep_alive=30,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def local_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self.server.should_exit

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name=f"fleetwave-notify-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"the push receiver did not start on {self.local_url}")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()
