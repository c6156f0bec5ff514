"""The simulated owners' apps on an app-delivered plan: consent first, the upgrade only
once the engine released the package, results reported once."""

from __future__ import annotations

import asyncio
from collections import Counter

from fleetwave import store
from fleetwave.sim.owners import OwnerMix, OwnerPopulation
from tests.integration.consent.conftest import NOW, ConsentEnv


def test_apps_confirm_then_upgrade_once_released(env: ConsentEnv) -> None:
    owners = {"ble-a1": "alice", "ble-b1": "bob"}
    mix = OwnerMix(confirm=1, appoint=0, cancel=0, silent=0, auto=0, app_failure=0)
    population = OwnerPopulation(env.url, owners=owners, tokens=env.tokens, seed=1, mix=mix)
    first = asyncio.run(population.run_apps())
    assert first == Counter({"confirmed": 2})
    with store.session_scope(env.engine) as s:
        store.release_to_app(
            s, campaign_id=env.campaign_ids["c-app"], device_ids=["ble-a1"], now=NOW
        )
    second = asyncio.run(population.run_apps())
    assert second == Counter({"downloading": 1, "installing": 1, "succeeded": 1})
    assert asyncio.run(population.run_apps()) == Counter()  # ble-b1 still not released
    with store.session_scope(env.engine, read_only=True) as s:
        rows = store.consent_rows(
            s, campaign_id=env.campaign_ids["c-app"], device_ids=["ble-a1", "ble-b1"]
        )
    assert (rows["ble-a1"].app_status, rows["ble-b1"].app_status) == ("succeeded", "confirmed")
