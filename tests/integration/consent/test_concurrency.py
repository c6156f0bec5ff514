"""1,000 concurrent confirmations over real HTTP lose none (and replays racing them change
nothing twice), on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.integration.consent.conftest import Clock, seed, serve

DEVICES = 1000
OWNERS = 100
REPLAYS = 200


async def _confirm_all(url: str, tokens: dict[str, str], owners: dict[str, str]) -> list[bool]:
    limits = httpx.Limits(max_connections=DEVICES + REPLAYS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def confirm(device: str) -> bool:
            resp = await client.post(
                "/enduserapi/v2/userBatchConfirmUpgrade",
                json={"items": [{"deviceId": device, "action": "confirm"}]},
                headers={"Authorization": f"Bearer {tokens[owners[device]]}"},
            )
            assert resp.status_code == 200, resp.text
            return bool(resp.json()["data"]["results"][0]["changed"])

        devices = list(owners) + list(owners)[:REPLAYS]
        return list(await asyncio.gather(*(confirm(d) for d in devices)))


@pytest.mark.slow
def test_a_thousand_concurrent_confirmations_lose_none(db_engine: Engine) -> None:
    owners = {f"dev-{i:04d}": f"owner-{i % OWNERS:03d}" for i in range(DEVICES)}
    _, tokens = seed(db_engine, platform_devices=list(owners), app_devices=[], owners=owners)
    server = serve(db_engine, Clock())
    try:
        changed = asyncio.run(_confirm_all(server.url, tokens, owners))
    finally:
        server.stop()
    assert Counter(changed) == {True: DEVICES, False: REPLAYS}
    with db_engine.connect() as conn:
        by_state = dict(
            conn.execute(sa.text("SELECT state, count(*) FROM device_consent GROUP BY state")).all()
        )
        events = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT subject) FROM event WHERE kind = :k"),
            {"k": "consent.confirmed"},
        ).one()
    assert by_state == {"confirmed": DEVICES}
    assert tuple(events) == (DEVICES, DEVICES)
