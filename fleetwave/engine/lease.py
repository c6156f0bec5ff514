"""The campaign lease from the engine's side: holder names, whether a holder still lives,
taking the lease (at once, from a dead holder, or after waiting in real time).

A holder name is ``HOST:PID:START:NONCE``: HOST is the host name plus the PID namespace
(``name/4026531836``) so two containers sharing a host name are never confused, START the
process's start time in clock ticks since boot (``/proc/PID/stat``; ``0`` if unknown) so a
reused PID is not taken for the holder, NONCE tells runs of one process apart. The holder
is stored in the existing ``lease_holder`` column (no schema change).

Rules (never steal a live lease): a holder on this host whose process is gone (or is a
zombie, or whose PID now belongs to a younger process) is taken over at once, with a
``lease_taken_over`` event; a holder on this host whose process runs is never taken over,
even if its lease looks expired; a holder elsewhere keeps the lease while it renews it
(it lapses ``ttl`` after the last renewal). Waiting for a lease sleeps in real time and
never moves a campaign clock (``--clock sim`` shares the simulator's clock with the holder).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import utc_instant
from fleetwave.errors import UserError

__all__ = [
    "Holder",
    "LeaseHeldError",
    "Liveness",
    "default_holder",
    "describe_holder",
    "holder_liveness",
    "lease_ttl",
    "process_start",
    "take_lease",
    "this_host",
]

log = logging.getLogger(__name__)

#: The environment variable that sets the lease's length in seconds (default: see
#: :func:`lease_ttl`).
LEASE_TTL_ENV = "FLEETWAVE_LEASE_TTL"

#: The shortest lease accepted from :data:`LEASE_TTL_ENV` (seconds).
MIN_LEASE_SECONDS = 10.0

#: How often a run waiting with ``--wait-lease`` looks at the lease again (real seconds).
WAIT_POLL_SECONDS = 1.0


class LeaseHeldError(UserError):
    """Another live run holds the campaign's lease (exit code 6: try again later)."""

    exit_code = 6


