"""A consent campaign end to end on the ThingSpace simulator over HTTP (FOTA v1 firmware),
owners answering over real HTTP through the consent API on the same store, judged from the
upgrade requests the simulator received: confirmed devices in one request each, declined
and silent ones in none, and the appointed device sent inside its appointment (FOTA v1
takes dates only, so it cannot carry the appointment's hours)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pendulum
import pytest

from fleetwave import store
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.runner import Outcome, OutcomeKind, advance
from fleetwave.platforms.thingspace import ThingSpacePlatform, ThingSpaceSettings
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from fleetwave.spec import CampaignSpec
from tests.e2e.engine.helpers import chunks, device_rows, new_store, spec_of

D = store.DeviceRunStatus

SPEC = """
name: ts-consent
kind: firmware
platform: {{type: thingspace}}
package: {{version: "1.5.0", model: WM-200, manufacturer_name: Aquaflow}}
targets: {{devices_file: {ids}}}
waves:
  - percent: 100
policy: {{poll_interval: 10m, task_timeout: 4h}}
thresholds: {{max_failure_percent: 95, min_finished: 5, wave_success_percent: 0}}
consent: {{period: 2d, answer_timeout: 6h}}
"""


@dataclass
class Scenario:
    """One consent campaign on the ThingSpace simulator and what both sides recorded."""

    outcome: Outcome
    confirmed: list[str]
    appointed: str
    declined: str
    silent: list[str]
    start: pendulum.DateTime
    end: pendulum.DateTime
    requests: list[dict[str, Any]]
    runs: dict[str, store.DeviceRun]
    chunks: list[store.Chunk]


async def _advance(
    spec: CampaignSpec, db: Any, sim: TSHandle, clock: SimLinkedClock, rounds: int
) -> Outcome:
    settings = ThingSpaceSettings(
        base_url=sim.base_url,
        key=sim.client_key,
        secret=sim.client_secret,
        username=sim.username,
        password=sim.password,
        account_name=sim.account,
        rate_limit=0,
    )
    platform = ThingSpacePlatform(settings, clock=clock)
    try:
        return await advance(spec, db=db, platform=platform, clock=clock, max_rounds=rounds)
    finally:
        await platform.aclose()


def _scenario(tmp_path: Path) -> Scenario:
    with run_thingspace_simulator(
        devices=300, groups=5, seed=5, clock="manual", rate_limit=0, failure_rate=0.0
    ) as sim:
        imeis = sim.imeis("WM-200")[:12]
        confirmed, (appointed, declined), silent = imeis[:6], imeis[6:8], imeis[8:]
        ids = tmp_path / "ids.txt"
        ids.write_text("\n".join(imeis) + "\n")
        spec = spec_of(SPEC.format(ids=ids))
        path = tmp_path / "consent.db"
        db = new_store(path)
        t0 = sim.clock()
        with store.session_scope(db) as s:
            store.import_device_owners(s, rows=[(d, "owner") for d in imeis], now=t0)
            token = store.issue_owner_token(s, owner_id="owner", now=t0)
        clock = SimLinkedClock(sim.base_url)
        api_db = store.get_engine(f"sqlite:///{path}")
        server = ConsentServer(create_consent_app(engine=api_db, now=clock.now), "127.0.0.1", 0)
        server.start_in_thread()
        start = (t0 + timedelta(hours=3)).replace(second=0, microsecond=0)
        end = start + timedelta(hours=2)
        try:
            first = asyncio.run(_advance(spec, db, sim, clock, 1))
            assert first.kind is OutcomeKind.STOPPED, first
            assert sim.stats()["requests"] == []  # nobody consented yet
            items = [
                *({"deviceId": d, "action": "confirm"} for d in confirmed),
                {
                    "deviceId": appointed,
                    "action": "appoint",
                    "appointStart": start.to_iso8601_string(),
                    "appointEnd": end.to_iso8601_string(),
                },
                {"deviceId": declined, "action": "cancel"},
            ]
            resp = httpx.post(
                f"{server.url}/enduserapi/v2/userBatchConfirmUpgrade",
                json={"items": items},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            outcome = asyncio.run(_advance(spec, db, sim, clock, 2000))
            requests = sim.stats()["requests"]
        finally:
            server.stop()
            clock.close()
            api_db.dispose()
    return Scenario(
        outcome=outcome,
        confirmed=confirmed,
        appointed=appointed,
        declined=declined,
        silent=silent,
        start=start,
        end=end,
        requests=requests,
        runs=device_rows(db, spec.name),
        chunks=chunks(db, spec.name),
    )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield _scenario(tmp_path_factory.mktemp("ts-consent"))


def test_only_consenting_devices_reach_thingspace_once_each(scenario: Scenario) -> None:
    sc = scenario
    assert sc.outcome.kind is OutcomeKind.COMPLETED, sc.outcome
    per_device: Counter[str] = Counter()
    for r in sc.requests:
        per_device.update(r["devices"])
    assert per_device == Counter([*sc.confirmed, sc.appointed])
    assert {sc.runs[d].status for d in [*sc.confirmed, sc.appointed]} <= {
        D.SUCCEEDED,
        D.FAILED,
        D.TIMED_OUT,
    }
    assert (sc.runs[sc.declined].status, sc.runs[sc.declined].failure_kind) == (
        D.SKIPPED,
        "consent_declined",
    )
    assert {(sc.runs[d].status, sc.runs[d].failure_kind) for d in sc.silent} == {
        (D.SKIPPED, "consent_expired")
    }
    # the appointed device's upgrade request was made inside its appointment, and it ran
    (request,) = [r for r in sc.requests if sc.appointed in r["devices"]]
    created = pendulum.parse(request["created"])
    assert sc.start <= created < sc.end, (created, sc.start, sc.end)
    assert sc.runs[sc.appointed].status is D.SUCCEEDED


def test_an_appointment_on_fota_v1_is_one_intent_not_one_a_round(scenario: Scenario) -> None:
    mine = [c for c in scenario.chunks if scenario.appointed in c.device_ids]
    assert [c.operation_id is not None for c in mine] == [True], [
        (c.operation_id, c.policy.get("start_time")) for c in mine
    ]
