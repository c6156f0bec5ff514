"""The API-budget benchmark's harness: what bench/api_calls.py and bench/scale.py run on.

The simulator in its own process (:func:`bench_simulator`, over
:func:`fleetwave.sim.testing.run_simulator_process`), the call categories and the issue's
lower bound, the settling clock (push), the stage meter, and :func:`run_campaign` (one
campaign advanced to rest against the simulator). The scripts parse arguments and print.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fleetwave.sim.testing import SimProcess, run_simulator_process

__all__ = [
    "CATEGORIES",
    "EXECUTION",
    "PAGE",
    "TASK_LIMIT",
    "TS_CATEGORIES",
    "TS_EXECUTION",
    "Bound",
    "RunResult",
    "SettlingClock",
    "StageMeter",
    "TSBound",
    "bench_simulator",
    "bench_spec_text",
    "bench_ts_spec_text",
    "by_category",
    "categorize",
    "categorize_ts",
    "lower_bound",
    "quiet_process",
    "run_campaign",
    "sim_calls",
    "sim_stats",
    "ts_lower_bound",
]

T = TypeVar("T")

TASK_LIMIT = 256  # IoDM: devices per upgrade task
PAGE = 100  # IoDM: tasks or subtasks per list page

_NB = "/iodm/northbound/v1.5.0"
#: Endpoint template -> category. Categories "create", "progress", "subtasks" are what the
#: lower bound covers ("execution"); the rest are one-off or resolution costs.
_TEMPLATES: dict[str, str] = {
    f"POST {_NB}/operations/firmwareUpgrade": "create",
    f"POST {_NB}/operations/softwareUpgrade": "create",
    f"GET {_NB}/operations": "progress",
    f"GET {_NB}/operations/{{operationId}}": "progress",
    f"GET {_NB}/operations/{{operationId}}/subOperations": "subtasks",
    f"GET {_NB}/category": "verify",
    f"GET {_NB}/category/{{fileId}}": "verify",
    "GET /iocm/app/devgroup/v1.3.0/devGroups": "resolve",
    "GET /iocm/app/dm/v1.2.0/devices/ids": "resolve",
    "GET /iocm/app/dm/v1.4.0/devices": "resolve",
    "GET /iocm/app/dm/v1.4.0/devices/{deviceId}": "resolve",
    "POST /iodm/app/sub/v1.1.0/subscribe": "subscribe",
}
EXECUTION = ("create", "progress", "subtasks")
CATEGORIES = (*EXECUTION, "login", "verify", "resolve", "subscribe", "other")


def categorize(endpoint: str) -> str:
    """The budget category of an endpoint template such as ``GET /iodm/.../operations``."""
    if endpoint in _TEMPLATES:
        return _TEMPLATES[endpoint]
    if "/sec/" in endpoint or "login" in endpoint.lower() or "token" in endpoint.lower():
        return "login"
    return "other"


@dataclass(frozen=True, slots=True)
class Bound:
    """The issue's lower bound for a campaign of ``devices`` devices, by component."""

    creates: int
    subtask_pages: int
    progress: int

    @property
    def total(self) -> int:
        return self.creates + self.subtask_pages + self.progress


def lower_bound(
    devices: int, active_per_round: Sequence[int], *, task_limit: int = TASK_LIMIT, page: int = PAGE
) -> Bound:
    """``ceil(N/task_limit)`` creates + ``ceil(N/page)`` subtask pages + the sum over progress
    rounds of ``ceil(active tasks/page)`` (a round with no active task costs nothing)."""
    if devices < 0 or task_limit < 1 or page < 1:
        raise ValueError("devices must be >= 0, task_limit and page >= 1")
    if any(a < 0 for a in active_per_round):
        raise ValueError("active task counts must be >= 0")
    return Bound(
        creates=math.ceil(devices / task_limit),
        subtask_pages=math.ceil(devices / page),
        progress=sum(math.ceil(a / page) for a in active_per_round),
    )


def by_category(calls: Mapping[str, int]) -> dict[str, int]:
    """Sum calls per endpoint template into :data:`CATEGORIES`."""
    out = dict.fromkeys(CATEGORIES, 0)
    for endpoint, n in calls.items():
        out[categorize(endpoint)] += n
    return out


