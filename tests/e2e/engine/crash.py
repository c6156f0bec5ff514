"""The kill -9 trial runner shared by the crash-safety tests of every platform.

One trial writes a campaign file and a fresh store, starts ``fleetwave run --clock sim``
as a subprocess against a simulator, SIGKILLs it once or twice at a point chosen by the
caller (a random amount of store progress, or a condition such as "the platform holds
an upgrade the store has not recorded"), then lets a last run finish.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fleetwave import store

_MIGRATE = threading.Lock()

# the trial's store -> kill the run now?
KillWhen = Callable[[sa.Engine], bool]


def store_events(db: sa.Engine) -> int:
    """How many events the store holds (0 before the run created its tables)."""
    try:
        with db.connect() as conn:
            return int(conn.execute(sa.text("select count(*) from event")).scalar_one())
    except sa.exc.OperationalError:
        return 0


def recorded_operations(db: sa.Engine, name: str) -> int:
    """How many chunks of campaign ``name`` have their platform operation id recorded."""
    try:
        with db.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "select count(*) from chunk join campaign on chunk.campaign_id = "
                        "campaign.id where campaign.name = :n and chunk.operation_id is not null"
                    ),
                    {"n": name},
                ).scalar_one()
            )
    except sa.exc.OperationalError:
        return 0


def _start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Trial:
    """What one trial did and what the platform and the store say afterwards."""

    trial: int
    devices: list[str]
    kills: int
    killed_at: list[int]
    returncode: int
    output: str
    tasks: list[dict[str, Any]]
    db: sa.Engine


def run_trial(
    *,
    work: Path,
    trial: int,
    devices: list[str],
    campaign_text: str,
    platform_env: dict[str, str],
    platform_tasks: Callable[[], list[dict[str, Any]]],
    kill_when: list[KillWhen] | None = None,
) -> Trial:
    """Run one trial in ``work``. Without ``kill_when`` it kills once or twice (seeded by
    ``trial``) after 1-12 more store events; otherwise once per condition, as soon as it
    holds. ``platform_tasks`` lists the platform's tasks afterwards."""
    rng = random.Random(1000 + trial)
    work.mkdir()
    campaign = work / "campaign.yaml"
    campaign.write_text(campaign_text)
    db_url = f"sqlite:///{work / 'store.db'}"
    env = dict(os.environ)
    env.update(platform_env)
    env.update(
        FLEETWAVE_DB_URL=db_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_TELEMETRY_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "fleetwave",
        "run",
        str(campaign),
        "--clock",
        "sim",
        "--wait-lease",
        "--no-prefect",
        "--quiet",
        "--json",
    ]
    log = work / "runs.log"
    db = store.get_engine(db_url)
    with _MIGRATE:  # Alembic's context is process-global: one migration at a time
        store.upgrade_schema(db)  # as `fleetwave db upgrade` does: a run never creates a store
    if kill_when is None:
        conditions: list[KillWhen] = []
        for _ in range(rng.randint(1, 2)):
            conditions.append(_after_events(rng.randint(1, 12)))
    else:
        conditions = list(kill_when)
    killed_at: list[int] = []
    for condition in conditions:
        proc = _start(cmd, env, work, log)
        deadline = time.monotonic() + 90
        while proc.poll() is None and not condition(db) and time.monotonic() < deadline:
            time.sleep(0.02)
        if kill_when is None:
            time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at.append(store_events(db))
        proc.wait(timeout=30)
    final = subprocess.run(cmd, env=env, cwd=work, capture_output=True, timeout=300)
    output = final.stdout.decode() + final.stderr.decode() + log.read_text()[-3000:]
    mine = set(devices)
    tasks = [t for t in platform_tasks() if mine.issuperset(t["devices"])]
    return Trial(trial, devices, len(conditions), killed_at, final.returncode, output, tasks, db)


def _after_events(more: int) -> KillWhen:
    """A condition that holds once the store has ``more`` events beyond its count now
    (counted when first asked, i.e. when the run starts)."""
    target: list[int] = []

    def holds(db: sa.Engine) -> bool:
        if not target:
            target.append(store_events(db) + more)
        return store_events(db) >= target[0]

    return holds