class Liveness(enum.StrEnum):
    """What is known of a lease holder's process.

    ALIVE: it runs on this host. DEAD: it ran on this host and is gone (or a zombie, or its
    PID was reused). UNKNOWN: another host, or a name this version did not write; only the
    lease's expiry tells.
    """

    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def this_host() -> str:
    """This host's part of a holder name: the host name and the PID namespace."""
    ns = _pid_namespace()
    name = socket.gethostname()
    return f"{name}/{ns}" if ns else name


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in ticks) from ``/proc/PID/stat``, None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot, ``0`` when unknown."""
    stat = _proc_stat(pid)
    return stat[1] if stat else "0"


def default_holder() -> str:
    """A lease holder name unique to this process and run (``HOST:PID:START:NONCE``)."""
    pid = os.getpid()
    return f"{this_host()}:{pid}:{process_start(pid)}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Holder:
    """A parsed holder name."""

    host: str
    pid: int
    start: str
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Holder | None:
        """The parts of a ``HOST:PID:START:NONCE`` name; None for any other name."""
        parts = raw.rsplit(":", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(host=parts[0], pid=int(parts[1]), start=parts[2], raw=raw)

    def describe(self) -> str:
        host = self.host.split("/", 1)[0]
        return f"process {self.pid} on {host}"


def describe_holder(raw: str) -> str:
    """A holder name as a reader wants it: ``process 4242 on build-7`` (else the raw name)."""
    parsed = Holder.parse(raw)
    return parsed.describe() if parsed is not None else repr(raw)


def holder_liveness(raw: str) -> Liveness:
    """Whether the process named by ``raw`` is alive (on this host) or gone, or unknown."""
    holder = Holder.parse(raw)
    if holder is None or holder.host != this_host():
        return Liveness.UNKNOWN
    if holder.pid == os.getpid():
        return Liveness.ALIVE  # another run inside this very process
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return Liveness.DEAD
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return Liveness.UNKNOWN
    stat = _proc_stat(holder.pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X"):  # exited, not yet reaped by its parent
            return Liveness.DEAD
        if holder.start not in ("", "0") and start != holder.start:
            return Liveness.DEAD  # the PID now belongs to another process
    return Liveness.ALIVE


async def take_lease(
    engine: sa.Engine,
    *,
    campaign_id: int,
    name: str,
    holder: str,
    ttl: timedelta,
    now: Callable[[], pendulum.DateTime],
    wait: bool,
    patience: timedelta | None = None,
) -> None:
    """Take the campaign's lease for ``holder``, or raise :class:`LeaseHeldError`.

    ``now`` is the campaign clock (lease expiries are in its time). ``wait``: look again
    every :data:`WAIT_POLL_SECONDS` of real time, for at most ``patience`` (default two
    leases), until the holder releases it, dies, or (elsewhere) stops renewing it.
    """
    limit = patience if patience is not None else ttl * 2
    deadline = time.monotonic() + limit.total_seconds()
    waited = False
    while True:
        with store.session_scope(engine) as s:
            row = store.get_campaign_by_id(s, campaign_id=campaign_id)
            other = row.lease_holder
            until = utc_instant(row.lease_expires_at)
            state = Liveness.UNKNOWN
            if other is not None and other != holder:
                state = holder_liveness(other)
            at = now()
            if state is Liveness.DEAD and other is not None:
                if store.take_over_lease(
                    s, campaign_id=campaign_id, holder=holder, previous=other, ttl=ttl, now=at
                ):
                    why = f"{describe_holder(other)} holding it is no longer running"
                    store.append_event(
                        s,
                        campaign_id=campaign_id,
                        kind="lease_taken_over",
                        now=at,
                        actor="engine",
                        data={"from": other, "to": holder, "why": why},
                    )
                    log.warning("%s: lease taken over: %s", name, why)
                    return
                continue  # it changed hands meanwhile: look again
            if state is not Liveness.ALIVE and store.acquire_lease(
                s, campaign_id=campaign_id, holder=holder, ttl=ttl, now=at
            ):
                if other is not None and other != holder and until is not None and until <= at:
                    # another host's run stopped renewing (it died with its machine or
                    # worker): say so, as for a dead process on this host
                    why = (
                        f"the lease of {describe_holder(other)} expired at "
                        f"{until.to_iso8601_string() if until else '?'} without renewal"
                    )
                    store.append_event(
                        s,
                        campaign_id=campaign_id,
                        kind="lease_taken_over",
                        now=at,
                        actor="engine",
                        data={"from": other, "to": holder, "why": why},
                    )
                    log.warning("%s: lease taken over: %s", name, why)
                return
        if not wait:
            raise LeaseHeldError(
                f"campaign {name!r} is being advanced by {_who(other, state, until)}",
                hint=(
                    "let that run finish (stopping it with SIGTERM or Ctrl-C releases the "
                    "lease), or run again with --wait-lease to wait for it"
                ),
            )
        if not waited:
            waited = True
            log.warning(
                "%s: waiting (--wait-lease, up to %d s) for the lease held by %s",
                name,
                int(limit.total_seconds()),
                _who(other, state, until),
            )
        if time.monotonic() >= deadline:
            raise LeaseHeldError(
                f"campaign {name!r} is still being advanced by {_who(other, state, until)} "
                f"after waiting {int(limit.total_seconds())} s with --wait-lease",
                hint="that run is alive: let it finish or stop it, then run again",
            )
        await asyncio.sleep(WAIT_POLL_SECONDS)  # real time: never move a campaign clock


def lease_ttl(poll_seconds: float, environ: Mapping[str, str] | None = None) -> timedelta:
    """How long a lease lasts after its last renewal (a run renews it every half lease).

    ``FLEETWAVE_LEASE_TTL`` seconds when set (at least 10: how soon another host may take
    over a campaign whose run died), else ten minutes or three poll intervals if longer.
    """
    env = os.environ if environ is None else environ
    raw = env.get(LEASE_TTL_ENV, "").strip()
    if not raw:
        return timedelta(seconds=max(600.0, 3 * poll_seconds))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds >= MIN_LEASE_SECONDS or seconds == float("inf"):
        raise UserError(
            f"{LEASE_TTL_ENV}={raw!r} is not a lease length in seconds of at least "
            f"{MIN_LEASE_SECONDS:.0f}",
            hint=f"set {LEASE_TTL_ENV} to e.g. 600 (seconds), or unset it for the default",
        )
    return timedelta(seconds=seconds)


def _who(other: str | None, state: Liveness, until: pendulum.DateTime | None) -> str:
    who = describe_holder(other) if other else "another run"
    if state is Liveness.ALIVE:
        return f"{who}, which is running"
    return f"{who} (lease until {until.to_iso8601_string() if until else '?'})"
