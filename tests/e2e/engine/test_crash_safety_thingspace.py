"""Crash safety on ThingSpace: kill -9 ``fleetwave run`` against the ThingSpace simulator,
resume, and check from the platform's side that no device got a second upgrade.

A few seeded trials (the IoDM trials in ``test_crash_safety`` cover the breadth); two
simulator subprocesses, two trials each, one after the other. FOTA v1 creates are slowed
and a quarter of them lose their answer after ThingSpace committed the upgrade, so
intents without an upgrade id are common. Trials kill the run at a random amount of
store progress, or exactly while ThingSpace holds an upgrade the store has not recorded
(between a create and its record). Afterwards every device is in exactly one upgrade
request on the simulator (``device_request_counts``), every request is a recorded chunk,
and every device ended in a final state.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from fleetwave.sim.testing import SimProcess, start_simulator_process
from fleetwave.sim.thingspace.config import TSConfig
from fleetwave.sim.thingspace.testing import TSHandle
from tests.e2e.engine import crash
from tests.e2e.engine.crash import KillWhen, Trial
from tests.e2e.engine.helpers import check_exactly_once, device_rows, events

# about 75 s on a loaded 2-core machine (four trials, two at a time)
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

CAMPAIGN = """
name: ts-crash-{trial}
kind: firmware
platform: {{type: thingspace}}
package: {{version: "1.5.0", model: WM-200, manufacturer_name: Aquaflow}}
targets:
  devices: [{devices}]
waves:
  - count: 6
  - percent: 100
policy:
  poll_interval: 10m
  task_timeout: 12h
  max_devices_per_task: 4
  max_inflight_tasks: 3
