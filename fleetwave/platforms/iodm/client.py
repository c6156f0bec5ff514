"""The IoDM HTTP client: one place for auth, the call budget, retries, error mapping and counts.

Every call passes the app's rate limiter, carries a valid token (see ``auth``), is
counted per endpoint template ("GET /iodm/northbound/v1.5.0/operations/{operationId}"),
and is retried with exponential backoff and full jitter (at least the ``Retry-After``
asked for) when that is safe: GETs, login and refresh on connection errors, timeouts,
5xx and unreadable bodies; every call on 403 1010009 (throttled, nothing was done) and
on 403 1010005 after a fresh login. Retries last for a time budget
(``max_retry_seconds``, from the call's first try), and each wait is logged at WARNING
with what failed and what is awaited. A call that is not replay-safe (creating a task)
whose request may have reached the platform raises :class:`OutcomeUnknown` instead of
being sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import ssl
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pendulum
from pydantic import BaseModel, ValidationError

from fleetwave.clock import Clock, RealClock
from fleetwave.platforms.base import AsyncClosing
from fleetwave.platforms.errors import OutcomeUnknown, PlatformError

from .auth import TokenManager
from .errors import (
    THROTTLE_CODE,
    TOKEN_INVALID_CODE,
    IoDMConnectionError,
    MalformedResponse,
    error_for,
)
from .limiter import RateLimiter, get_limiter, prefect_rate_limit_hook
from .models import Page
from .redact import install_redaction
from .settings import IoDMSettings

__all__ = ["IoDMClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# raised before a single byte of the request left: always safe to try again
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# how a TLS server refuses a plain-text request (probed before being called a TLS mismatch)
_TLS_REFUSALS = (httpx.RemoteProtocolError, httpx.ReadError)


def _ssl_context(settings: IoDMSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle) if settings.ca_bundle else None)
    if settings.client_cert and settings.client_key:
        ctx.load_cert_chain(str(settings.client_cert), str(settings.client_key))
    return ctx


class IoDMClient(AsyncClosing):
    """Async IoDM northbound client for one app; use as ``async with IoDMClient(s) as c``."""

    def __init__(
        self,
        settings: IoDMSettings,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        install_redaction()
        self.settings = settings
        self.clock: Clock = clock or RealClock()
        hook = (
            prefect_rate_limit_hook(settings.prefect_rate_limit)
            if settings.prefect_rate_limit
            else None
        )
        self.limiter = limiter or get_limiter(
            settings.key, settings.rate_limit, clock=self.clock, hook=hook
        )
        self._rng = rng or random.Random()
        try:
            verify = _ssl_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise PlatformError(
                f"cannot load the TLS files (IODM_CA_BUNDLE / IODM_CLIENT_CERT / "
                f"IODM_CLIENT_KEY): {exc}; check they are PEM files and the key matches"
            ) from None
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self.auth = TokenManager(settings, self.clock, self._unauthenticated)
        self._own_transport = transport is None
        self._tls_probe: bool | None = None
        self._counts: Counter[str] = Counter()
        self._statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)

    # -- public -------------------------------------------------------------------------

    async def get(
        self,
        template: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """GET a JSON document (replay-safe)."""
        return await self._call(
            "GET", template, path_params=path_params, params=params, replay_safe=True
        )

    async def post(
        self,
        template: str,
        *,
        json_body: Mapping[str, Any],
        path_params: Mapping[str, str] | None = None,
        replay_safe: bool = False,
    ) -> Any:
        """POST a JSON body; unless ``replay_safe`` it is never sent twice."""
        return await self._call(
            "POST",
            template,
            path_params=path_params,
            json_body=dict(json_body),
            replay_safe=replay_safe,
        )

    async def paged(
        self,
        template: str,
        page_model: type[Page[T]],
        *,
        page_size: int,
        params: Mapping[str, Any] | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[T]:
        """Yield every item of a paged listing, page by page (``pageNo`` from 0).

        Stops at an empty page, once ``totalCount`` items were seen, or, without a
        total, at a short page. If the platform caps the page size below what was
        asked, later pages are requested with the platform's size.
        """
        base = {k: v for k, v in (params or {}).items() if v is not None}
        page_no = 0
        seen = 0
        size = page_size
        while True:
            body = await self.get(
                template,
                path_params=path_params,
                params={**base, "pageNo": page_no, "pageSize": size},
            )
            page = parse_body(page_model, body, "GET", _fill(template, path_params))
            for item in page.items:
                yield item
            count = len(page.items)
            seen += count
            if count == 0:
                return
            if page.total_count is not None:
                if seen >= page.total_count:
                    return
            elif count < min(size, page.page_size or size):
                return
            if page.page_size and 0 < page.page_size < size and page_no == 0:
                size = page.page_size  # the platform capped it; keep offsets consistent
            page_no += 1

    def call_counts(self) -> dict[str, int]:
        """HTTP attempts per endpoint template, retries and logins included."""
        return dict(self._counts)

    def call_statuses(self) -> dict[str, dict[str, int]]:
        """Attempts per endpoint template and HTTP status ("error" = no answer)."""
        return {k: dict(v) for k, v in self._statuses.items()}

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"IoDMClient(base_url={self.settings.base_url!r}, app_id={self.settings.app_id!r})"

    # -- internals ----------------------------------------------------------------------

    async def _unauthenticated(
        self,
        method: str,
        template: str,
        form: dict[str, str] | None,
        json_body: dict[str, Any] | None,
    ) -> Any:
        return await self._call(
            method, template, form=form, json_body=json_body, authed=False, replay_safe=True
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
        authed: bool = True,
        replay_safe: bool,
    ) -> Any:
        s = self.settings
        path = _fill(template, path_params)
        label = f"{method} {template}"
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        retry = _Retry(self, method, path)
        failures = 0
        throttles = 0
        relogins = 0

        while True:
            headers = {"app_key": s.app_id}
            token: str | None = None
            if authed:
                token = await self.auth.token()
                headers["Authorization"] = f"Bearer {token}"
            await self.limiter.acquire()
            self._counts[label] += 1
            retry.attempt()
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=clean_params or None,
                    json=json_body,
                    data=form,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                self._statuses[label]["error"] += 1
                sent = not isinstance(exc, _NOT_SENT)
                what, check = self._explain(exc, method, path)
                if isinstance(exc, _TLS_REFUSALS) and await self._speaks_tls():
                    # a TLS server never reads a plain-text request: nothing was done. It
                    # answers with a TLS alert (RemoteProtocolError) or, when the reset
                    # comes first, a ReadError; both are certain, so neither is retried
                    raise IoDMConnectionError(
                        f"{what}: the server at {s.base_url} speaks TLS; use https:// "
                        "instead of http:// in IODM_BASE_URL",
                        method=method,
                        path=path,
                    ) from exc
                if sent and not replay_safe:
                    kind = type(exc).__name__
                    raise OutcomeUnknown(
                        f"{what}{'' if kind in what else f' ({kind})'} after the request was "
                        "sent, so the "
                        "platform may or may not have done it; it is not sent again: "
                        "reconcile through the task list",
                        method=method,
                        path=path,
                    ) from exc
                if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise IoDMConnectionError(
                        f"the platform's TLS certificate at {s.base_url} is not trusted ({exc}); "
                        "set IODM_CA_BUNDLE to the CA that signed it and check IODM_BASE_URL's "
                        "host name matches the certificate",
                        method=method,
                        path=path,
                    ) from exc
                failures += 1
                delay = self._delay(failures, s.backoff_base, s.backoff_cap)
                if not await retry.wait(what, delay, "the platform to answer"):
                    raise IoDMConnectionError(
                        f"{what}; gave up {retry.spent_text()}; {check}",
                        method=method,
                        path=path,
                    ) from exc
                continue

            status = response.status_code
            self._statuses[label][str(status)] += 1
            if 200 <= status < 300:
                try:
                    body = _json(response)
                except ValueError:
                    if not replay_safe:
                        raise OutcomeUnknown(
                            f"the platform answered HTTP {status} with an unreadable body, so "
                            "the result (e.g. the operationId) is unknown; reconcile through "
                            "the task list",
                            status_code=status,
                            method=method,
                            path=path,
                        ) from None
                    failures += 1
                    delay = self._delay(failures, s.backoff_base, s.backoff_cap)
                    what = f"HTTP {status} with an unreadable body"
                    if not await retry.wait(what, delay, "a readable answer"):
                        raise MalformedResponse(
                            f"the platform kept answering with unreadable JSON; gave up "
                            f"{retry.spent_text()}; check IODM_BASE_URL points at the IoDM "
                            "northbound API",
                            status_code=status,
                            method=method,
                            path=path,
                        ) from None
                    continue
                if isinstance(body, dict) and "error_code" in body:
                    # some group APIs report errors with HTTP 200
                    code, desc = _error_fields(body)
                    raise error_for(
                        status_code=status, code=code, description=desc, method=method, path=path
                    )
                return body

            code, desc = _error_fields(_json_or_none(response))
            if code == TOKEN_INVALID_CODE and authed and token is not None:
                # refused before anything was done, so every call may be replayed; a second
                # refusal in a row means another client keeps logging in with this appId
                relogins += 1
                if relogins > 1:
                    delay = self._delay(relogins - 1, s.backoff_base, s.backoff_cap)
                    what = "the access token was refused again (403 1010005)"
                    if not await retry.wait(
                        what, delay, "a fresh login (another client may be using this appId)"
                    ):
                        raise error_for(
                            status_code=status,
                            code=code,
                            description=desc,
                            method=method,
                            path=path,
                        )
                else:
                    log.info("%s %s: token refused (1010005); logging in again", method, path)
                await self.auth.refused(token)
                continue
            if code == THROTTLE_CODE:
                throttles += 1
                delay = self._delay(throttles, s.throttle_backoff_base, s.throttle_backoff_cap)
                delay = max(delay, _retry_after(response) or 0.0)
                if throttles > s.max_throttle_retries or not await retry.wait(
                    "throttled by the platform (403 1010009)",
                    delay,
                    "the app's call budget on the platform to free up",
                    capped=False,
                ):
                    raise error_for(
                        status_code=status, code=code, description=desc, method=method, path=path
                    )
                continue
            if status >= 500:
                if not replay_safe:
                    raise OutcomeUnknown(
                        f"the platform answered HTTP {status} to a call that changes it, so it "
                        "may or may not have done it; it is not sent again: reconcile through "
                        "the task list",
                        status_code=status,
                        code=code,
                        description=desc,
                        method=method,
                        path=path,
                    )
                failures += 1
                delay = self._delay(failures, s.backoff_base, s.backoff_cap)
                delay = max(delay, _retry_after(response) or 0.0)
                if not await retry.wait(f"HTTP {status}", delay, "the platform to recover"):
                    error = error_for(
                        status_code=status, code=code, description=desc, method=method, path=path
                    )
                    error.message += f"; gave up {retry.spent_text()}"
                    raise error
                continue
            raise error_for(
                status_code=status, code=code, description=desc, method=method, path=path
            )

    def _explain(self, exc: httpx.TransportError, method: str, path: str) -> tuple[str, str]:
        """What went wrong with a request, in words, and what to check."""
        s = self.settings
        host = _host(s.base_url)
        check = "check IODM_BASE_URL, the network and the TLS settings"
        if isinstance(exc, httpx.ReadTimeout):
            what = f"no answer from {host} within {s.read_timeout:g} s for {method} {path}"
            check = (
                "check that the platform is up and IODM_BASE_URL points at it; "
                "raise IODM_TIMEOUT if it is just slow"
            )
        elif isinstance(exc, httpx.ConnectTimeout):
            what = f"could not connect to {host} within {s.connect_timeout:g} s"
            check = (
                "check IODM_BASE_URL, the network and any firewall on the way; "
                "raise IODM_CONNECT_TIMEOUT if the link is just slow"
            )
        elif isinstance(exc, httpx.WriteTimeout):
            what = f"could not send {method} {path} to {host} within {s.read_timeout:g} s"
        elif isinstance(exc, httpx.PoolTimeout):
            what = f"no free connection to {host} within {s.connect_timeout:g} s"
        elif isinstance(exc, httpx.ConnectError):
            what = f"cannot connect to {host} ({_reason(exc)})"
            check = "check IODM_BASE_URL and that the platform (or `fleetwave sim serve`) is up"
        elif isinstance(exc, httpx.RemoteProtocolError):
            what = f"{host} closed the connection without a valid answer ({_reason(exc)})"
            if s.base_url.startswith("http://"):
                check = (
                    "check IODM_BASE_URL: if the platform speaks TLS it needs https://, not http://"
                )
        else:
            what = f"the connection to {host} failed ({_reason(exc)})"
        return what, check

    async def _speaks_tls(self) -> bool:
        """Whether an ``http://`` base URL in fact points at a TLS server (probed once)."""
        if self._tls_probe is None:
            self._tls_probe = False
            url = httpx.URL(self.settings.base_url)
            if url.scheme == "http" and self._own_transport:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.connect_timeout):
                        self._tls_probe = await _tls_handshake(url.host, url.port or 80)
        return self._tls_probe

    def _delay(self, attempt: int, base: float, cap: float) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        return self._rng.uniform(0.0, min(cap, base * (2 ** (attempt - 1))))


