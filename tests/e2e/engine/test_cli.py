"""``fleetwave run|halt|resume|approve`` as an operator uses them (subprocesses, real sim)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import fleetwave_cli as fleetwave
from tests.e2e.engine.helpers import sim_env

CAMPAIGN = """
name: cli-trackers
kind: software
package: {version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}
targets: {groups: [{name: trackers-madrid}]}
waves:
  - count: 5
  - percent: 100
    approval: true
policy: {poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 40}
thresholds: {max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=400, groups=6, seed=13, clock="manual", rate_limit=0) as handle:
        yield handle


def test_run_approve_halt_resume(sim: SimHandle, tmp_path: Path) -> None:
    env = sim_env(sim, FLEETWAVE_DB_URL=f"sqlite:///{tmp_path / 'cli.db'}")
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    run = ["run", "c.yaml", "--clock", "sim"]

    created = fleetwave(["db", "upgrade"], env, tmp_path)  # a run never creates a store
    assert created.returncode == 0, created.stderr
    first = fleetwave(run, env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "cli-trackers: awaiting_approval" in first.stdout
    assert "fleetwave approve cli-trackers" in first.stdout

    short = fleetwave(
        ["approve", "cli-trackers", "--start", "2026-01-05T10:00", "--end", "2026-01-05T10:30"],
        env,
        tmp_path,
    )
    assert short.returncode == 2
    assert short.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "at least one hour" in short.stderr

    ok = fleetwave(["approve", "cli-trackers", "--comment", "canary fine"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "wave 2 (wave-2) of cli-trackers approved" in ok.stdout

    halted = fleetwave(["halt", "cli-trackers", "--reason", "change freeze"], env, tmp_path)
    assert halted.returncode == 0 and "halted" in halted.stdout
    stopped = fleetwave(run, env, tmp_path)
    assert stopped.returncode == 4 and "cli-trackers: halted" in stopped.stdout

    resumed = fleetwave(["resume", "cli-trackers"], env, tmp_path)
    assert resumed.returncode == 0 and "resumed" in resumed.stdout
    done = fleetwave([*run, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"kind": "completed"' in done.stdout
    totals = json.loads(done.stdout)["campaign_totals"]  # over every run, not only this one
    parts = ("succeeded", "failed", "timed_out", "unfinished", "cancelled")
    assert totals["tasks"] >= 2 and totals["succeeded"] > 0
    assert totals["targeted"] == sum(totals[k] for k in parts)

    # a run of a completed campaign says so, with the campaign's totals, not "devices 0"
    again = fleetwave(run, env, tmp_path)
    assert again.returncode == 0, again.stderr
    first_line, devices = again.stdout.strip().splitlines()
    assert first_line == "cli-trackers: completed - already completed"
    assert devices.startswith(f"devices: {totals['targeted']} targeted ({totals['succeeded']} ")
    assert f"{totals['skipped']} skipped; {totals['tasks']} tasks in all; " in devices
    assert devices.endswith("this run: 0 tasks submitted, 0 API calls")

    # --json prints errors as JSON on stdout too (and the one line on stderr)
    (tmp_path / "bad.yaml").write_text("name: [\n")
    bad = fleetwave(["run", "bad.yaml", "--json"], env, tmp_path)
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["kind"] == "user_error"

    unknown = fleetwave(["halt", "no-such-campaign"], env, tmp_path)
    assert unknown.returncode == 2 and "no campaign named 'no-such-campaign'" in unknown.stderr


def test_run_refuses_limits_the_platform_cannot_meet(sim: SimHandle, tmp_path: Path) -> None:
    """Checked against the platform's capabilities before anything is stored or submitted:
    one line at FILE:LINE:COL, exit 2, no task on the platform, no campaign in the store."""
    env = sim_env(sim, FLEETWAVE_DB_URL=f"sqlite:///{tmp_path / 'limits.db'}")
    text = CAMPAIGN.replace("name: cli-trackers", "name: cli-too-big").replace(
        "max_devices_per_task: 40", "max_devices_per_task: 400"
    )
    (tmp_path / "c.yaml").write_text(text)
    assert fleetwave(["db", "upgrade"], env, tmp_path).returncode == 0
    tasks_before = len(sim.stats()["tasks"])
    refused = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: c.yaml:10:69: policy.max_devices_per_task: 400 is above the largest task of "
        "platform iodm (256 devices); use 256 or less, or leave it out"
    ]
    assert len(sim.stats()["tasks"]) == tasks_before
    status = fleetwave(["status", "cli-too-big"], env, tmp_path)
    assert status.returncode == 2 and "no campaign named 'cli-too-big'" in status.stderr
