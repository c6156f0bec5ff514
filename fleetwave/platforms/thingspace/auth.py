"""ThingSpace credentials: the OAuth2 token and the M2M session token, renewed single-flight.

Every FOTA call needs both: ``Authorization: Bearer <token>`` from ``POST
/api/ts/v1/oauth2/token`` (client credentials, about an hour) and ``VZ-M2M-Token`` from
``POST /api/m2m/v1/session/login`` (expires after 20 minutes unused). :class:`Credentials`
renews each before it is due, under one lock, so many callers cause one login; a login
the platform refuses is *not* tried again by itself (five failed M2M logins lock the
account): the refusal is remembered and every later call fails at once with it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum

from fleetwave.clock import Clock
from fleetwave.platforms.errors import AuthFailed, PlatformError
from fleetwave.platforms.redact import register_secret

from .errors import LoginRefused, MalformedResponse
from .settings import ThingSpaceSettings

__all__ = ["SESSION_PATH", "TOKEN_PATH", "Credentials"]

log = logging.getLogger(__name__)

TOKEN_PATH = "/api/ts/v1/oauth2/token"
SESSION_PATH = "/api/m2m/v1/session/login"

# (method, path, headers, form, json body) -> parsed JSON: the client's credential call
RawCall = Callable[
    [str, str, dict[str, str], dict[str, str] | None, dict[str, Any] | None], Awaitable[Any]
]


@dataclass(slots=True)
class _Held:
    value: str = field(repr=False)
    renew_at: pendulum.DateTime


class Credentials:
    """Owns the OAuth token and the M2M session of one account; ``headers()`` gives both."""

    def __init__(self, settings: ThingSpaceSettings, clock: Clock, call: RawCall) -> None:
        self._s = settings
        self._clock = clock
        self._call = call
        self._token: _Held | None = None
        self._session: _Held | None = None
        self._lock: asyncio.Lock | None = None
        self._refusal: AuthFailed | None = None
        self.token_logins = 0
        self.session_logins = 0
        for value in (settings.key, settings.secret.get_secret_value()):
            register_secret(value)
        register_secret(settings.password.get_secret_value())

    def _fresh(self, held: _Held | None) -> bool:
        return held is not None and self._clock.now() < held.renew_at

    async def headers(self) -> dict[str, str]:
        """Both auth headers, renewing whichever is due; raises the remembered refusal."""
        if self._refusal is not None:
            raise self._refusal
        token, session = self._token, self._session
        if not (self._fresh(token) and self._fresh(session)):
            await self._renew(seen_token=None, seen_session=None)
            token, session = self._token, self._session
        assert token is not None and session is not None
        self._touch(session)
        return {"Authorization": f"Bearer {token.value}", "VZ-M2M-Token": session.value}

    def _touch(self, session: _Held) -> None:
        """A session expires after ``session_idle_seconds`` *unused*: every use extends it."""
        session.renew_at = self._clock.now().add(
            seconds=max(0.0, self._s.session_idle_seconds - self._s.session_margin)
        )

    async def refused(self, headers: dict[str, str], *, token: bool, session: bool) -> None:
        """The platform refused the token or the session sent in ``headers``: renew that
        one, unless another caller already did."""
        seen_token = headers.get("Authorization", "").removeprefix("Bearer ") if token else None
        seen_session = headers.get("VZ-M2M-Token") if session else None
        await self._renew(seen_token=seen_token, seen_session=seen_session)

    async def _renew(self, *, seen_token: str | None, seen_session: str | None) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._refusal is not None:
                raise self._refusal
            token = self._token
            if token is None or not self._fresh(token) or token.value == seen_token:
                await self._login_token()
            session = self._session
            if session is None or not self._fresh(session) or session.value == seen_session:
                await self._login_session()

    async def _login_token(self) -> None:
        s = self._s
        log.info("requesting a ThingSpace OAuth token at %s", s.base_url)
        self.token_logins += 1
        basic = base64.b64encode(f"{s.key}:{s.secret.get_secret_value()}".encode()).decode()
        register_secret(basic)
        body = await self._guarded(
            TOKEN_PATH,
            {"Authorization": f"Basic {basic}"},
            {"grant_type": "client_credentials"},
            None,
            "THINGSPACE_KEY and THINGSPACE_SECRET",
        )
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise MalformedResponse(
                "the OAuth token answer has no access_token; check that THINGSPACE_BASE_URL "
                "points at ThingSpace",
                method="POST",
                path=TOKEN_PATH,
            )
        register_secret(value)
        try:
            expires_in = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        margin = min(s.token_refresh_margin, expires_in / 10)
        self._token = _Held(value, self._clock.now().add(seconds=max(1.0, expires_in - margin)))

    async def _login_session(self) -> None:
        s, token = self._s, self._token
        assert token is not None
        log.info("starting a ThingSpace M2M session as %s", s.username)
        self.session_logins += 1
        body = await self._guarded(
            SESSION_PATH,
            {"Authorization": f"Bearer {token.value}"},
            None,
            {"username": s.username, "password": s.password.get_secret_value()},
            "THINGSPACE_USERNAME and THINGSPACE_PASSWORD",
        )
        value = body.get("sessionToken") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise MalformedResponse(
                "the M2M session answer has no sessionToken; check that THINGSPACE_BASE_URL "
                "points at ThingSpace",
                method="POST",
                path=SESSION_PATH,
            )
        register_secret(value)
        held = _Held(value, self._clock.now())
        self._touch(held)
        self._session = held

    async def _guarded(
        self,
        path: str,
        headers: dict[str, str],
        form: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        check: str,
    ) -> Any:
        """One login call; a refusal is remembered and never replayed automatically."""
        try:
            return await self._call("POST", path, headers, form, json_body)
        except AuthFailed as exc:
            self._remember(exc, path, check)
        except PlatformError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                self._remember(exc, path, check)
            raise

    def _remember(self, exc: PlatformError, path: str, check: str) -> None:
        refusal = LoginRefused(
            f"ThingSpace refused the login at {path}; fleetwave will not try again in this "
            f"process (five failed logins lock the account): check {check}",
            status_code=exc.status_code,
            code=exc.code,
            description=exc.description,
            method="POST",
            path=path,
        )
        self._refusal = refusal
        raise refusal from None

    def __repr__(self) -> str:
        return f"Credentials(account={self._s.account_name!r})"
