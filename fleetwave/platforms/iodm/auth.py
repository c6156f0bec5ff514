"""The IoDM access token: login, refresh before expiry, single-flight renewal, one re-login on 403.

IoDM keeps only the latest token of an app valid, so two concurrent logins make each
other's token useless. :class:`TokenManager` therefore renews under one lock: many
callers waiting on an expired or refused token cause exactly one login (or refresh), and
a caller that finds the token already renewed by someone else just uses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pendulum
from pydantic import ValidationError

from fleetwave.clock import Clock
from fleetwave.platforms.errors import AuthFailed, PlatformError, RequestRejected

from .errors import MalformedResponse
from .models import TokenResponse
from .redact import register_secret
from .settings import IoDMSettings

__all__ = ["LOGIN_PATH", "REFRESH_PATH", "TokenManager"]

log = logging.getLogger(__name__)

LOGIN_PATH = "/iocm/app/sec/v1.1.0/login"
REFRESH_PATH = "/iocm/app/sec/v1.1.0/refreshToken"

# (method, template, form data, json body) -> parsed JSON; the client's unauthenticated call
RawCall = Callable[[str, str, dict[str, str] | None, dict[str, Any] | None], Awaitable[Any]]


@dataclass(slots=True)
class _Token:
    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    expires_at: pendulum.DateTime
    renew_at: pendulum.DateTime


class TokenManager:
    """Owns the app's access token; ``token()`` returns a valid one, renewing when due."""

    def __init__(self, settings: IoDMSettings, clock: Clock, call: RawCall) -> None:
        self._settings = settings
        self._clock = clock
        self._call = call
        self._token: _Token | None = None
        self._lock: asyncio.Lock | None = None
        self.logins = 0
        self.refreshes = 0
        register_secret(settings.secret.get_secret_value())

    def _due(self, token: _Token) -> bool:
        return self._clock.now() >= token.renew_at

    async def token(self) -> str:
        """A token believed valid: the current one, or a fresh one if it is due to expire."""
        current = self._token
        if current is not None and not self._due(current):
            return current.access
        return await self._renew(seen=current.access if current else None, refused=False)

    async def refused(self, used: str) -> str:
        """The platform refused ``used`` (403 1010005): log in again unless someone already did."""
        return await self._renew(seen=used, refused=True)

    async def _renew(self, *, seen: str | None, refused: bool) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self._token
            if current is not None and current.access != seen and not self._due(current):
                return current.access  # renewed by another caller while we waited
            if not refused and current is not None and current.refresh:
                try:
                    return await self._refresh(current)
                except (AuthFailed, RequestRejected, MalformedResponse) as exc:
                    log.info("token refresh refused (%s); logging in again", type(exc).__name__)
            return await self._login()

    async def _login(self) -> str:
        s = self._settings
        log.info("logging in to IoDM at %s as app %s", s.base_url, s.app_id)
        self.logins += 1
        body = await self._call(
            "POST",
            LOGIN_PATH,
            {"appId": s.app_id, "secret": s.secret.get_secret_value()},
            None,
        )
        return self._store(body, LOGIN_PATH)

    async def _refresh(self, current: _Token) -> str:
        s = self._settings
        log.info("refreshing the IoDM access token of app %s", s.app_id)
        self.refreshes += 1
        body = await self._call(
            "POST",
            REFRESH_PATH,
            None,
            {
                "appId": s.app_id,
                "secret": s.secret.get_secret_value(),
                "refreshToken": current.refresh,
            },
        )
        return self._store(body, REFRESH_PATH)

    def _store(self, body: Any, path: str) -> str:
        try:
            answer = TokenResponse.model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"]) or "body"
            raise MalformedResponse(
                f"the platform's token answer is unusable (bad or missing: {fields}); "
                "check that IODM_BASE_URL points at the IoDM northbound API",
                method="POST",
                path=path,
            ) from None
        if not answer.access_token:
            raise PlatformError("the platform answered a login without an accessToken")
        register_secret(answer.access_token)
        register_secret(answer.refresh_token)
        expires_in = answer.expires_in if answer.expires_in > 0 else 3600
        margin = min(self._settings.token_refresh_margin, expires_in / 10)
        now = self._clock.now()
        self._token = _Token(
            access=answer.access_token,
            refresh=answer.refresh_token,
            expires_at=now.add(seconds=expires_in),
            renew_at=now.add(seconds=expires_in - margin),
        )
        return answer.access_token

    def __repr__(self) -> str:
        state = "none" if self._token is None else f"expires {self._token.expires_at}"
        return f"TokenManager(app_id={self._settings.app_id!r}, token={state})"
