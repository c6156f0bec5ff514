"""The one launcher of a simulator in its own process (e2e tests and bench/ use it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fleetwave.sim.testing import run_simulator_process, start_simulator_process


def test_runs_in_its_own_process_and_stops(tmp_path: Path) -> None:
    with run_simulator_process(tmp_path, devices=20, groups=1, clock="manual", rate_limit=0) as sim:
        assert sim.process.poll() is None
        assert sim.base_url == f"http://127.0.0.1:{sim.port}"
        clock = httpx.get(f"{sim.base_url}/sim/clock", timeout=10).json()
        assert clock
        assert sim.log == tmp_path / "sim.log"
    assert sim.process.poll() is not None  # stopped on exit


def test_without_workdir_its_temporary_directory_goes_on_stop() -> None:
    sim = start_simulator_process(devices=5, groups=1, clock="manual")
    try:
        assert sim.log.exists()
    finally:
        sim.stop()
    assert not sim.log.parent.exists()
    sim.stop()  # idempotent


def test_a_simulator_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not start") as err:
        start_simulator_process(tmp_path, clock="no-such-clock")
    assert "--clock no-such-clock" in str(err.value)
