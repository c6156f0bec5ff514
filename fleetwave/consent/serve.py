"""Serving the end-user consent API while a campaign run lasts: whether the run serves it,
and binding its port or reusing the fleetwave consent API already serving the same store
there (another flow run on this machine, or ``fleetwave consent serve``).

The decisions are plain functions (:func:`serving_decision`, :func:`bind_failure_decision`);
:class:`ConsentApiService` does the binding, the probing and the serving around them.
"""

from __future__ import annotations

import enum
import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.consent.app import HEALTH_PATH, SERVICE, ConsentServer, create_consent_app
from fleetwave.consent.settings import ENV_PREFIX, ConsentServeSettings
from fleetwave.errors import UserError

__all__ = [
    "ApiIdentity",
    "ConsentApiService",
    "ServeDecision",
    "ServeKind",
    "bind_failure_decision",
    "local_url",
    "probe_consent_api",
    "serve_consent_api",
    "serving_decision",
]

log = logging.getLogger(__name__)

RunLogger = logging.Logger | logging.LoggerAdapter[Any]

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class ServeKind(enum.StrEnum):
    """What a run does about the consent API."""

    OFF = "off"
    """Nothing: the campaign has no consent section, or serving is switched off."""
    BIND = "bind"
    """Listen on the configured address and serve it for the life of the run."""
    REUSE = "reuse"
    """A fleetwave consent API on the same store already listens there: use it."""
    REFUSE = "refuse"
    """The address is taken by something else (or cannot be used): the run fails."""


@dataclass(frozen=True, slots=True)
class ServeDecision:
    """A :class:`ServeKind` and the one line that says why."""

    kind: ServeKind
    reason: str


@dataclass(frozen=True, slots=True)
class ApiIdentity:
    """What a fleetwave consent API's health endpoint answered."""

    store: str
    version: str


def local_url(host: str, port: int) -> str:
    """The URL that reaches ``host:port`` from this machine (a wildcard address: loopback)."""
    h = _WILDCARDS.get(host, host)
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


def serving_decision(*, consent: bool, settings: ConsentServeSettings) -> ServeDecision:
    """Whether a run serves the consent API: only for a campaign with a ``consent:``
    section, unless ``FLEETWAVE_CONSENT_SERVE`` is false."""
    if not consent:
        return ServeDecision(ServeKind.OFF, "the campaign has no consent section")
    if not settings.serve:
        return ServeDecision(
            ServeKind.OFF,
            f"{ENV_PREFIX}SERVE is false: this run does not serve the end-user consent API "
            "(owners reach the one `fleetwave consent serve` serves)",
        )
    return ServeDecision(
        ServeKind.BIND, f"serve the end-user consent API on {settings.host}:{settings.port}"
    )


def bind_failure_decision(
    *, error: str, in_use: bool, found: ApiIdentity | None, store_id: str, url: str
) -> ServeDecision:
    """After the port could not be bound (``error``; ``in_use``: the address is taken):
    reuse a fleetwave consent API answering ``url`` for this store (``store_id``), refuse
    anything else with a line saying what to do."""
    fix = f"set {ENV_PREFIX}PORT to a free port on the worker, or {ENV_PREFIX}SERVE=false"
    if not in_use:
        return ServeDecision(ServeKind.REFUSE, f"{error}; {fix}")
    if found is None:
        return ServeDecision(
            ServeKind.REFUSE,
            f"{error}, and what listens there is not a fleetwave consent API; stop it, or {fix}",
        )
    if found.store != store_id:
        return ServeDecision(
            ServeKind.REFUSE,
            f"{error}: a fleetwave consent API there serves another store ({found.store}; "
            f"this run's is {store_id}); owners would answer into the wrong store; {fix}",
        )
    return ServeDecision(
        ServeKind.REUSE,
        f"end-user consent API: reusing the one already serving this store on {url} "
        f"(fleetwave {found.version}, another run or `fleetwave consent serve`)",
    )


def probe_consent_api(url: str, *, timeout: float = 3.0) -> ApiIdentity | None:
    """Ask ``url``'s health endpoint which store it serves; None when what answers (if
    anything) is not a fleetwave consent API."""
    try:
        resp = httpx.get(url + HEALTH_PATH, timeout=timeout)
        body = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("service") != SERVICE:
        return None
    found = body.get("store")
    if not isinstance(found, str):
        return None
    return ApiIdentity(store=found, version=str(body.get("version", "unknown")))


