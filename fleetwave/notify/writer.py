"""The batch writer: a bounded queue of pushed events flushed to the store in one transaction
every ``batch_size`` events or ``flush_ms`` milliseconds, by one background thread.

HTTP handlers only enqueue, so a burst of notifications costs a few transactions, not one
per request. Events for an operationId the store does not know yet are parked and retried
for ``park_seconds`` (the push can beat the engine's commit of the operationId).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.clock import Clock
from fleetwave.notify.apply import ApplyOutcome, apply_events
from fleetwave.platforms.base import UpgradeEvent

__all__ = ["BatchWriter", "WriterStats"]

log = logging.getLogger(__name__)

_STOP = object()
_MAX_ATTEMPTS = 3


@dataclass(slots=True)
class WriterStats:
    """Counters since start (read them with :meth:`BatchWriter.stats`)."""

    queued: int = 0
    rejected_full: int = 0
    flushes: int = 0
    changed: int = 0
    ignored: int = 0
    unknown_operation: int = 0
    dropped_after_errors: int = 0
    parked: int = 0


class BatchWriter:
    """Owns the queue and the writer thread; ``offer`` is safe from any thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        batch_size: int = 500,
        flush_ms: int = 200,
        max_queue: int = 100_000,
        park_seconds: float = 5.0,
        on_outcome: Callable[[ApplyOutcome], None] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000.0
        self.park_seconds = park_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._on_outcome = on_outcome
        self._parked: list[tuple[float, UpgradeEvent]] = []
        self._stats = WriterStats()
        self._cond = threading.Condition()
        self._offered = 0
        self._processed = 0
        self._thread: threading.Thread | None = None
        # the platform connections whose tasks pushed events may belong to (None: any);
        # operationIds are unique per connection only
        self.connection_keys: frozenset[str] | None = None

    def add_connection(self, connection_key: str) -> None:
        """Place events only on chunks of the connections added (thread-safe: replaced whole)."""
        self.connection_keys = (self.connection_keys or frozenset()) | {connection_key}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="fleetwave-notify-writer", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)  # blocks only if full, and the thread is draining it
        self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- producers ---------------------------------------------------------------------

    def offer(self, event: UpgradeEvent) -> bool:
        """Queue an event; False when the queue is full (the caller answers 503)."""
        with self._cond:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._stats.rejected_full += 1
                return False
            self._offered += 1
            self._stats.queued += 1
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every event offered so far went through one flush; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._offered
            while self._processed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stats(self) -> WriterStats:
        with self._cond:
            return dataclasses.replace(self._stats)

    # -- the thread --------------------------------------------------------------------

    def _collect(self) -> tuple[list[UpgradeEvent], bool]:
        """Wait for the first event (or a parked retry), then up to a full batch or the deadline."""
        batch: list[UpgradeEvent] = []
        stopping = False
        wait = self.flush_s if self._parked else None
        try:
            first = self._queue.get(timeout=wait)
        except queue.Empty:
            return batch, False
        if first is _STOP:
            return batch, True
        assert isinstance(first, UpgradeEvent)
        batch.append(first)
        deadline = time.monotonic() + self.flush_s
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stopping = True
                break
            assert isinstance(item, UpgradeEvent)
            batch.append(item)
        return batch, stopping

    def _run(self) -> None:
        while True:
            batch, stopping = self._collect()
            retry, self._parked = self._parked, []
            if batch or retry:
                self._flush(retry, batch)
            if stopping:
                rest: list[UpgradeEvent] = []  # what is still queued is written once, then we leave
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, UpgradeEvent):
                        rest.append(item)
                if rest:
                    self._flush([], rest)
                return

    def _write(self, events: list[UpgradeEvent]) -> ApplyOutcome | None:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                with store.session_scope(self._engine) as session:
                    return apply_events(
                        session,
                        events,
                        now=self._clock.now(),
                        connection_keys=self.connection_keys,
                    )
            except Exception as exc:  # the receiver must outlive any database trouble
                first_line = (str(exc).splitlines() or [""])[0][:300]
                log.warning(
                    "writing %d pushed event(s) failed (attempt %d of %d): %s: %s",
                    len(events),
                    attempt,
                    _MAX_ATTEMPTS,
                    type(exc).__name__,
                    first_line,
                )
                if attempt < _MAX_ATTEMPTS:
                    time.sleep(0.2 * 2 ** (attempt - 1))
        return None

    def _flush(self, retry: list[tuple[float, UpgradeEvent]], fresh: list[UpgradeEvent]) -> None:
        now_mono = time.monotonic()
        first_seen = {id(e): t for t, e in retry}
        events = [e for _, e in retry] + fresh
        outcome = self._write(events)
        with self._cond:
            st = self._stats
            st.flushes += 1
            if outcome is None:
                st.dropped_after_errors += len(events)
                log.error(
                    "dropped %d pushed event(s) after %d failed writes; polling will pick "
                    "their results up",
                    len(events),
                    _MAX_ATTEMPTS,
                )
            else:
                st.changed += outcome.changed
                st.ignored += outcome.ignored - len(outcome.unknown_operation)
                for e in outcome.unknown_operation:
                    seen = first_seen.get(id(e), now_mono)
                    if now_mono - seen < self.park_seconds:
                        self._parked.append((seen, e))
                        continue
                    st.unknown_operation += 1
                    st.ignored += 1
                    log.info(
                        "%s for unknown task %s (device %s); ignored",
                        e.source,
                        e.operation_id,
                        e.device_id,
                    )
            st.parked = len(self._parked)
            self._processed += len(fresh)
            self._cond.notify_all()
        if outcome is not None and self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:
                log.exception("the push outcome callback failed")
