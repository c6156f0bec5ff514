"""The push channel: receiver + batch writer + liveness, started and stopped as one.

The engine process owns one :class:`PushChannel`: ``start()`` serves the receiver in a
background thread, ``subscribe_all(platform)`` points the platform's upgrade events at
``callback_url`` (and parses what arrives with that platform's ``parse_push``),
``healthy(now, campaign_id)`` tells the monitor whether
it may poll slowly, ``stop()`` flushes and ends everything.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import pendulum
from sqlalchemy.engine import Engine

from fleetwave.clock import Clock, RealClock
from fleetwave.notify.apply import ApplyOutcome
from fleetwave.notify.events import PushParseError, PushParser, UpgradeEvent
from fleetwave.notify.liveness import Liveness
from fleetwave.notify.receiver import (
    CALLBACK_PREFIX,
    ReceiverCounters,
    ReceiverServer,
    create_receiver_app,
)
from fleetwave.notify.settings import NotifySettings
from fleetwave.notify.writer import BatchWriter
from fleetwave.platforms.base import PackageKind, Platform
from fleetwave.platforms.redact import register_secret

__all__ = ["PushChannel", "PushStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushStats:
    """What the channel has done since it started."""

    accepted: int
    unauthorized: int
    malformed: int
    overloaded: int
    errors: int
    flushes: int
    changed: int
    ignored: int
    unknown_operation: int
    parked: int
    dropped_after_errors: int


class PushChannel:
    """Receives upgrade notifications and applies them to device runs (see the module doc).

    ``token`` defaults to a fresh ``secrets.token_urlsafe(32)``; it is never logged or shown
    in ``repr``. ``clock`` stamps arrival times and the store's ``updated_at`` (use the
    engine's clock so ``healthy(now)`` compares like with like). ``parser`` reads pushed
    bodies; without it, bodies are read by the parser of each platform subscribed through
    :meth:`subscribe_all` (until one subscribes, every body is refused with 400).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        settings: NotifySettings | None = None,
        token: str | None = None,
        parser: PushParser | None = None,
    ) -> None:
        self._parsers: dict[str, PushParser] = {}
        if parser is not None:
            self._parsers["given"] = parser
        self.settings = settings if settings is not None else NotifySettings.from_env()
        self.clock: Clock = clock if clock is not None else RealClock()
        self._token = token if token is not None else secrets.token_urlsafe(32)
        if len(self._token) < 16:
            raise ValueError("the callback token must be at least 16 characters")
        self.liveness = Liveness(self.settings.quiet_after)
        self._counters = ReceiverCounters()
        self._writer = BatchWriter(
            engine,
            clock=self.clock,
            batch_size=self.settings.batch_size,
            flush_ms=self.settings.flush_ms,
            max_queue=self.settings.max_queue,
            park_seconds=self.settings.park_seconds,
            on_outcome=self._on_outcome,
        )
        self._server: ReceiverServer | None = None

    def __repr__(self) -> str:
        where = self._server.local_url if self._server is not None else "not started"
        return f"PushChannel({where}, token=**redacted**)"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PushChannel:
        """Bind the socket, serve the receiver and start the writer (idempotent)."""
        if self._server is not None:
            return self
        register_secret(self._token)  # platform-client logs never show the callback token
        app = create_receiver_app(
            token=self._token,
            parse=self._parse,
            sink=self._accept,
            now=self.clock.now,
            counters=self._counters,
            max_body_bytes=self.settings.max_body_bytes,
        )
        self._writer.start()
        server = ReceiverServer(
            app,
            self.settings.host,
            self.settings.port,
            tls_cert=self.settings.tls_cert,
            tls_key=self.settings.tls_key,
        )
        try:
            server.start()
        except BaseException:
            self._writer.stop()
            raise
        self._server = server
        self.liveness.set_running(True)
        log.info("push receiver listening on %s", server.local_url)
        return self

    def stop(self) -> None:
        """Stop accepting, write what is queued, end the threads."""
        self.liveness.set_running(False)
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._writer.stop()

    def __enter__(self) -> PushChannel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and subscription ----------------------------------------------------

    @property
    def local_url(self) -> str:
        """``http(s)://host:port`` the receiver listens on (no token)."""
        if self._server is None:
            raise RuntimeError("the push channel is not started")
        return self._server.local_url

    @property
    def callback_url(self) -> str:
        """The URL (token included: treat it as a secret) the platform must POST to."""
        base = self.settings.public_url or self.local_url
        return base.rstrip("/") + CALLBACK_PREFIX + self._token

    async def subscribe_all(
        self, platform: Platform, kinds: Iterable[PackageKind] = tuple(PackageKind)
    ) -> None:
        """Subscribe the upgrade steps and results of ``kinds`` (``subscribe_upgrade_events``).

        From then on pushed bodies are read by the platform's ``parse_push``, and events
        are placed only on chunks of the platform connections subscribed (operationIds are
        unique per connection, not across them).
        """
        url = self.callback_url
        self._writer.add_connection(platform.connection_key)
        if platform.name not in self._parsers:  # replaced whole: the receiver thread reads it
            self._parsers = {**self._parsers, platform.name: platform.parse_push}
        for kind in kinds:
            await platform.subscribe_upgrade_events(kind, url)
        self.liveness.mark_subscribed(self.clock.now())

    # -- liveness ----------------------------------------------------------------------

    def healthy(
        self,
        now: pendulum.DateTime,
        campaign_id: int | None = None,
        *,
        quiet_after: float | None = None,
    ) -> bool:
        """Whether the monitor may rely on push now (:meth:`Liveness.healthy`)."""
        if self._server is None or not self._server.alive or not self._writer.alive:
            return False
        return self.liveness.healthy(now, campaign_id, quiet_after=quiet_after)

    def last_seen(self, campaign_id: int | None = None) -> pendulum.DateTime | None:
        return self.liveness.last_seen(campaign_id)

    def expect(self, campaign_id: int, now: pendulum.DateTime) -> None:
        """Tell the channel a campaign just submitted tasks: a grace period starts now."""
        self.liveness.expect(campaign_id, now)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted notification went through one write; False on timeout."""
        return self._writer.drain(timeout)

    def stats(self) -> PushStats:
        w, c = self._writer.stats(), self._counters
        return PushStats(
            accepted=c.accepted,
            unauthorized=c.unauthorized,
            malformed=c.malformed + c.too_large,
            overloaded=c.overloaded,
            errors=c.errors,
            flushes=w.flushes,
            changed=w.changed,
            ignored=w.ignored,
            unknown_operation=w.unknown_operation,
            parked=w.parked,
            dropped_after_errors=w.dropped_after_errors,
        )

    # -- internals ---------------------------------------------------------------------

    def _parse(self, body: bytes) -> list[UpgradeEvent]:
        parsers = list(self._parsers.values())
        if not parsers:
            raise PushParseError("no platform has subscribed to this receiver yet")
        first: PushParseError | None = None
        for parse in parsers:
            try:
                return parse(body)
            except PushParseError as exc:
                first = first or exc
        assert first is not None
        raise first

    def _accept(self, event: UpgradeEvent) -> bool:
        self.liveness.mark_received(event.received_at)
        return self._writer.offer(event)

    def _on_outcome(self, outcome: ApplyOutcome) -> None:
        if outcome.campaigns:
            self.liveness.mark_campaigns(outcome.campaigns)
