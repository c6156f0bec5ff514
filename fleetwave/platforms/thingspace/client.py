"""The ThingSpace HTTP client: auth headers, the shared call budget, retries, errors, counts.

Every call passes the account's rate limiter (``THINGSPACE_RATE_LIMIT`` calls a minute,
shared by every client of the same base URL and key in the process), carries the OAuth
and M2M session headers (see ``auth``), and is counted per endpoint template. GETs and
other replay-safe calls are retried with exponential backoff and full jitter on
connection errors, timeouts, 5xx and unreadable bodies, for ``max_retry_seconds``; every
call is retried after a throttling answer (nothing was done) and once after a refused
token or session (with fresh ones). A create whose request may have reached ThingSpace
raises :class:`OutcomeUnknown` instead of being sent again.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from fleetwave.clock import Clock, RealClock
from fleetwave.platforms import limiter as _neutral
from fleetwave.platforms.errors import OutcomeUnknown, PlatformError, Throttled
from fleetwave.platforms.limiter import reset_limiters
from fleetwave.platforms.redact import install_redaction

from .auth import Credentials
from .errors import (
    MalformedResponse,
    SessionExpired,
    ThingSpaceConnectionError,
    TokenExpired,
    error_fields,
    error_for,
    is_session_refusal,
    is_token_refusal,
)
from .settings import ThingSpaceSettings

__all__ = ["ThingSpaceClient", "get_limiter", "reset_limiters"]

log = logging.getLogger(__name__)

_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "fleetwave.platforms.thingspace",
    "fleetwave.platforms.thingspace.client",
    "fleetwave.platforms.thingspace.auth",
    "fleetwave.platforms.thingspace.adapter",
    "fleetwave.platforms.limiter",
)

# raised before a single byte of the request left: always safe to try again
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class RateLimiter(_neutral.RateLimiter):
    """The call budget of one ThingSpace API key (waits logged naming THINGSPACE_RATE_LIMIT)."""

    owner = "account"
    setting = "THINGSPACE_RATE_LIMIT"


def get_limiter(key: tuple[str, str], per_minute: int, clock: Clock) -> _neutral.RateLimiter:
    """The process-wide limiter of one (base URL, key) and clock; the smaller budget wins."""
    return _neutral.get_limiter(("thingspace", *key), per_minute, clock=clock, factory=RateLimiter)


def _ssl_context(settings: ThingSpaceSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)
    if settings.client_cert and settings.client_key:
        ctx.load_cert_chain(str(settings.client_cert), str(settings.client_key))
    return ctx


def fill(template: str, path_params: Mapping[str, str] | None) -> str:
    """``template`` with each ``{name}`` replaced by its URL-quoted value."""
    path = template
    for name, value in (path_params or {}).items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


class ThingSpaceClient:
    """Async ThingSpace client for one account; ``aclose()`` when done."""

    def __init__(
        self,
        settings: ThingSpaceSettings,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        install_redaction(_LOGGERS)
        self.settings = settings
        self.clock: Clock = clock or RealClock()
        self.limiter = get_limiter(settings.limiter_key, settings.rate_limit, self.clock)
        self._rng = rng or random.Random()
        try:
            verify = _ssl_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise PlatformError(
                "cannot load the TLS files (THINGSPACE_CA_BUNDLE / THINGSPACE_CLIENT_CERT / "
                f"THINGSPACE_CLIENT_KEY): {exc}; check they are PEM files and the key matches"
            ) from None
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self.auth = Credentials(settings, self.clock, self._credential_call)
        self._counts: Counter[str] = Counter()

    # -- public -------------------------------------------------------------------------

    async def get(
        self,
        template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """GET a JSON document (replay-safe)."""
        return await self._call("GET", template, path_params=path_params, params=params)

    async def send(
        self,
        method: str,
        template: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        path_params: Mapping[str, str] | None = None,
        replay_safe: bool = False,
    ) -> Any:
        """A call that changes ThingSpace; unless ``replay_safe`` it is never sent twice."""
        return await self._call(
            method,
            template,
            path_params=path_params,
            json_body=None if json_body is None else dict(json_body),
            replay_safe=replay_safe,
        )

    def call_counts(self) -> dict[str, int]:
        """HTTP attempts per endpoint template, retries and logins included."""
        return dict(self._counts)

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        s = self.settings
        return f"ThingSpaceClient(base_url={s.base_url!r}, account={s.account_name!r})"

    # -- internals ----------------------------------------------------------------------

    async def _credential_call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        form: dict[str, str] | None,
        json_body: dict[str, Any] | None,
    ) -> Any:
        return await self._call(
            method, path, headers=headers, form=form, json_body=json_body, authed=False
        )

    async def _call(
        self,
        method: str,
        template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authed: bool = True,
        replay_safe: bool | None = None,
    ) -> Any:
        s = self.settings
        # a login is retried only where it certainly was not checked (not sent, 5xx,
        # throttled); a lost answer or a refusal is never replayed (five failures lock)
        safe = (method == "GET" or not authed) if replay_safe is None else replay_safe
        path = fill(template, path_params)
        label = f"{method} {template}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        started = self.clock.now()
        attempts = 0
        fresh_token = fresh_session = False
        while True:
            sent_headers = dict(headers or {})
            if authed:
                sent_headers.update(await self.auth.headers())
            await self.limiter.acquire()
            self._counts[label] += 1
            attempts += 1
            try:
                response = await self._http.request(
                    method, path, params=query or None, json=json_body, data=form,
                    headers=sent_headers,
                )  # fmt: skip
            except httpx.TransportError as exc:
                what = f"{type(exc).__name__} talking to {s.base_url} for {method} {path}"
                if not authed and not isinstance(exc, _NOT_SENT):
                    raise ThingSpaceConnectionError(
                        f"{what}; a login whose answer was lost is not retried blindly (five "
                        "failed logins lock the account); check THINGSPACE_BASE_URL and the "
                        "network",
                        method=method,
                        path=path,
                    ) from exc
                if not isinstance(exc, _NOT_SENT) and not safe:
                    raise OutcomeUnknown(
                        f"{what} after the request was sent, so ThingSpace may or may not have "
                        "done it; it is not sent again: reconcile through the upgrade lists",
                        method=method,
                        path=path,
                    ) from exc
                if not await self._wait(started, attempts, what, method, path):
                    raise ThingSpaceConnectionError(
                        f"{what}; gave up after {attempts} attempts (retry budget "
                        f"{s.max_retry_seconds:g} s, THINGSPACE_MAX_RETRY_SECONDS); check "
                        "THINGSPACE_BASE_URL, the network and the TLS settings",
                        method=method,
                        path=path,
                    ) from exc
                continue

            status = response.status_code
            if 200 <= status < 300:
                try:
                    return _json(response)
                except ValueError:
                    if not safe:
                        raise OutcomeUnknown(
                            f"ThingSpace answered HTTP {status} with an unreadable body to a call "
                            "that changes it; reconcile through the upgrade lists",
                            status_code=status,
                            method=method,
                            path=path,
                        ) from None
                    if not await self._wait(started, attempts, "unreadable body", method, path):
                        raise MalformedResponse(
                            "ThingSpace kept answering with unreadable JSON; check "
                            "THINGSPACE_BASE_URL points at ThingSpace",
                            status_code=status,
                            method=method,
                            path=path,
                        ) from None
                    continue
            code, message = error_fields(_json_or_none(response))
            if authed and is_token_refusal(status, code):
                if fresh_token:
                    raise TokenExpired(
                        "ThingSpace refused a fresh OAuth token; check THINGSPACE_KEY/SECRET and "
                        "the app's API subscriptions",
                        status_code=status,
                        code=code,
                        description=message,
                        method=method,
                        path=path,
                    )
                fresh_token = True
                await self.auth.refused(sent_headers, token=True, session=True)
                continue
            if authed and is_session_refusal(status, code, message):
                if fresh_session:
                    raise SessionExpired(
                        "ThingSpace refused a fresh M2M session token; check THINGSPACE_USERNAME "
                        "and that the user may use Software Management",
                        status_code=status,
                        code=code,
                        description=message,
                        method=method,
                        path=path,
                    )
                fresh_session = True
                await self.auth.refused(sent_headers, token=False, session=True)
                continue
            error = error_for(
                status_code=status, code=code, description=message, method=method, path=path
            )
            if isinstance(error, Throttled):
                retry_after = _retry_after(response)
                if await self._wait(started, attempts, "throttled", method, path, retry_after):
                    continue
                raise error
            if status >= 500:
                if not safe and authed:
                    raise OutcomeUnknown(
                        f"ThingSpace answered HTTP {status} to a call that changes it, so it may "
                        "or may not have done it; it is not sent again: reconcile through the "
                        "upgrade lists",
                        status_code=status,
                        code=code,
                        description=message,
                        method=method,
                        path=path,
                    )
                if await self._wait(started, attempts, f"HTTP {status}", method, path):
                    continue
                error.message += f"; gave up after {attempts} attempts"
            raise error

    async def _wait(
        self,
        started: Any,
        attempts: int,
        what: str,
        method: str,
        path: str,
        at_least: float | None = None,
    ) -> bool:
        """Back off before the next try; False when the retry budget is spent."""
        s = self.settings
        delay = self._rng.uniform(0.0, min(s.backoff_cap, s.backoff_base * 2 ** (attempts - 1)))
        delay = max(delay, at_least or 0.0)
        spent = (self.clock.now() - started).total_seconds()
        if spent + delay > s.max_retry_seconds:
            return False
        log.warning(
            "%s %s: %s (attempt %d); waiting %.1f s; %.0f s of the %g s retry budget left",
            method,
            path,
            what,
            attempts,
            delay,
            max(0.0, s.max_retry_seconds - spent - delay),
            s.max_retry_seconds,
        )
        await self.clock.sleep(delay)
        return True


def _retry_after(response: httpx.Response) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None


def _json(response: httpx.Response) -> Any:
    text = response.content
    if not text.strip():
        return None
    return json.loads(text)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return _json(response)
    except ValueError:
        return None
