"""Fixtures for the push receiver tests: a migrated SQLite store, a campaign with one active
chunk, and a started :class:`PushChannel` on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.notify import NotifySettings, PushChannel
from fleetwave.platforms.iodm.push import parse_push_body
from fleetwave.store import ChunkKind, DeviceRunStatus, NewDeviceRun, WavePlan
from tests.integration.store.conftest import BACKENDS, _make_db, _pg_admin

__all__ = ["_pg_admin"]  # the session fixture the PostgreSQL backend needs

NOW = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh migrated store on SQLite, and on PostgreSQL when FLEETWAVE_TEST_PG_URL is set."""
    for db in _make_db(request, request.param, tmp_path):
        yield db.engine


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = store.get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade_schema(eng)
    yield eng
    eng.dispose()


def seed_campaign(
    engine: Engine,
    *,
    name: str,
    devices: Sequence[str],
    operation_id: str | None,
    package_kind: str = "firmware",
    seq: int = 0,
    add_devices: bool = True,
) -> tuple[int, int]:
    """A campaign whose ``devices`` sit in one chunk (SUBMITTED when ``operation_id`` is set)."""
    with store.session_scope(engine) as s:
        camp = store.create_or_get_campaign(s, name=name, spec={"name": name}, now=NOW)
        assert camp.id is not None
        if add_devices:
            store.create_waves(
                s, campaign_id=camp.id, waves=[WavePlan(0, "all", len(devices))], now=NOW
            )
            store.add_device_runs(
                s,
                campaign_id=camp.id,
                devices=[NewDeviceRun(d, 0, "1.0", "1.5") for d in devices],
                now=NOW,
            )
        chunk = store.create_chunk_intent(
            s,
            campaign_id=camp.id,
            wave_index=0,
            round=seq,
            seq=0,
            kind=ChunkKind.UPGRADE,
            package_kind=package_kind,
            file_id="file-1",
            policy={},
            device_ids=list(devices),
            now=NOW,
        )
        assert chunk.id is not None
        cid, camp_id = chunk.id, camp.id
    if operation_id is not None:
        with store.session_scope(engine) as s:
            store.record_operation_id(s, chunk_id=cid, operation_id=operation_id, now=NOW)
    return camp_id, cid


def statuses(engine: Engine, campaign_id: int) -> dict[str, DeviceRunStatus]:
    with store.session_scope(engine, read_only=True) as s:
        return {r.device_id: r.status for r in store.iter_device_runs(s, campaign_id=campaign_id)}


@dataclass
class Receiver:
    """A started channel plus a client that posts to it."""

    channel: PushChannel
    http: httpx.Client
    clock: ManualClock

    @property
    def url(self) -> str:
        return self.channel.callback_url

    def post(self, body: object) -> httpx.Response:
        return self.http.post(self.url, json=body)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "park_seconds(s): how long the receiver fixture parks unknown operationIds"
    )


@pytest.fixture
def receiver(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Receiver]:
    """A started channel that parks unknown operationIds 0.3 s (``park_seconds`` marker)."""
    clock = ManualClock()
    marker = request.node.get_closest_marker("park_seconds")
    park = float(marker.args[0]) if marker else 0.3
    settings = NotifySettings(flush_ms=20, park_seconds=park, quiet_after=60)
    with (
        PushChannel(engine, clock=clock, settings=settings, parser=parse_push_body) as channel,
        httpx.Client(timeout=10.0) as http,
    ):
        yield Receiver(channel, http, clock)
