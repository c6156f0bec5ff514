"""Child-process bodies for the store's concurrency tests (importable under ``spawn``)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from fleetwave import store
from fleetwave.store import ChunkKind
from tests.integration.store.conftest import NOW

TTL = timedelta(seconds=60)


def _engine(url: str, schema: str | None) -> Any:
    return store.get_engine(url, schema=schema)


def race_for_lease(
    url: str, schema: str | None, campaign_id: int, holder: str, rounds: int, barrier: Any, out: Any
) -> None:
    """Each round: wait for the other process, then try to take the (expired) lease."""
    engine = _engine(url, schema)
    for r in range(rounds):
        now = NOW + 2 * TTL * r  # every round starts after the last round's lease expired
        barrier.wait(timeout=60)
        with store.session_scope(engine) as s:
            won = store.acquire_lease(s, campaign_id=campaign_id, holder=holder, ttl=TTL, now=now)
        out.put((r, holder, won))
    engine.dispose()


def race_for_devices(
    url: str, schema: str | None, campaigns: list[int], devices: list[str], barrier: Any, out: Any
) -> None:
    """Each round: wait for the other process, then add (and claim) the same devices."""
    engine = _engine(url, schema)
    for r, campaign_id in enumerate(campaigns):
        barrier.wait(timeout=60)
        rows = [(f"r{r}-{d}", 0) for d in devices]
        try:
            with store.session_scope(engine) as s:
                store.add_device_runs(s, campaign_id=campaign_id, devices=rows, now=NOW)
            out.put((r, campaign_id, "ok", None))
        except store.DeviceClaimedError as exc:
            out.put((r, campaign_id, exc.code, sorted(exc.conflicts)))
    engine.dispose()


def crash_after_intent(url: str, schema: str | None, campaign_id: int, devices: list[str]) -> None:
    """Take the lease, write and commit a chunk intent, then die before the platform answers."""
    engine = _engine(url, schema)
    with store.session_scope(engine) as s:
        assert store.acquire_lease(s, campaign_id=campaign_id, holder="doomed", ttl=TTL, now=NOW)
    with store.session_scope(engine) as s:
        store.create_chunk_intent(
            s,
            campaign_id=campaign_id,
            wave_index=0,
            round=0,
            seq=0,
            kind=ChunkKind.UPGRADE,
            package_kind="firmware",
            file_id="file-2.0",
            policy={"execute_type": "now"},
            device_ids=devices,
            now=NOW,
        )
    # ... the platform call would happen here; the process dies before recording its answer
    os._exit(3)