thresholds: {{max_failure_percent: 80, min_finished: 5, wave_success_percent: 10}}
"""
# every FOTA v1 call slowed, half of them answered never (after ThingSpace acted)
SLOW_V1: dict[str, Any] = {
    "drop_rate": 0.5,
    "latency_ms": 250,
    "path_prefix": "/api/fota/v1/",
    "drop_after_commit": True,
}

PARALLEL = 2
TRIALS = 4
DEVICES_PER_TRIAL = 14
CREATE = "/api/fota/v1/upgrades"
# creates are slowed, and a quarter of them lose their answer after ThingSpace made them
LOST_CREATES: dict[str, Any] = {
    "drop_rate": 0.25,
    "latency_ms": 100,
    "methods": ["POST"],
    "path_prefix": CREATE,
    "drop_after_commit": True,
}


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SimProcess]]:
    """One ThingSpace simulator subprocess per parallel worker (manual clocks: each run
    advances its simulator's time)."""
    root = tmp_path_factory.mktemp("ts-crash-sims")
    started: list[SimProcess] = []
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            started += pool.map(
                lambda i: start_simulator_process(
                    root / f"sim-{i}",
                    platform="thingspace",
                    devices=400,
                    groups=5,
                    seed=9,
                    clock="manual",
                    rate_limit=0,
                ),
                range(PARALLEL),
            )
        yield started
    finally:
        for proc in started:
            proc.stop()


def _requests(admin: TSHandle) -> list[dict[str, Any]]:
    """The simulator's upgrade requests in the shape ``check_exactly_once`` reads."""
    return [
        {"operationId": f"{r['api']}:{r['id']}", "fileId": r["package"], "devices": r["devices"]}
        for r in admin.stats()["requests"]
    ]


def _platform_ahead(admin: TSHandle, name: str) -> KillWhen:
    """Holds while ThingSpace has more upgrades of this trial than the store recorded: the
    run made a create whose upgrade id is not in the store. To make that moment long
    enough to catch, every FOTA v1 call of the run is slowed and half of them lose their
    answer after ThingSpace did the work: a lost create is then reconciled through slow
    reads (a lost read is simply read again)."""
    before: list[int] = []

    def holds(db: sa.Engine) -> bool:
        if not before:  # first asked when the run starts
            before.append(int(admin.stats(requests=False)["requests_total"]))
            before.append(crash.recorded_operations(db, name))
            admin.set_faults(**SLOW_V1)
        made = int(admin.stats(requests=False)["requests_total"]) - before[0]
        return made > crash.recorded_operations(db, name) - before[1]

    return holds


def _kill_points(trial: int, admin: TSHandle, name: str) -> list[KillWhen] | None:
    """Odd trials: seeded random kills (as on IoDM) while a quarter of the creates lose
    their answer; even trials: kills between a create and its record (trial 2: twice)."""
    if trial % 2:
        admin.set_faults(**LOST_CREATES)
        return None
    return [_platform_ahead(admin, name) for _ in range(1 + trial // 2)]


@pytest.fixture(scope="module")
def trials(sims: list[SimProcess], tmp_path_factory: pytest.TempPathFactory) -> dict[int, Trial]:
    root = tmp_path_factory.mktemp("ts-crash")
    admins = [TSHandle(sim.base_url, TSConfig()) for sim in sims]
    # devices still on the package's from-version (a device already on 1.5.0 would make
    # ThingSpace refuse its whole upgrade: DeviceMismatch)
    on_old = [
        i
        for i in admins[0].imeis("WM-200")
        if admins[0].device(i)["softwareList"][0]["version"] == "1.4.2"
    ]
    imeis = on_old
    per_worker = -(-TRIALS // PARALLEL)
    assert len(imeis) >= per_worker * DEVICES_PER_TRIAL
    random.Random(7).shuffle(imeis)

    def worker(w: int) -> list[Trial]:
        admin = admins[w]
        out = []
        for k, trial in enumerate(range(w, TRIALS, PARALLEL)):
            devices = imeis[k * DEVICES_PER_TRIAL : (k + 1) * DEVICES_PER_TRIAL]
            out.append(
                crash.run_trial(
                    work=root / f"trial-{trial}",
                    trial=trial,
                    devices=devices,
                    campaign_text=CAMPAIGN.format(
                        trial=trial, devices=", ".join(f"'{d}'" for d in devices)
                    ),
                    platform_env={
                        "THINGSPACE_BASE_URL": admin.base_url,
                        "THINGSPACE_KEY": admin.client_key,
                        "THINGSPACE_SECRET": admin.client_secret,
                        "THINGSPACE_USERNAME": admin.username,
                        "THINGSPACE_PASSWORD": admin.password,
                        "THINGSPACE_ACCOUNT_NAME": admin.account,
                        "THINGSPACE_RATE_LIMIT": "0",
                    },
                    platform_tasks=lambda admin=admin: _requests(admin),
                    kill_when=_kill_points(trial, admin, f"ts-crash-{trial}"),
                )
            )
        return out

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            done = [t for batch in pool.map(worker, range(PARALLEL)) for t in batch]
        counts = [admin.stats()["device_request_counts"] for admin in admins]
    finally:
        for admin in admins:
            admin.clear_faults()
            admin.close()
    for t in done:  # what the simulator counted for each trial's devices
        t.tasks.append({"device_request_counts": counts[t.trial % PARALLEL]})
    return {t.trial: t for t in done}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_and_resume_on_thingspace(trials: dict[int, Trial], trial: int) -> None:
    t = trials[trial]
    assert t.killed_at, "the run finished before it could be killed"
    assert t.returncode == 0, t.output
    assert '"kind": "completed"' in t.output, t.output
    *requests, sim_side = t.tasks
    counts: dict[str, int] = sim_side["device_request_counts"]
    # the platform's own count: every device is in exactly one upgrade request
    assert {d: counts.get(d, 0) for d in t.devices} == dict.fromkeys(t.devices, 1)
    name = f"ts-crash-{trial}"
    per_device = check_exactly_once(t.db, name, requests, {r["fileId"] for r in requests})
    rows = device_rows(t.db, name)
    assert set(rows) == set(t.devices)
    assert all(r.status.is_final for r in rows.values()), {
        d: r.status for d, r in rows.items() if not r.status.is_final
    }
    assert all(per_device[d] == r.attempt == 1 for d, r in rows.items())


def test_thingspace_trials_hit_the_hard_cases(trials: dict[int, Trial]) -> None:
    """Runs died, creates had unknown outcomes and lost creates were found again on
    ThingSpace rather than sent twice."""
    seen: Counter[str] = Counter()
    for t in trials.values():
        for kind in ("outcome_unknown", "chunk_reconciled", "intents_reconciled"):
            seen[kind] += len(events(t.db, f"ts-crash-{t.trial}", [kind]))
    assert sum(len(t.killed_at) for t in trials.values()) >= TRIALS
    assert seen["chunk_reconciled"] > 0, seen
    # a run killed between a create and its record left an intent the next run reconciled
    left = [
        len(events(t.db, f"ts-crash-{t.trial}", ["intents_reconciled"]))
        for t in trials.values()
        if t.trial % 2 == 0
    ]
    assert sum(left) > 0, left
