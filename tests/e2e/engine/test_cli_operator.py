"""Operator commands that must say what is true: approvals and appointments, rejected
campaigns, claim conflicts, campaigns that target no device, runs that fail before they
start, and unicode in ``status`` (subprocesses of ``python -m fleetwave``, real simulator,
real SQLite file)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest

from fleetwave import store
from fleetwave.sim.fleet import Fleet
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import fleetwave_cli as fleetwave

from .helpers import check_exactly_once

#: The simulated fleet (its groups and device IDs are a pure function of these).
DEVICES, GROUPS, SEED = 400, 6, 13

CAMPAIGN = """
name: {name}
kind: software
package: {{version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {targets}
waves:
  - count: 5
  - percent: 100
    approval: true
policy: {{poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 40}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
"""
TRACKERS = "{groups: [{name: trackers-madrid}]}"


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    # one simulator per test: a campaign upgrades its devices, the next must find them old
    with run_simulator(
        devices=DEVICES, groups=GROUPS, seed=SEED, clock="manual", rate_limit=0
    ) as handle:
        yield handle


def _env(tmp_path: Path, sim: SimHandle | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["FLEETWAVE_DB_URL"] = f"sqlite:///{tmp_path / 'ops.db'}"
    env["IODM_RATE_LIMIT"] = "0"
    env.pop("PREFECT_API_URL", None)
    if sim is not None:
        env.update(IODM_BASE_URL=sim.base_url, IODM_APP_ID=sim.app_id, IODM_SECRET=sim.secret)
    return env


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback)."""
    text = result.stderr.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    return text


def _ready(tmp_path: Path, sim: SimHandle | None = None) -> dict[str, str]:
    env = _env(tmp_path, sim)
    upgraded = fleetwave(["db", "upgrade"], env, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    return env


def _write(tmp_path: Path, file: str, name: str, targets: str = TRACKERS) -> None:
    (tmp_path / file).write_text(CAMPAIGN.format(name=name, targets=targets))


def _iso(t: pendulum.DateTime) -> str:
    return t.in_tz("UTC").format("YYYY-MM-DDTHH:mm")


def _platform_tasks(sim: SimHandle) -> list[dict]:
    return list(sim.stats()["tasks"])


def test_approve_refuses_past_reversed_repeated_and_finished(
    sim: SimHandle, tmp_path: Path
) -> None:
    env = _ready(tmp_path, sim)
    _write(tmp_path, "c.yaml", "ops-approve")
    run = ["run", "c.yaml", "--clock", "sim"]
    first = fleetwave(run, env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "ops-approve: awaiting_approval" in first.stdout

    past = fleetwave(
        ["approve", "ops-approve", "--start", "2020-01-01T00:00", "--end", "2020-01-01T02:00"],
        env,
        tmp_path,
    )
    assert past.returncode == 2
    assert "starts at 2020-01-01T00:00:00Z, which is not in the future" in _one_line(past)

    now = sim.clock()
    reversed_ = fleetwave(
        [
            *("approve", "ops-approve", "--clock", "sim"),
            *("--start", _iso(now.add(hours=4)), "--end", _iso(now.add(hours=1))),
        ],
        env,
        tmp_path,
    )
    assert reversed_.returncode == 2
    line = _one_line(reversed_)
    assert "ends (" in line and ") before it starts (" in line and "-180" not in line

    start, end = now.add(hours=2), now.add(hours=4)
    booked = fleetwave(
        ["approve", "ops-approve", "--clock", "sim", "--start", _iso(start), "--end", _iso(end)],
        env,
        tmp_path,
    )
    assert booked.returncode == 0, booked.stderr
    assert "wave 2 (wave-2) of ops-approve approved by cli" in booked.stdout
    assert f"for {start.replace(second=0).to_iso8601_string()}" in booked.stdout

    again = fleetwave(["approve", "ops-approve", "--comment", "go"], env, tmp_path)
    assert again.returncode == 2
    line = _one_line(again)
    assert "wave 2 of ops-approve was already approved by cli" in line
    assert "(appointment " in line and "--replace" in line

    replaced = fleetwave(["approve", "ops-approve", "--replace", "--comment", "go"], env, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert "(replaces the decision approved by cli" in replaced.stdout

    finished = fleetwave(["approve", "ops-approve", "--wave", "1", "--replace"], env, tmp_path)
    assert finished.returncode == 2
    assert "wave 1 of ops-approve has finished (succeeded)" in _one_line(finished)
    # the old 0-based form names the first wave, and says waves count from 1 now
    old = fleetwave(["approve", "ops-approve", "--wave", "0", "--replace"], env, tmp_path)
    assert old.returncode == 2
    assert "waves count from 1 now" in old.stderr
    assert "wave 1 of ops-approve has finished (succeeded)" in old.stderr

    # the replacing approval (no appointment) stands: the wave runs at once
    done = fleetwave([*run, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"kind": "completed"' in done.stdout
    after = fleetwave(["approve", "ops-approve", "--wave", "1"], env, tmp_path)
    assert after.returncode == 2 and "is completed; there is nothing to approve" in after.stderr

    db = store.get_engine(env["FLEETWAVE_DB_URL"])
    try:
        fleet = Fleet(DEVICES, GROUPS, SEED)
        file_ids = {p.file_id for p in fleet.packages}
        per_device = check_exactly_once(db, "ops-approve", _platform_tasks(sim), file_ids)
        assert per_device and max(per_device.values()) == 1
    finally:
        db.dispose()


def test_rejected_campaign_and_claim_conflict_name_real_commands(
    sim: SimHandle, tmp_path: Path
) -> None:
    env = _ready(tmp_path, sim)
    _write(tmp_path, "a.yaml", "ops-first")
    _write(tmp_path, "b.yaml", "ops-second")
    first = fleetwave(["run", "a.yaml", "--clock", "sim"], env, tmp_path)
    assert first.returncode == 0 and "awaiting_approval" in first.stdout, first.stderr

    # the same devices in a second campaign: the hint names commands that exist
    conflict = fleetwave(["run", "b.yaml", "--clock", "sim"], env, tmp_path)
    assert conflict.returncode == 2
    line = _one_line(conflict)
    assert "held by campaign 'ops-first'" in line
    assert "`fleetwave halt ops-first`" in line and "cancel" not in line

    rejected = fleetwave(["approve", "ops-first", "--reject", "--comment", "no"], env, tmp_path)
    assert rejected.returncode == 0 and "rejected" in rejected.stdout, rejected.stderr
    halted = fleetwave(["run", "a.yaml", "--clock", "sim"], env, tmp_path)
    assert halted.returncode == 4
    assert "ops-first: halted - wave 2 rejected by cli" in halted.stdout
    assert "cannot be resumed" in halted.stdout and "new `name:`" in halted.stdout

    resume = fleetwave(["resume", "ops-first"], env, tmp_path)
    assert resume.returncode == 2
    line = _one_line(resume)
    assert "wave 2 was rejected at its approval gate" in line and "new `name:`" in line

    # every later run says the same, never that `resume` continues it
    again = fleetwave(["run", "a.yaml", "--clock", "sim"], env, tmp_path)
    assert again.returncode == 4
    assert "cannot be resumed" in again.stdout and "fleetwave resume" not in again.stdout

    # the rejected campaign released its devices: the second campaign now runs
    second = fleetwave(["run", "b.yaml", "--clock", "sim"], env, tmp_path)
    assert second.returncode == 0 and "ops-second: awaiting_approval" in second.stdout


def test_campaign_targeting_a_group_of_another_model(sim: SimHandle, tmp_path: Path) -> None:
    env = _ready(tmp_path, sim)
    _write(tmp_path, "c.yaml", "ops-zero", "{groups: [{name: meters-berlin}]}")

    plan = fleetwave(["plan", "c.yaml"], env, tmp_path)
    assert plan.returncode == 2
    assert "total eligible" in plan.stdout  # the preview is still shown
    warning = _one_line(plan)
    assert warning.startswith("WARNING: campaign 'ops-zero': the targets give no eligible device")
    assert "group meters-berlin: 95 members, 0 eligible" in warning
    assert "`fleetwave run` refuses such a campaign (exit 2)" in warning

    run = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert run.returncode == 2
    line = _one_line(run)
    assert "campaign 'ops-zero': the targets give no eligible device" in line
    assert "the name stays free" in line
    assert _platform_tasks(sim) == []
    status = fleetwave(["status", "ops-zero"], env, tmp_path)
    assert status.returncode == 2 and "no campaign named 'ops-zero'" in status.stderr

    # the same name with the right group runs
    _write(tmp_path, "c.yaml", "ops-zero", TRACKERS)
    fixed = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "ops-zero: awaiting_approval" in fixed.stdout
    assert len(_platform_tasks(sim)) >= 1


def test_campaign_with_an_empty_ids_file(sim: SimHandle, tmp_path: Path) -> None:
    env = _ready(tmp_path, sim)
    ids = tmp_path / "ids.txt"
    ids.write_text("# trackers to upgrade, one per line\n")
    _write(tmp_path, "c.yaml", "ops-ids", "{devices_file: ids.txt}")

    plan = fleetwave(["plan", "c.yaml", "--json"], env, tmp_path)
    assert plan.returncode == 2
    assert '"eligible": 0' in plan.stdout and "0 device IDs named" in _one_line(plan)

    run = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert run.returncode == 2
    assert "the targets give no eligible device (0 device IDs named)" in _one_line(run)
    assert _platform_tasks(sim) == []
    listing = fleetwave(["status"], env, tmp_path)
    assert listing.returncode == 0 and "no campaigns in the database" in listing.stdout

    madrid = Fleet(DEVICES, GROUPS, SEED).groups_by_name["trackers-madrid"]
    chosen = [
        Fleet(DEVICES, GROUPS, SEED).device_id(i) for i in range(madrid.start, madrid.start + 5)
    ]
    ids.write_text("\n".join(chosen) + "\n")
    fixed = fleetwave(["run", "c.yaml", "--clock", "sim", "--json"], env, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert '"kind": "completed"' in fixed.stdout
    tasks = _platform_tasks(sim)
    assert sorted(d for t in tasks for d in t["devices"]) == sorted(chosen)


def test_runs_that_fail_before_planning_leave_no_campaign(sim: SimHandle, tmp_path: Path) -> None:
    env = _ready(tmp_path, sim)
    _write(tmp_path, "c.yaml", "ops-start")

    wrong = dict(env, IODM_SECRET="not-the-secret")
    refused = fleetwave(["run", "c.yaml", "--clock", "sim"], wrong, tmp_path)
    assert refused.returncode == 3
    assert "not-the-secret" not in refused.stdout + refused.stderr
    assert _one_line(refused).startswith("platform error:")
    status = fleetwave(["status"], env, tmp_path)
    assert status.returncode == 0 and "no campaigns in the database" in status.stdout, status.stdout

    (tmp_path / "missing.yaml").write_text(
        CAMPAIGN.format(name="ops-start", targets=TRACKERS).replace('"5.3.0"', '"9.9.9"')
    )
    missing = fleetwave(["run", "missing.yaml", "--clock", "sim"], env, tmp_path)
    assert missing.returncode in (2, 3)
    _one_line(missing)
    status = fleetwave(["status", "ops-start"], env, tmp_path)
    assert status.returncode == 2 and "no campaign named 'ops-start'" in status.stderr
    assert _platform_tasks(sim) == []

    ok = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert ok.returncode == 0 and "ops-start: awaiting_approval" in ok.stdout, ok.stderr


def test_status_shows_unicode_as_written(tmp_path: Path) -> None:
    env = _ready(tmp_path)
    db = store.get_engine(env["FLEETWAVE_DB_URL"])
    try:
        with store.session_scope(db) as s:
            store.create_or_get_campaign(
                s, name="ops-unicode", spec={"name": "ops-unicode"}, now=pendulum.now("UTC")
            )
    finally:
        db.dispose()
    reason = "Änderungssperre über Weihnachten ✓"
    halted = fleetwave(["halt", "ops-unicode", "--reason", reason], env, tmp_path)
    assert halted.returncode == 0, halted.stderr
    status = fleetwave(["status", "ops-unicode"], env, tmp_path)
    assert status.returncode == 0, status.stderr
    events = [line for line in status.stdout.splitlines() if "campaign_status" in line]
    assert events and reason in events[0]
    assert "\\u00c4" not in status.stdout and "\\u2713" not in status.stdout
    as_json = fleetwave(["status", "ops-unicode", "--json"], env, tmp_path)
    assert reason in as_json.stdout and "\\u00c4" not in as_json.stdout
