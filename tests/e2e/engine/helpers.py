"""Helpers of the engine's end-to-end tests: a store, and a platform with its clock: the
in-memory platform on a ManualClock, or IoDM on a simulator with a linked clock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pendulum
import sqlalchemy as sa

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.progress import ProgressEvent
from fleetwave.engine.runner import Outcome, advance
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import SimHandle
from fleetwave.spec import CampaignSpec, load_spec_text


def fleetwave_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m fleetwave ARGS`` as an operator runs it, output captured as UTF-8 text."""
    return subprocess.run(
        [sys.executable, "-m", "fleetwave", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def sim_env(sim: SimHandle, **extra: str) -> dict[str, str]:
    """The environment of a CLI run against ``sim`` (its app, no local rate limit, no
    Prefect API), plus ``extra``."""
    env = dict(os.environ)
    env.update(
        IODM_BASE_URL=sim.base_url,
        IODM_APP_ID=sim.app_id,
        IODM_SECRET=sim.secret,
        IODM_RATE_LIMIT="0",
        **extra,
    )
    env.pop("PREFECT_API_URL", None)
    return env


def new_store(path: Path) -> sa.Engine:
    """A fresh SQLite store at ``path`` with the current schema."""
    engine = store.get_engine(f"sqlite:///{path}")
    store.upgrade_schema(engine)
    return engine


def spec_of(text: str) -> CampaignSpec:
    return load_spec_text(textwrap.dedent(text))


class Recorder:
    """A progress sink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.events)


@contextmanager
def linked(base_url: str, app_id: str, secret: str) -> Iterator[tuple[SimLinkedClock, Any]]:
    """A linked clock and settings for a platform on the simulator at ``base_url``."""
    clock = SimLinkedClock(base_url)
    settings = IoDMSettings(base_url=base_url, app_id=app_id, secret=secret, rate_limit=0)
    try:
        yield clock, settings
    finally:
        clock.close()


async def run(
    spec: CampaignSpec,
    db: sa.Engine,
    sim: Any,
    *,
    recorder: Recorder | None = None,
    **kwargs: Any,
) -> tuple[Outcome, dict[str, int]]:
    """One engine run against ``sim`` (a SimHandle); returns the outcome and its API calls."""
    with linked(sim.base_url, sim.app_id, sim.secret) as (clock, settings):
        platform = IoDMPlatform(settings, clock=clock)
        try:
            outcome = await advance(
                spec,
                db=db,
                platform=platform,
                clock=clock,
                progress=recorder,
                max_rounds=kwargs.pop("max_rounds", 2000),
                **kwargs,
            )
            return outcome, dict(platform.call_counts())
        finally:
            await platform.aclose()


def memory_platform(**config: Any) -> MemoryPlatform:
    """An in-memory platform on its own ManualClock (1,200 devices, seed 7, 3% failures,
    the flaky model failing half its upgrades; ``config`` overrides)."""
    settings: dict[str, Any] = {"devices": 1200, "seed": 7, "failure_rate": 0.03}
    settings.update(config)
    return MemoryPlatform(MemoryConfig(**settings), clock=ManualClock())


async def run_memory(
    spec: CampaignSpec,
    db: sa.Engine,
    platform: MemoryPlatform,
    *,
    recorder: Any = None,
    **kwargs: Any,
) -> tuple[Outcome, dict[str, int]]:
    """One engine run on the in-memory platform and its clock; returns the outcome and the
    calls this run made."""
    before = Counter(platform.call_counts())
    outcome = await advance(
        spec,
        db=db,
        platform=platform,
        clock=platform.clock,
        progress=recorder,
        max_rounds=kwargs.pop("max_rounds", 2000),
        **kwargs,
    )
    return outcome, dict(Counter(platform.call_counts()) - before)


def memory_exactly_once(db: sa.Engine, name: str, platform: MemoryPlatform) -> Counter[str]:
    """:func:`check_exactly_once` with the in-memory platform's own task list as the truth."""
    tasks = [
        {"operationId": t.operation_id, "fileId": t.package.file_id, "devices": t.device_ids}
        for t in platform.tasks.values()
    ]
    file_ids = {c.file_id for c in chunks(db, name)}
    per_device = check_exactly_once(db, name, tasks, file_ids)
    assert per_device == platform.tasks_per_device(file_ids)
    return per_device


def device_rows(db: sa.Engine, name: str) -> dict[str, store.DeviceRun]:
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        return {r.device_id: r for r in store.iter_device_runs(s, campaign_id=c.id)}


def chunks(db: sa.Engine, name: str) -> list[store.Chunk]:
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        return store.list_chunks(s, campaign_id=c.id)


def events(db: sa.Engine, name: str, kinds: list[str] | None = None) -> list[store.Event]:
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        return list(reversed(store.recent_events(s, campaign_id=c.id, limit=100_000, kinds=kinds)))


def campaign_row(db: sa.Engine, name: str) -> store.Campaign:
    with store.session_scope(db) as s:
        return store.get_campaign(s, name=name)


def waves(db: sa.Engine, name: str) -> list[store.Wave]:
    with store.session_scope(db) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        return store.get_waves(s, campaign_id=c.id)


def check_exactly_once(
    db: sa.Engine, name: str, sim_tasks: list[dict[str, Any]], file_ids: set[str]
) -> Counter[str]:
    """Every platform task for these packages is a recorded chunk (no orphan a crash left
    behind), each device got exactly the tasks of its recorded chunks, and never two
    upgrade tasks in one round. Returns the platform's task count per device."""
    recorded = {c.operation_id: c for c in chunks(db, name) if c.operation_id}
    mine = [t for t in sim_tasks if t["fileId"] in file_ids]
    orphans = [t["operationId"] for t in mine if t["operationId"] not in recorded]
    assert not orphans, f"platform tasks no chunk knows about: {orphans}"
    per_device: Counter[str] = Counter()
    for t in mine:
        per_device.update(t["devices"])
    expected: Counter[str] = Counter()
    rounds: dict[tuple[str, str, int], int] = {}
    for c in recorded.values():
        expected.update(c.device_ids)
        for d in c.device_ids:
            key = (d, c.kind.value, c.round)
            rounds[key] = rounds.get(key, 0) + 1
    assert per_device == expected
    twice = {k: n for k, n in rounds.items() if n > 1}
    assert not twice, f"devices with two tasks in one round: {twice}"
    return per_device


CONSENT_CONFIRM = "/enduserapi/v2/userBatchConfirmUpgrade"


@contextmanager
def consent_client(db: sa.Engine, clock: ManualClock, token: str) -> Iterator[httpx.Client]:
    """An owner's client (``token``) of the consent API served on ``db`` over real HTTP, on a
    free port, for the block."""
    server = ConsentServer(create_consent_app(engine=db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    try:
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            yield client
    finally:
        server.stop()


def answer_all(db: sa.Engine, clock: ManualClock, token: str, items: list[Any]) -> None:
    """The owner's answers (``userBatchConfirmUpgrade`` items) in one call; asserts 200."""
    with consent_client(db, clock, token) as client:
        resp = client.post(CONSENT_CONFIRM, json={"items": items})
        assert resp.status_code == 200, resp.text


def six_owners(db: sa.Engine, devices: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Six owners of ``devices`` in the store (device -> owner), and their tokens (owner ->
    token), as an operator imports and issues them."""
    owners = {d: f"owner-{i % 6}" for i, d in enumerate(devices)}
    now = pendulum.now("UTC")
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=now)
        tokens = {o: store.issue_owner_token(s, owner_id=o, now=now) for o in set(owners.values())}
    return owners, tokens
