"""The webhook receiver: a FastAPI app on ``POST /notify/{token}`` served by uvicorn in a thread.

Only a request whose path carries the channel's token is read: anything else gets 401.
The body is parsed by the platform's parser (``Platform.parse_push``); one it cannot
understand gets 400 with the parser's message, a full queue 503, and
no request, however malformed, escapes as an unhandled error. Access logs stay off because
the request line carries the token.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pendulum
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from fleetwave.notify.events import PushParseError, PushParser, UpgradeEvent
from fleetwave.serving import ThreadedServer

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
    parse: PushParser,
    sink: Callable[[UpgradeEvent], bool],
    now: Callable[[], pendulum.DateTime],
    counters: ReceiverCounters | None = None,
    max_body_bytes: int = 65_536,
) -> FastAPI:
    """The receiver app. ``parse`` turns a body into events (the platform's parser),
    ``sink`` queues one event (False: queue full); ``now`` stamps arrival."""
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
                events = parse(raw)
            except PushParseError as exc:
                tally.malformed += 1
                return _error(400, str(exc))
            arrived = now()
            for event in events:
                if not sink(dataclasses.replace(event, received_at=arrived)):
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


class ReceiverServer(ThreadedServer):
    """uvicorn serving the receiver app on a socket bound at construction (port known)."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        super().__init__(
            app,
            host,
            port,
            name="push receiver",
            backlog=1024,
            lifespan="off",
            server_header=False,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
        )

    @property
    def local_url(self) -> str:
        return self.url

    def start(self, timeout: float = 30.0) -> None:
        self.start_in_thread(timeout)