# ---------------------------------------------------------------------------- ThingSpace

TS_TASK_LIMIT = 1000  # the driver's devices per upgrade (one v2 device-status page)
TS_DEVICE_PAGE = 1000  # v2 device status and account device list: devices a page

_V1 = "/api/fota/v1"
_V2 = "/api/fota/v2"
#: ThingSpace endpoint -> category, path parameters written ``{}`` (the simulator and the
#: client name them differently: ``{upgrade_id}`` / ``{upgradeId}``).
_TS_TEMPLATES: dict[str, str] = {
    f"POST {_V1}/upgrades": "create",
    f"POST {_V2}/campaigns/{{}}": "create",
    f"POST {_V2}/campaigns/files/{{}}": "create",
    f"GET {_V1}/upgrades/{{}}/upgrade/{{}}": "progress",
    f"GET {_V2}/campaigns/{{}}/{{}}": "progress",
    f"GET {_V2}/reports/{{}}/campaigns/{{}}/devices": "progress",
    f"GET {_V1}/reports/{{}}/devices/{{}}": "reconcile",
    f"GET {_V1}/reports/{{}}/status/{{}}/index/{{}}": "reconcile",
    f"GET {_V2}/reports/{{}}/campaigns": "reconcile",
    f"GET {_V2}/reports/{{}}/devices/{{}}": "reconcile",
    f"GET {_V1}/firmware/{{}}": "verify",
    f"GET {_V2}/software/{{}}": "verify",
    f"GET {_V2}/files/{{}}": "verify",
    f"GET {_V1}/devices/{{}}/index/{{}}": "resolve",
    f"GET {_V2}/devices/{{}}": "resolve",
    f"POST {_V1}/callbacks/{{}}": "subscribe",
    f"POST {_V2}/callbacks/{{}}": "subscribe",
}
TS_EXECUTION = ("create", "progress")
TS_CATEGORIES = (*TS_EXECUTION, "reconcile", "login", "verify", "resolve", "subscribe", "other")


def categorize_ts(endpoint: str) -> str:
    """The budget category of a ThingSpace endpoint template (``GET /api/fota/v1/...``)."""
    generic = re.sub(r"\{[^}]*\}", "{}", endpoint)
    if generic in _TS_TEMPLATES:
        return _TS_TEMPLATES[generic]
    if "oauth2/token" in endpoint or "/session/" in endpoint:
        return "login"
    return "other"


@dataclass(frozen=True, slots=True)
class TSBound:
    """The ThingSpace lower bound of a FOTA v1 campaign (docs/performance.md, ThingSpace)."""

    creates: int
    progress: int
    results: int

    @property
    def total(self) -> int:
        return self.creates + self.progress + self.results


def ts_lower_bound(
    devices: int, active_per_round: Sequence[int], *, task_limit: int = TS_TASK_LIMIT
) -> TSBound:
    """``ceil(N/task_limit)`` creates + one read of each active upgrade per progress round
    (it carries every device's status; FOTA v1 has no cheaper multi-upgrade read) + one
    read of each upgrade for its per-device results, ``ceil(N/task_limit)``."""
    if devices < 0 or task_limit < 1:
        raise ValueError("devices must be >= 0 and task_limit >= 1")
    if any(a < 0 for a in active_per_round):
        raise ValueError("active task counts must be >= 0")
    tasks = math.ceil(devices / task_limit)
    return TSBound(creates=tasks, progress=sum(active_per_round), results=tasks)


