"""Lease holder names and whether their process lives (real processes, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from fleetwave.engine.lease import (
    Holder,
    Liveness,
    default_holder,
    describe_holder,
    holder_liveness,
    process_start,
    this_host,
)
from tests.processes import live_process


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    with live_process(60) as proc:
        yield proc


def test_default_holder_names_this_process() -> None:
    raw = default_holder()
    holder = Holder.parse(raw)
    assert holder is not None
    assert (holder.host, holder.pid, holder.start) == (
        this_host(),
        os.getpid(),
        process_start(os.getpid()),
    )
    assert default_holder() != raw  # each run its own name
    assert describe_holder(raw).startswith(f"process {os.getpid()} on ")
    assert holder_liveness(raw) is Liveness.ALIVE


def test_a_finished_process_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert holder_liveness(f"{this_host()}:{proc.pid}:0:abcd") is Liveness.DEAD


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while _state(proc.pid) != "Z":  # exited, not reaped: os.kill(pid, 0) still works
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, 0)
        assert holder_liveness(f"{this_host()}:{proc.pid}:0:abcd") is Liveness.DEAD
    finally:
        proc.wait()


def test_a_live_process_is_alive_and_a_reused_pid_is_not(
    sleeper: subprocess.Popen[bytes],
) -> None:
    start = process_start(sleeper.pid)
    assert holder_liveness(f"{this_host()}:{sleeper.pid}:{start}:abcd") is Liveness.ALIVE
    assert holder_liveness(f"{this_host()}:{sleeper.pid}:0:abcd") is Liveness.ALIVE
    # the same PID with another start time: the holder died and its PID was reused
    assert holder_liveness(f"{this_host()}:{sleeper.pid}:{int(start) + 1}:abcd") is Liveness.DEAD


def test_other_hosts_and_foreign_names_are_unknown(sleeper: subprocess.Popen[bytes]) -> None:
    assert holder_liveness(f"elsewhere/1:{sleeper.pid}:0:abcd") is Liveness.UNKNOWN
    assert holder_liveness("run-a") is Liveness.UNKNOWN
    assert describe_holder("run-a") == "'run-a'"


def test_lease_ttl_defaults_to_ten_minutes_or_three_polls() -> None:
    from fleetwave.engine.lease import lease_ttl

    assert lease_ttl(60, {}) == timedelta(minutes=10)
    assert lease_ttl(600, {}) == timedelta(minutes=30)


def test_lease_ttl_from_the_environment() -> None:
    from fleetwave.engine.lease import lease_ttl

    assert lease_ttl(600, {"FLEETWAVE_LEASE_TTL": "20"}) == timedelta(seconds=20)


@pytest.mark.parametrize("raw", ["5", "soon", "nan", "inf", "-30"])
def test_a_bad_lease_ttl_says_what_and_how(raw: str) -> None:
    from fleetwave.engine.lease import lease_ttl
    from fleetwave.errors import UserError

    with pytest.raises(UserError, match=f"FLEETWAVE_LEASE_TTL='{raw}'.*at least 10") as err:
        lease_ttl(60, {"FLEETWAVE_LEASE_TTL": raw})
    assert err.value.hint is not None and "FLEETWAVE_LEASE_TTL" in err.value.hint
