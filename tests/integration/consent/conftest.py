"""Fixtures for the consent API tests: a migrated store (SQLite file, and PostgreSQL when
FLEETWAVE_TEST_PG_URL is set) with a consent campaign, owners and their tokens, and the
API served over real HTTP on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.store import NewDeviceRun
from tests.integration.store.conftest import BACKENDS, _make_db, _pg_admin

__all__ = ["_pg_admin"]  # the session fixture the PostgreSQL backend needs

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PERIOD = (NOW - timedelta(hours=1), NOW + timedelta(days=7))
# two nightly windows, 01:00-05:00 UTC on the next two nights
WINDOWS = [
    (NOW + timedelta(hours=13), NOW + timedelta(hours=17)),
    (NOW + timedelta(hours=37), NOW + timedelta(hours=41)),
]


@dataclass
class Clock:
    """The API's clock, moved by tests."""

    at: datetime = NOW

    def __call__(self) -> datetime:
        return self.at


@dataclass
class ConsentEnv:
    """A served consent API over a store holding campaigns ``c-platform`` and ``c-app``."""

    engine: Engine
    url: str
    clock: Clock
    tokens: dict[str, str]
    campaign_ids: dict[str, int] = field(default_factory=dict)

    def client(self, owner: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[owner]}"} if owner else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def seed(
    engine: Engine,
    *,
    platform_devices: list[str],
    app_devices: list[str],
    owners: dict[str, str],
    auto: tuple[str, ...] = (),
) -> tuple[dict[str, int], dict[str, str]]:
    """Two campaigns (platform- and app-delivered) with consent plans, ownership, tokens."""
    ids: dict[str, int] = {}
    tokens: dict[str, str] = {}
    with store.session_scope(engine) as session:
        store.import_device_owners(session, rows=list(owners.items()), now=NOW)
        for owner in sorted(set(owners.values())):
            tokens[owner] = store.issue_owner_token(session, owner_id=owner, now=NOW)
        for d in auto:
            store.set_auto_upgrade(session, device_id=d, enabled=True, actor="test", now=NOW)
        for name, devices, delivery in (
            ("c-platform", platform_devices, "platform"),
            ("c-app", app_devices, "app"),
        ):
            campaign = store.create_or_get_campaign(session, name=name, spec={"n": name}, now=NOW)
            assert campaign.id is not None
            ids[name] = campaign.id
            store.add_device_runs(
                session,
                campaign_id=campaign.id,
                devices=[NewDeviceRun(d, 0) for d in devices],
                now=NOW,
            )
            store.open_consent_plan(
                session,
                campaign_id=campaign.id,
                device_ids=devices,
                period_start=PERIOD[0],
                period_end=PERIOD[1],
                windows=WINDOWS,
                delivery=delivery,
                target_version="2.0.0",
                package_url="https://files.example/fw-2.0.0.bin" if delivery == "app" else None,
                package_sha256="ab" * 32 if delivery == "app" else None,
                package_size=1024 if delivery == "app" else None,
                now=NOW,
            )
    return ids, tokens


@pytest.fixture(params=BACKENDS)
def db_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh migrated store on a SQLite file, and on PostgreSQL when configured."""
    for db in _make_db(request, request.param, tmp_path):
        yield db.engine


def serve(engine: Engine, clock: Clock) -> ConsentServer:
    server = ConsentServer(create_consent_app(engine=engine, now=clock), "127.0.0.1", 0)
    server.start_in_thread()
    return server


@pytest.fixture
def env(db_engine: Engine) -> Iterator[ConsentEnv]:
    owners = {
        "dev-a1": "alice",
        "dev-a2": "alice",
        "dev-a3": "alice",
        "dev-a4": "alice",
        "dev-b1": "bob",
        "ble-a1": "alice",
        "ble-b1": "bob",
        "dev-free": "alice",  # owned, in no plan
    }
    ids, tokens = seed(
        db_engine,
        platform_devices=["dev-a1", "dev-a2", "dev-a3", "dev-a4", "dev-b1"],
        app_devices=["ble-a1", "ble-b1"],
        owners=owners,
        auto=("dev-a4",),
    )
    clock = Clock()
    server = serve(db_engine, clock)
    try:
        yield ConsentEnv(db_engine, server.url, clock, tokens, ids)
    finally:
        server.stop()
