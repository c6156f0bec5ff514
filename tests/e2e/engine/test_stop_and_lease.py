"""Stopping ``fleetwave run`` and its lease, as an operator meets them (subprocesses, real sim).

SIGTERM ends a run like Ctrl-C: one line, the lease released, the next run continues at
once and no device gets a second task. A lease whose holder died on this host is taken
over at once; a live holder is never robbed, not even by ``--wait-lease --clock sim``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.lease import this_host
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import (
    campaign_row,
    check_exactly_once,
    chunks,
    events,
    fleetwave_cli,
    sim_env,
)
from tests.processes import live_process

NAME = "stop-trackers"
CAMPAIGN = f"""
name: {NAME}
kind: software
package: {{version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {{groups: [{{name: trackers-madrid}}]}}
waves:
  - count: 5
  - percent: 100
policy: {{poll_interval: 1h, task_timeout: 7d, max_devices_per_task: 20}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
"""


@pytest.fixture()
def sim() -> Iterator[SimHandle]:
    with run_simulator(
        devices=400, groups=6, seed=21, clock="manual", rate_limit=0, failure_rate=0.0
    ) as handle:
        # devices wake twice a day: a campaign takes a few dozen rounds of simulated time
        handle.set_devices(models=["TRK-9"], connectivity="sleeper", wake_minutes=720)
        yield handle


@pytest.fixture()
def work(tmp_path: Path, sim: SimHandle) -> tuple[Path, dict[str, str]]:
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    env = sim_env(sim, FLEETWAVE_DB_URL=f"sqlite:///{tmp_path / 'stop.db'}")
    engine = store.get_engine(env["FLEETWAVE_DB_URL"])
    store.upgrade_schema(engine)  # `run` never creates a store by itself
    engine.dispose()
    return tmp_path, env


RUN = ["run", "c.yaml", "--clock", "sim", "--quiet"]


def _fleetwave(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return fleetwave_cli(args, env, cwd, timeout=300)


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m fleetwave ARGS`` (or, when ARGS start with ``-c``, that Python code) started
    in the background, its output piped as text."""
    return subprocess.Popen(
        [sys.executable, *(args if args[0] == "-c" else ["-m", "fleetwave", *args])],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _db(env: dict[str, str]) -> sa.Engine:
    return store.get_engine(env["FLEETWAVE_DB_URL"])


def _wait_for(cond: object, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except (sa.exc.OperationalError, store.NotFoundError):  # no store or campaign yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _set_lease(db: sa.Engine, holder: str | None, expires: datetime | None) -> None:
    table = store.Campaign.__table__  # type: ignore[attr-defined]
    with db.begin() as conn:
        conn.execute(
            sa.update(table)
            .where(table.c.name == NAME)
            .values(lease_holder=holder, lease_expires_at=expires)
        )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _first_round(cwd: Path, env: dict[str, str]) -> sa.Engine:
    """One round (the campaign is planned and its first task sent), ended by --max-rounds;
    returns the store."""
    first = _fleetwave([*RUN, "--max-rounds", "1"], cwd, env)
    assert first.returncode == 7, first.stdout + first.stderr
    return _db(env)


def _assert_exactly_once(sim: SimHandle, db: sa.Engine) -> None:
    tasks = sim.stats()["tasks"]
    per_device = check_exactly_once(db, NAME, tasks, {t["fileId"] for t in tasks})
    assert per_device and max(per_device.values()) == 1, per_device.most_common(3)


def test_sigterm_releases_the_lease_and_the_next_run_continues(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    # every northbound call is slow: the run is mid-step (a create call or a poll in
    # flight) when the signal comes, never already finished
    sim.set_faults(latency_ms=400)
    proc = _start(RUN, cwd, env)
    db = _db(env)
    _wait_for(
        lambda: proc.poll() is not None or any(c.operation_id for c in chunks(db, NAME)),
        "a first task",
    )
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 143, (out, err)
    assert err.strip().splitlines() == [
        f"{NAME}: stopped by SIGTERM; lease released; run again to continue"
    ], err
    row = campaign_row(db, NAME)
    assert row.lease_holder is None and row.status is store.CampaignStatus.RUNNING
    assert events(db, NAME, ["run_stopped"])

    sim.clear_faults()
    again = _fleetwave(RUN, cwd, env)  # no --wait-lease: the lease is free at once
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{NAME}: completed" in again.stdout
    _assert_exactly_once(sim, db)


def test_max_rounds_is_validated_and_ends_the_run_stopped(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    bad = _fleetwave([*RUN, "--max-rounds", "-5"], cwd, env)
    assert bad.returncode == 2
    assert "--max-rounds" in bad.stderr and "Traceback" not in bad.stderr

    first = _fleetwave([*RUN, "--max-rounds", "1"], cwd, env)
    assert first.returncode == 7, first.stdout + first.stderr
    assert f"{NAME}: stopped - stopped after 1 rounds" in first.stdout
    db = _db(env)
    row = campaign_row(db, NAME)
    assert row.status is store.CampaignStatus.RUNNING and row.lease_holder is None
    ended = events(db, NAME, ["run_ended"])
    assert ended[-1].data["kind"] == "stopped"

    rest = _fleetwave(RUN, cwd, env)
    assert rest.returncode == 0 and f"{NAME}: completed" in rest.stdout, rest.stdout + rest.stderr
    _assert_exactly_once(sim, db)


def test_dead_holder_on_this_host_is_taken_over_at_once(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    db = _first_round(cwd, env)
    # a run that died holding the lease (SIGKILL, OOM): its lease would last 10 minutes
    dead = f"{this_host()}:{_dead_pid()}:0:deadbeef"
    _set_lease(db, dead, sim.clock().add(hours=1))

    again = _fleetwave(RUN, cwd, env)  # no --wait-lease
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{NAME}: completed" in again.stdout
    taken = events(db, NAME, ["lease_taken_over"])
    assert [e.data["from"] for e in taken] == [dead]
    assert "no longer running" in taken[0].data["why"]
    _assert_exactly_once(sim, db)


def test_an_expired_lease_of_another_host_is_taken_with_an_event(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    _first_round(cwd, env)
    db = _db(env)
    # a worker on another machine died holding the lease; it stopped renewing an hour ago
    gone = "worker-7/4026531836:4242:0:0badf00d"
    _set_lease(db, gone, sim.clock() - timedelta(hours=1))

    again = _fleetwave(RUN, cwd, env)
    assert again.returncode == 0, again.stdout + again.stderr
    taken = events(db, NAME, ["lease_taken_over"])
    assert [e.data["from"] for e in taken] == [gone]
    assert "process 4242 on worker-7" in taken[0].data["why"]
    assert "expired" in taken[0].data["why"]
    _assert_exactly_once(sim, db)


def test_live_holder_is_refused_with_the_wait_lease_hint(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    db = _first_round(cwd, env)
    with live_process() as sleeper:
        # alive on this host, its lease already lapsed in campaign time: still not taken
        _set_lease(db, f"{this_host()}:{sleeper.pid}:0:cafe0001", sim.clock() - timedelta(hours=1))
        refused = _fleetwave(RUN, cwd, env)
        assert refused.returncode == 6, refused.stdout + refused.stderr
        line = refused.stderr.strip()
        assert line.count("\n") == 0 and "Traceback" not in line
        assert f"process {sleeper.pid} on {this_host().split('/')[0]}" in line
        assert "--wait-lease" in line
        assert campaign_row(db, NAME).lease_holder == f"{this_host()}:{sleeper.pid}:0:cafe0001"


def test_wait_lease_never_steals_nor_moves_the_shared_clock(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    db = _first_round(cwd, env)
    with live_process() as sleeper:
        live = f"{this_host()}:{sleeper.pid}:0:cafe0002"
        _set_lease(db, live, sim.clock().add(minutes=10))
        before = sim.clock()
        waiter = _start([*RUN, "--wait-lease"], cwd, env)
        assert waiter.stderr is not None
        said = waiter.stderr.readline()  # up and saying what it waits for (or ended)
        time.sleep(3)  # a few of its looks at the lease
        assert campaign_row(db, NAME).lease_holder == live  # not taken from a live run
        assert sim.clock() == before  # waiting never advances the simulator's clock
        assert waiter.poll() is None, said + waiter.communicate()[1]
        assert "waiting (--wait-lease" in said and f"process {sleeper.pid}" in said, said
    # the holder is gone: the waiter takes over at once and finishes the campaign
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, out + err
    assert f"{NAME}: completed" in out
    assert [e.data["from"] for e in events(db, NAME, ["lease_taken_over"])] == [live]
    _assert_exactly_once(sim, db)


# A Prefect flow-run process (cancellation from the UI, a worker's SIGTERM) runs the engine
# under Prefect's own SIGTERM bridge, which raises TerminationSignal instead of ours.
UNDER_PREFECT = """
import asyncio, sys
from prefect.utilities.engine import capture_sigterm
from fleetwave.cli.run import open_store
from fleetwave.engine.runner import advance
from fleetwave.sim.linked_clock import clock_from_option
with capture_sigterm():
    asyncio.run(advance("c.yaml", db=open_store(), clock=clock_from_option("sim")))
"""


def test_sigterm_under_prefects_signal_bridge_releases_the_lease(
    sim: SimHandle, work: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = work
    sim.set_faults(latency_ms=400)
    proc = _start(["-c", UNDER_PREFECT], cwd, env)
    db = _db(env)
    _wait_for(
        lambda: proc.poll() is not None or any(c.operation_id for c in chunks(db, NAME)),
        "a first task",
    )
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM  # Prefect re-raises the signal to end
    row = campaign_row(db, NAME)
    assert row.lease_holder is None and row.status is store.CampaignStatus.RUNNING
    assert events(db, NAME, ["run_stopped"])

    sim.clear_faults()
    again = _fleetwave(RUN, cwd, env)
    assert again.returncode == 0 and f"{NAME}: completed" in again.stdout, again.stderr
    _assert_exactly_once(sim, db)
