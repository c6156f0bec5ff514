"""Fault injection and call accounting: the outermost ASGI layer of the simulator.

``POST /sim/faults`` configures a :class:`FaultController`; :class:`FaultASGI` applies it to
northbound requests (HTTP 500, added latency, dropped connections before or after the
request took effect, truncated JSON bodies, token revocation) and counts every
northbound call per endpoint template and status for ``GET /sim/stats``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI


class CallAccounting(Protocol):
    """What the fault layer needs of a simulator's state (IoDM's or ThingSpace's)."""

    def record_call(self, endpoint: str, status: str) -> None: ...

    def uncount_drop(self, endpoint: str) -> None: ...

    def revoke_token(self) -> None: ...


__all__ = ["FaultASGI", "FaultController", "FaultMiddleware"]

log = logging.getLogger(__name__)

#: The HTTP 500 body of an injected error on the IoDM simulator (the platform's error shape).
IODM_ERROR_BODY = json.dumps(
    {"error_code": "50252", "error_desc": "Internal server error."}
).encode()

_RATES = ("error_rate", "drop_rate", "malformed_rate", "revoke_token_rate")
_FIELDS = {*_RATES, "latency_ms", "methods", "path_prefix", "drop_after_commit", "count"}


@dataclass
class _Decision:
    latency_s: float = 0.0
    drop: bool = False
    drop_after_commit: bool = False
    error: bool = False
    malformed: bool = False
    revoke: bool = False


class FaultController:
    """The current fault set, deterministic per seed (a fresh RNG on every configure)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._faults: dict[str, Any] = {}
        self._remaining: int | None = None

    def configure(self, body: dict[str, Any]) -> None:
        """Replace the fault set; raises ValueError naming the bad field."""
        if body.get("__invalid__"):
            raise ValueError("the body must be a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown fault field(s) {unknown}; use {sorted(_FIELDS)}")
        for name in _RATES:
            v = body.get(name, 0.0)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, not {v!r}")
        latency = body.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise ValueError(f"latency_ms must be a number >= 0, not {latency!r}")
        methods = body.get("methods")
        if methods is not None and (
            not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)
        ):
            raise ValueError('methods must be a list like ["POST"] or null')
        prefix = body.get("path_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError("path_prefix must be a string or null")
        count = body.get("count")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            raise ValueError(f"count must be a whole number >= 0 or null, not {count!r}")
        with self._lock:
            self._faults = dict(body)
            self._faults["methods"] = [m.upper() for m in methods] if methods else None
            self._remaining = count
            self._rng = random.Random(self._seed)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            out = {name: self._faults.get(name, 0.0) for name in _RATES}
            out.update(
                latency_ms=self._faults.get("latency_ms", 0),
                methods=self._faults.get("methods"),
                path_prefix=self._faults.get("path_prefix"),
                drop_after_commit=bool(self._faults.get("drop_after_commit", False)),
                count=self._remaining,
            )
            return out

    def decide(self, method: str, path: str) -> _Decision | None:
        with self._lock:
            f = self._faults
            if not f:
                return None
            if f.get("methods") and method.upper() not in f["methods"]:
                return None
            if f.get("path_prefix") and not path.startswith(f["path_prefix"]):
                return None
            if self._remaining is not None:
                if self._remaining <= 0:
                    return None
                self._remaining -= 1
            rng = self._rng
            d = _Decision(latency_s=float(f.get("latency_ms", 0)) / 1000.0)
            d.revoke = rng.random() < f.get("revoke_token_rate", 0.0)
            d.drop = rng.random() < f.get("drop_rate", 0.0)
            d.drop_after_commit = bool(f.get("drop_after_commit", False))
            d.error = rng.random() < f.get("error_rate", 0.0)
            d.malformed = rng.random() < f.get("malformed_rate", 0.0)
            return d


def _drop_connection(receive: Receive) -> bool:
    """Close the TCP connection under this request without a response (uvicorn's cycle)."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        log.warning("cannot drop the connection: the ASGI server exposes no transport")
        return False
    # Mark the cycle disconnected first so uvicorn does not try to answer a 500 afterwards.
    cycle.disconnected = True  # type: ignore[union-attr]
    transport.abort()
    return True


class FaultASGI:
    """ASGI middleware applying a :class:`FaultController` and counting northbound calls."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        owner: FastAPI,
        state: CallAccounting,
        controller: FaultController,
        error_body: bytes = IODM_ERROR_BODY,
    ) -> None:
        self.app = app
        self.error_body = error_body
        self.owner = owner
        self.state = state
        self.controller = controller

    def _template(self, scope: Scope) -> str:
        for route in self.owner.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        return f"{scope['method']} (unknown path)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/sim/"):
            await self.app(scope, receive, send)
            return
        endpoint = self._template(scope)
        decision = self.controller.decide(scope["method"], scope["path"])
        record = self.state.record_call
        if decision is None:
            await self._passthrough(scope, receive, send, endpoint)
            return
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        if decision.revoke:
            self.state.revoke_token()
        if decision.drop and not decision.drop_after_commit:
            record(endpoint, "dropped")
            if _drop_connection(receive):
                return
            self.state.uncount_drop(endpoint)
            decision.drop = False
        if decision.error:
            record(endpoint, "500")
            await _send_simple(send, 500, self.error_body)
            return
        if not (decision.drop or decision.malformed):
            await self._passthrough(scope, receive, send, endpoint)
            return
        # Run the request to completion (it takes effect), holding back the response.
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        if decision.drop:
            record(endpoint, "dropped")
            if _drop_connection(receive):
                return
            self.state.uncount_drop(endpoint)
        body = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        truncated = body[: max(1, len(body) // 2)] if len(body) > 1 else b"{"
        record(endpoint, "200")
        await _send_simple(send, 200, truncated)

    async def _passthrough(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        # Count the call before its response goes out: a client that reads /sim/stats right
        # after the response must already see it.
        recorded = False

        async def counting_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.state.record_call(endpoint, str(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not recorded:
                self.state.record_call(endpoint, "500")


async def _send_simple(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class FaultMiddleware:
    """Installs :class:`FaultASGI` on an app and returns its controller."""

    @staticmethod
    def install(
        app: FastAPI, state: Any, *, error_body: bytes = IODM_ERROR_BODY
    ) -> FaultController:
        """``state`` has ``config.seed``, ``record_call``, ``uncount_drop``, ``revoke_token``;
        ``error_body`` is the platform's HTTP 500 body."""
        controller = FaultController(state.config.seed)
        app.add_middleware(
            FaultASGI, owner=app, state=state, controller=controller, error_body=error_body
        )
        return controller