def bench_ts_spec_text(
    name: str,
    *,
    ids_file: Path,
    inflight: int = 100,
    task_size: int = TS_TASK_LIMIT,
    poll: str = "1m",
    waves: str = "canary",
) -> str:
    """The ThingSpace benchmark campaign: FOTA v1 firmware 1.5.0 for the WM-200 meters whose
    IMEIs are in ``ids_file`` (devices already on 1.5.0 are skipped: ThingSpace refuses an
    upgrade whose devices do not all run its from-version)."""
    wave_text = (
        "  - count: 100\n  - percent: 10\n  - percent: 100\n"
        if waves == "canary"
        else "  - percent: 100\n"
    )
    return (
        f"name: {name}\n"
        "kind: firmware\n"
        "platform: {type: thingspace}\n"
        'package: {version: "1.5.0", model: WM-200, manufacturer_name: Aquaflow}\n'
        f"targets: {{devices_file: {ids_file}}}\n"
        "waves:\n"
        f"{wave_text}"
        "policy:\n"
        "  execute: now\n"
        f"  poll_interval: {poll}\n"
        "  task_timeout: 2h\n"
        f"  max_inflight_tasks: {inflight}\n"
        f"  max_devices_per_task: {task_size}\n"
        "thresholds:\n"
        "  max_failure_percent: 20\n"
        "  min_finished: 500\n"
        "  wave_success_percent: 80\n"
    )


def bench_spec_text(
    name: str,
    *,
    group: str = "meters-berlin",
    inflight: int = 100,
    task_size: int = TASK_LIMIT,
    poll: str = "1m",
    waves: str = "canary",
) -> str:
    """The benchmark campaign: firmware 1.5.0 for the WM-200 water meters of ``group``.

    ``skip_up_to_date: false`` so every device of the group is targeted (N = fleet size);
    ``waves``: ``canary`` (100 devices, 10 %, 100 %) or ``single`` (one wave of 100 %).
    """
    wave_text = (
        "  - count: 100\n  - percent: 10\n  - percent: 100\n"
        if waves == "canary"
        else "  - percent: 100\n"
    )
    return (
        f"name: {name}\n"
        "kind: firmware\n"
        "package:\n"
        '  version: "1.5.0"\n'
        "  device_type: WaterMeter\n"
        "  model: WM-200\n"
        "  manufacturer_name: Aquaflow\n"
        "targets:\n"
        "  groups:\n"
        f"    - name: {group}\n"
        "  skip_up_to_date: false\n"
        "waves:\n"
        f"{wave_text}"
        "policy:\n"
        "  execute: now\n"
        f"  poll_interval: {poll}\n"
        "  task_timeout: 2h\n"
        f"  max_inflight_tasks: {inflight}\n"
        f"  max_devices_per_task: {task_size}\n"
        "thresholds:\n"
        "  max_failure_percent: 20\n"
        "  min_finished: 500\n"
        "  wave_success_percent: 80\n"
    )


# ---------------------------------------------------------------------------- simulator

#: A simulator with a million devices builds its fleet before it answers.
SIM_START_TIMEOUT = 300.0


@contextmanager
def bench_simulator(
    *,
    devices: int,
    seed: int,
    rate_limit: int,
    groups: int = 1,
    log: Path | None = None,
    platform: str = "iodm",
) -> Iterator[SimProcess]:
    """The benchmark's simulator (``platform`` iodm or thingspace): its own process (so its
    CPU and memory are not the engine's), an ephemeral port, a manual clock; stopped on exit."""
    with run_simulator_process(
        log=log,
        platform=platform,
        timeout=SIM_START_TIMEOUT,
        devices=devices,
        groups=groups,
        seed=seed,
        rate_limit=rate_limit,
        clock="manual",
    ) as sim:
        yield sim


def sim_stats(base_url: str) -> dict[str, Any]:
    """``GET /sim/stats?tasks=false`` (call counts per endpoint template and status; the
    ThingSpace simulator reads it as ``requests=false``)."""
    import httpx

    resp = httpx.get(
        f"{base_url}/sim/stats", params={"tasks": "false", "requests": "false"}, timeout=60
    )
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def sim_calls(stats: Mapping[str, Any]) -> dict[str, int]:
    """Calls per endpoint template (all statuses) from a ``/sim/stats`` answer."""
    return {ep: sum(int(n) for n in by_status.values()) for ep, by_status in stats["calls"].items()}


# ---------------------------------------------------------------------------- engine run


