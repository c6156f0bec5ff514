"""Crash safety: kill -9 ``fleetwave run`` at random points, resume, check exactly-once.

20 seeded trials against simulator subprocesses (manual clock). Each trial writes a
campaign file and a fresh store, starts ``fleetwave run --clock sim`` as a subprocess,
kills it with SIGKILL once the store shows a random amount of progress (once or twice),
then lets a last run finish. Create-task calls are slowed down and a quarter of them
dropped after the platform committed the task, so intents without an operationId and
OutcomeUnknown are common. Trials run four at a time, one simulator each. Afterwards
the simulator's task list must show no task the store does not know, every device
exactly the tasks of its chunks and never two in one round, and every device must have
ended in a final state.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET
from tests.e2e.conftest import SimProcess, start_simulator_process
from tests.e2e.engine import crash
from tests.e2e.engine.crash import Trial
from tests.e2e.engine.helpers import check_exactly_once, device_rows, events

# the trials fixture runs all 20 trials (four at a time); on a loaded 2-core machine that
# can take longer than the default per-test timeout
pytestmark = pytest.mark.timeout(900)

TRIALS = 20

CAMPAIGN = """
name: crash-{trial}
kind: firmware
package: {{version: "1.5.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}}
targets:
  devices: [{devices}]
  skip_up_to_date: false
waves:
  - count: 8
  - percent: 100
policy:
  poll_interval: 2m
  task_timeout: 30m
  max_devices_per_task: 6
  max_inflight_tasks: 4
  resubmit:
    fail: {{rounds: 1, backoff: 5m}}
    timeout: {{rounds: 1, backoff: 5m}}
thresholds: {{max_failure_percent: 80, min_finished: 5, wave_success_percent: 10}}
"""


DEVICES_PER_TRIAL = 18
PARALLEL = 4


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SimProcess]]:
    """One simulator per parallel worker: IoDM keeps one valid token per appId, so
    processes of different trials must not share an application."""
    root = tmp_path_factory.mktemp("crash-sims")
    started: list[SimProcess] = []
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            started += pool.map(
                lambda i: start_simulator_process(
                    root / f"sim-{i}",
                    devices=500,
                    groups=6,
                    seed=21,
                    clock="manual",
                    rate_limit=0,
                ),
                range(PARALLEL),
            )
        yield started
    finally:
        for proc in started:
            proc.stop()


class Admin:
    """The simulator's admin API, plus the IDs of its water meters."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def faults(self, **body: Any) -> None:
        self.http.post("/sim/faults", json=body).raise_for_status()

    def tasks(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = self.http.get("/sim/stats").json()
        return list(body["tasks"])

    def meters(self) -> list[str]:
        login = self.http.post(
            "/iocm/app/sec/v1.1.0/login", data={"appId": DEMO_APP_ID, "secret": DEMO_SECRET}
        ).json()
        headers = {"app_key": DEMO_APP_ID, "Authorization": f"Bearer {login['accessToken']}"}
        found: list[str] = []
        for page_no in range(100):
            page = self.http.get(
                "/iocm/app/dm/v1.4.0/devices",
                params={"deviceType": "WaterMeter", "pageSize": 250, "pageNo": page_no},
                headers=headers,
            ).json()
            found += [d["deviceId"] for d in page["devices"]]
            if len(page["devices"]) < 250:
                break
        return sorted(found)


def run_trial(sim: SimProcess, admin: Admin, root: Path, trial: int, devices: list[str]) -> Trial:
    return crash.run_trial(
        work=root / f"trial-{trial}",
        trial=trial,
        devices=devices,
        campaign_text=CAMPAIGN.format(trial=trial, devices=", ".join(devices)),
        platform_env={
            "IODM_BASE_URL": sim.base_url,
            "IODM_APP_ID": DEMO_APP_ID,
            "IODM_SECRET": DEMO_SECRET,
            "IODM_RATE_LIMIT": "0",
        },
        platform_tasks=admin.tasks,
    )


@pytest.fixture(scope="module")
def trials(sims: list[SimProcess], tmp_path_factory: pytest.TempPathFactory) -> dict[int, Trial]:
    """All trials, :data:`PARALLEL` at a time, each worker on its own simulator; trials of
    one worker use disjoint devices.

    Create-task calls are slowed and a quarter of them dropped after the platform
    committed the task, for every run, the last one included.
    """
    root = tmp_path_factory.mktemp("crash")
    admins = [Admin(sim.base_url) for sim in sims]
    meters = admins[0].meters()
    per_worker = -(-TRIALS // PARALLEL)
    assert len(meters) >= per_worker * DEVICES_PER_TRIAL
    random.Random(7).shuffle(meters)
    for admin in admins:
        admin.faults(
            drop_rate=0.25,
            latency_ms=100,
            methods=["POST"],
            path_prefix="/iodm/northbound/v1.5.0/operations",
            drop_after_commit=True,
        )

    def worker(w: int) -> list[Trial]:
        out = []
        for k, trial in enumerate(range(w, TRIALS, PARALLEL)):
            devices = meters[k * DEVICES_PER_TRIAL : (k + 1) * DEVICES_PER_TRIAL]
            out.append(run_trial(sims[w], admins[w], root, trial, devices))
        return out

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            done = [t for batch in pool.map(worker, range(PARALLEL)) for t in batch]
    finally:
        for admin in admins:
            admin.faults()
    return {t.trial: t for t in done}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_and_resume(trials: dict[int, Trial], trial: int) -> None:
    t = trials[trial]
    assert t.killed_at, "the run finished before it could be killed"
    assert t.returncode == 0, t.output
    assert '"kind": "completed"' in t.output, t.output
    name = f"crash-{trial}"
    per_device = check_exactly_once(t.db, name, t.tasks, {x["fileId"] for x in t.tasks})
    rows = device_rows(t.db, name)
    assert set(rows) == set(t.devices)
    assert all(r.status.is_final for r in rows.values()), {
        d: r.status for d, r in rows.items() if not r.status.is_final
    }
    assert all(per_device[d] == r.attempt for d, r in rows.items())


def test_trials_hit_the_hard_cases(trials: dict[int, Trial]) -> None:
    """The trials are not vacuous: runs died, creates had unknown outcomes, intents were
    reconciled by adopting the platform's task."""
    seen: Counter[str] = Counter()
    for t in trials.values():
        for kind in (
            "outcome_unknown",
            "chunk_reconciled",
            "chunk_abandoned",
            "intents_reconciled",
        ):
            seen[kind] += len(events(t.db, f"crash-{t.trial}", [kind]))
    assert sum(len(t.killed_at) for t in trials.values()) >= TRIALS
    assert seen["outcome_unknown"] > 0 and seen["chunk_reconciled"] > 0, seen