class ConsentApiService:
    """The consent API for the life of a run over ``engine``'s store.

    :meth:`start` serves it on the settings' address, or reuses the fleetwave consent API
    already serving this store there; while reusing, a watcher thread checks every
    ``recheck`` seconds and serves it from this run when that one goes away (so a run that
    ends first does not leave the owners of a longer one without an API). Any other use of
    the address is a :class:`UserError`. ``now`` is the campaign clock; lines go to
    ``logger`` (the flow run's).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        settings: ConsentServeSettings | None = None,
        logger: RunLogger | None = None,
        recheck: float = 10.0,
    ) -> None:
        self.settings = settings if settings is not None else ConsentServeSettings.from_env()
        self.store_id = store.store_fingerprint(engine)
        self.url: str | None = None
        self.reused = False
        self._engine = engine
        self._now = now
        self._log: RunLogger = logger if logger is not None else log
        self._recheck = recheck
        self._server: ConsentServer | None = None
        self._api_engine: Engine | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def serving(self) -> bool:
        """This run's own server is serving (not reusing another's)."""
        return self._server is not None and self._server.alive

    def start(self) -> ConsentApiService:
        """Serve, or reuse; raises :class:`UserError` when the address is unusable."""
        host, port = self.settings.host, self.settings.port
        failure = self._bind()
        if failure is None:
            return self
        error, in_use = failure
        url = local_url(host, port)
        found = probe_consent_api(url) if in_use else None
        decision = bind_failure_decision(
            error=error, in_use=in_use, found=found, store_id=self.store_id, url=url
        )
        if decision.kind is not ServeKind.REUSE:
            raise UserError(decision.reason)
        self.url, self.reused = url, True
        self._log.info("%s", decision.reason)
        self._watcher = threading.Thread(
            target=self._watch, name=f"fleetwave-consent-api-watch-{port}", daemon=True
        )
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stop serving (a reused API is left alone)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(30)
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self._api_engine is not None and self._api_engine is not self._engine:
                self._api_engine.dispose()
            self._api_engine = None

    def __enter__(self) -> ConsentApiService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self) -> tuple[str, bool] | None:
        """Listen and serve; None on success, else (the error's line, address in use)."""
        with self._lock:
            if self._stopping.is_set():
                return ("stopping", False)
            api_engine = store.twin_engine(self._engine)
            app = create_consent_app(engine=api_engine, now=self._now)
            try:
                server = ConsentServer(app, self.settings.host, self.settings.port)
            except OSError as exc:
                if api_engine is not self._engine:
                    api_engine.dispose()
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                return str(exc), cause.errno == errno.EADDRINUSE
            try:
                server.start_in_thread()
            except BaseException:
                if api_engine is not self._engine:
                    api_engine.dispose()
                raise
            self._server, self._api_engine = server, api_engine
            self.url, self.reused = server.url, False
        self._log.info(
            "end-user consent API: serving this store (%s) on %s for this run; OpenAPI at "
            "%s/openapi.json",
            self.store_id,
            server.url,
            server.url,
        )
        return None

    def _watch(self) -> None:
        """While reusing: serve from this run once the reused API stops answering."""
        assert self.url is not None
        warned = False
        while not self._stopping.wait(self._recheck):
            found = probe_consent_api(self.url)
            if found is not None and found.store == self.store_id:
                continue
            if self._bind() is None:
                self._log.info("the consent API this run reused stopped; this run serves it now")
                return
            if not warned and not self._stopping.is_set():
                warned = True
                self._log.warning(
                    "the consent API on %s no longer serves this store and the port is "
                    "taken: owners cannot answer until it is free",
                    self.url,
                )


def serve_consent_api(
    engine: Engine,
    *,
    consent: bool,
    now: Callable[[], datetime],
    logger: RunLogger | None = None,
    settings: ConsentServeSettings | None = None,
) -> ConsentApiService | None:
    """For a run: the started :class:`ConsentApiService` when the campaign needs one
    (:func:`serving_decision`), else None (switched off: one INFO line says so)."""
    settings = settings if settings is not None else ConsentServeSettings.from_env()
    decision = serving_decision(consent=consent, settings=settings)
    if decision.kind is ServeKind.OFF:
        if consent:
            (logger or log).info("%s", decision.reason)
        return None
    return ConsentApiService(engine, now=now, settings=settings, logger=logger).start()