class SettlingClock:
    """The simulator-linked clock, plus (with push) a settle after each jump of time.

    On a manual clock a jump of minutes happens in an instant, while the notifications
    that fell due in it are still being delivered; in real time they would have arrived
    during those minutes. So after a sleep of ``settle_min`` seconds or more this clock
    waits until the simulator's deliveries go quiet and the push channel has written what
    it received. Wall time only: simulated time does not move while it waits.
    """

    def __init__(self, inner: Any, base_url: str, *, settle_min: float = 5.0) -> None:
        import httpx

        self.inner = inner
        self.channel: Any = None
        self.settle_min = settle_min
        self.settles = 0
        self._http = httpx.Client(base_url=base_url, timeout=60)

    def now(self) -> Any:
        return self.inner.now()

    def _delivered(self) -> int:
        body = self._http.get("/sim/stats", params={"tasks": "false"}).json()
        n = body.get("notifications") or {}
        return int(n.get("pushed", 0)) + int(n.get("failed", 0))

    def _settle(self) -> None:
        last, quiet_since = self._delivered(), time.monotonic()
        while time.monotonic() - quiet_since < 0.3:
            time.sleep(0.05)
            now = self._delivered()
            if now != last:
                last, quiet_since = now, time.monotonic()
        self.channel.drain(30.0)
        self.settles += 1

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
        if self.channel is not None and seconds >= self.settle_min:
            await asyncio.to_thread(self._settle)

    def close(self) -> None:
        self._http.close()
        self.inner.close()