class _Retry:
    """The retry budget of one call: time from its first attempt, and an optional cap on tries.

    Each wait is logged at WARNING (the CLI's default level) saying what failed, what is
    awaited, how long, the attempt number and the budget left.
    """

    def __init__(self, client: IoDMClient, method: str, path: str) -> None:
        self.client = client
        self.method = method
        self.path = path
        self.started: pendulum.DateTime | None = None
        self.attempts = 0

    def attempt(self) -> None:
        if self.started is None:
            self.started = self.client.clock.now()
        self.attempts += 1

    def spent(self) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, (self.client.clock.now() - self.started).total_seconds())

    def spent_text(self) -> str:
        s = self.client.settings
        n = self.attempts
        return (
            f"after {n} attempt{'s' if n != 1 else ''} in {self.spent():.0f} s (retry budget "
            f"{s.max_retry_seconds:g} s, IODM_MAX_RETRY_SECONDS"
            + (f"; at most {s.max_attempts} tries, IODM_MAX_ATTEMPTS)" if s.max_attempts else ")")
        )

    async def wait(self, what: str, delay: float, awaiting: str, *, capped: bool = True) -> bool:
        """Sleep ``delay`` before the next try; False (no sleep) when the budget is spent.

        ``capped``: the try counts against ``max_attempts`` (throttled tries do not: the
        platform did nothing, and ``max_throttle_retries`` bounds them).
        """
        s = self.client.settings
        left = s.max_retry_seconds - self.spent()
        if delay > left:
            return False
        if capped and s.max_attempts is not None and self.attempts >= s.max_attempts:
            return False
        log.warning(
            "%s %s: %s (attempt %d); waiting %.1f s for %s; %.0f s of the %g s retry budget left",
            self.method,
            self.path,
            what,
            self.attempts,
            delay,
            awaiting,
            max(0.0, left - delay),
            s.max_retry_seconds,
        )
        await self.client.clock.sleep(delay)
        return True


def _host(base_url: str) -> str:
    url = httpx.URL(base_url)
    return f"{url.host}:{url.port}" if url.port else str(url.host)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the platform asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _tls_handshake(host: str, port: int) -> bool:
    """True if ``host:port`` completes a TLS handshake (no certificate check, nothing sent)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=ctx)
    except (OSError, ssl.SSLError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def _fill(template: str, path_params: Mapping[str, str] | None) -> str:
    path = template
    for name, value in (path_params or {}).items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


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


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    code = body.get("error_code", body.get("errorCode", body.get("resultcode")))
    desc = body.get("error_desc", body.get("errorDesc", body.get("resultmsg")))
    return (None if code is None else str(code)), (None if desc is None else str(desc)[:300])


def parse_body(model: type[M], body: Any, method: str, path: str) -> M:
    """``body`` read as ``model`` (a missing body as ``{}``); a :class:`MalformedResponse`
    when it does not have the documented shape."""
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        raise malformed(exc, method, path) from None


def malformed(exc: ValidationError, method: str, path: str) -> MalformedResponse:
    where = ", ".join(
        ".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:5]
    )
    return MalformedResponse(
        f"the platform's answer does not have the documented shape (bad or missing: {where})",
        method=method,
        path=path,
    )