@dataclass
class StageMeter:
    """A StageRunner that counts stages (= the Prefect task runs the flow would create), and
    through :meth:`step` the monitoring rounds inside them (no task runs of their own); the
    calls each kind of stage or step spends, and the active tasks at the start of each round.

    A wrapping stage (a running wave, the rollback phase) spends no calls itself: its calls
    are those of the stages and steps inside it, where they are counted."""

    platform: Any
    active_tasks: Callable[[], int]
    stages: int = 0
    stages_by_kind: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    calls_by_stage: Counter[str] = field(default_factory=Counter)
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    active_per_round: list[int] = field(default_factory=list)
    quiet_rounds: int = 0  # monitor rounds that made no call (push accounted for everything)

    #: stage kinds that only wrap other stages and steps
    WRAPPERS = frozenset({"wave", "roll"})

    @staticmethod
    def kind(name: str) -> str:
        """``submit wave 2 attempt 1 (3 tasks)`` -> ``submit``; ``monitor round 7`` -> ``monitor``;
        ``wave 1: submit and monitor`` -> ``wave``; ``roll back to 0.9.8`` -> ``roll``."""
        for prefix in ("monitor", "submit", "rollback", "resolve", "reconcile", "verify"):
            if name.startswith(prefix):
                return prefix
        return name.split(" ")[0]

    def _calls(self) -> int:
        try:
            return sum(self.platform.call_counts().values())
        except Exception:
            return 0

    async def __call__(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        kind = self.kind(name)
        self.stages += 1
        self.stages_by_kind[kind] += 1
        if kind in self.WRAPPERS:
            return await fn()
        return await self._measured(kind, fn)

    async def step(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A monitoring round inside a stage (the engine's ``step`` seam): not a task run."""
        self.steps += 1
        return await self._measured(self.kind(name), fn)

    async def _measured(self, kind: str, fn: Callable[[], Awaitable[T]]) -> T:
        active = self.active_tasks() if kind == "monitor" else 0
        before, t0 = self._calls(), time.perf_counter()
        try:
            result = await fn()
        finally:
            self.calls_by_stage[kind] += self._calls() - before
            self.seconds_by_stage[kind] = (
                self.seconds_by_stage.get(kind, 0.0) + time.perf_counter() - t0
            )
        if kind == "monitor":
            # a round counts for the bound when it read progress from the platform; the
            # tasks it had to read are those push had not already finished
            polled = getattr(result, "polled", True)
            if polled:
                self.active_per_round.append(active - int(getattr(result, "by_push", 0)))
            else:
                self.quiet_rounds += 1
        return result


@dataclass
class RunResult:
    """What one benchmark campaign did."""

    outcome: Any
    meter: StageMeter
    client_calls: dict[str, int]
    client_statuses: dict[str, dict[str, int]]
    planned_devices: int
    submitted_tasks: int
    wall: float
    cpu: float
    sim_start: Any
    sim_end: Any
    db_rows: dict[str, int]
    push_stats: Any = None


def _count_rows(engine: Any) -> dict[str, int]:
    import sqlalchemy as sa

    out: dict[str, int] = {}
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        for table in sorted(names):
            if table.startswith("alembic"):
                continue
            out[table] = int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one())
    return out


async def run_campaign(
    *,
    base_url: str,
    spec_text: str,
    db_url: str,
    rate_limit: int,
    push: bool,
    max_rounds: int = 100_000,
    platform_kind: str = "iodm",
) -> RunResult:
    """Advance the benchmark campaign to rest (no Prefect: the meter counts its stages) on
    the simulator of ``platform_kind`` (iodm or thingspace, demo credentials)."""
    import inspect

    from fleetwave import store
    from fleetwave.engine.runner import advance
    from fleetwave.sim.linked_clock import SimLinkedClock
    from fleetwave.spec import load_spec_text

    spec = load_spec_text(spec_text)
    engine = store.get_engine(db_url)
    store.upgrade_schema(engine)
    clock = SettlingClock(SimLinkedClock(base_url), base_url)
    platform = _bench_platform(platform_kind, base_url, rate_limit, clock)

    def active() -> int:  # active tasks at the start of a round
        with store.session_scope(engine, read_only=True) as s:
            campaign = store.get_campaign(s, name=spec.name)
            assert campaign.id is not None
            return len(store.list_active_chunks(s, campaign_id=campaign.id))

    meter = StageMeter(platform, active)
    kwargs: dict[str, Any] = {}
    channel = None
    if push:
        params = inspect.signature(advance).parameters
        if "push" not in params:
            raise SystemExit(
                "error: --push: the engine's advance() takes no push channel yet "
                "(fleetwave.notify is not wired into the engine); run without --push"
            )
        from fleetwave.notify import PushChannel

        channel = PushChannel(engine, clock=clock).start()
        clock.channel = channel
        kwargs["push"] = channel
    sim_start = clock.now()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        outcome = await advance(
            spec,
            db=engine,
            platform=platform,
            clock=clock,
            stage=meter,
            step=meter.step,
            sleep_through_windows=True,
            max_rounds=max_rounds,
            **kwargs,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sim_end = clock.now()
        with store.session_scope(engine, read_only=True) as s:
            campaign = store.get_campaign(s, name=spec.name)
            assert campaign.id is not None
            planned = sum(w.planned_size for w in store.get_waves(s, campaign_id=campaign.id))
        return RunResult(
            outcome=outcome,
            meter=meter,
            client_calls=dict(platform.call_counts()),
            client_statuses=getattr(platform.client, "call_statuses", dict)(),
            planned_devices=planned,
            submitted_tasks=outcome.tasks_submitted,
            wall=wall,
            cpu=cpu,
            sim_start=sim_start,
            sim_end=sim_end,
            db_rows=_count_rows(engine),
            push_stats=channel.stats() if channel is not None else None,
        )
    finally:
        if channel is not None:
            channel.stop()
        await platform.aclose()
        clock.close()
        engine.dispose()


def _bench_platform(kind: str, base_url: str, rate_limit: int, clock: Any) -> Any:
    """The platform client on a simulator's demo credentials."""
    if kind == "thingspace":
        from fleetwave.platforms.thingspace import ThingSpacePlatform, ThingSpaceSettings
        from fleetwave.sim.thingspace.config import TSConfig

        demo = TSConfig()
        ts = ThingSpaceSettings(
            base_url=base_url,
            key=demo.client_key,
            secret=demo.client_secret,
            username=demo.username,
            password=demo.password,
            account_name=demo.account,
            rate_limit=rate_limit,
        )
        return ThingSpacePlatform(ts, clock=clock)
    from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
    from fleetwave.sim import DEMO_APP_ID, DEMO_SECRET

    settings = IoDMSettings(
        base_url=base_url, app_id=DEMO_APP_ID, secret=DEMO_SECRET, rate_limit=rate_limit
    )
    return IoDMPlatform(settings, clock=clock)


def quiet_process() -> None:
    """Turn Prefect's analytics and telemetry off (unless set) and log warnings only."""
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_TELEMETRY_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }.items():
        os.environ.setdefault(key, value)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
