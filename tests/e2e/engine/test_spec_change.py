"""``fleetwave run`` with a campaign file that moves or changes while the campaign runs
(subprocesses against a real simulator; judged from the platform's task list).

- a campaign folder copied elsewhere continues (ids files count by content, not path);
- mutable fields (description, poll interval, thresholds ...) are taken from the file
  with a ``spec_changed`` event; immutable ones are refused in one line unless
  ``--accept-spec-change``, which is recorded with who;
- devices added to ``exclude_file`` after the start are never sent a task.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwave import store
from fleetwave.sim.fleet import Fleet
from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import check_exactly_once, chunks, device_rows, events, sim_env
from tests.e2e.engine.helpers import fleetwave_cli as fleetwave

DEVICES, GROUPS, SEED = 400, 6, 13
SKIPPED = store.DeviceRunStatus.SKIPPED


@pytest.fixture()
def sim() -> Iterator[SimHandle]:
    with run_simulator(
        devices=DEVICES, groups=GROUPS, seed=SEED, clock="manual", rate_limit=0
    ) as handle:
        yield handle


def _tracker_ids(n: int) -> list[str]:
    fleet = Fleet(DEVICES, GROUPS, SEED)
    g = fleet.groups_by_name["trackers-madrid"]
    return [fleet.device_id(i) for i in range(g.start, g.start + n)]


def _campaign(name: str, *, targets: str, extra: str = "", approval: bool = False) -> str:
    return f"""\
name: {name}
description: first text
kind: software
package: {{version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}}
targets: {targets}
waves:
  - count: 5
  - percent: 100
    approval: {str(approval).lower()}
policy: {{poll_interval: 5m, task_timeout: 1h, max_devices_per_task: 40}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
{extra}"""


def _env(sim: SimHandle, db: Path) -> dict[str, str]:
    env = sim_env(sim, FLEETWAVE_DB_URL=f"sqlite:///{db}")
    engine = store.get_engine(env["FLEETWAVE_DB_URL"])
    store.upgrade_schema(engine)  # `run` never creates a store by itself
    engine.dispose()
    return env


def _tasks_per_device(sim: SimHandle, db: Any, name: str) -> Counter[str]:
    file_ids = {c.file_id for c in chunks(db, name)}
    return check_exactly_once(db, name, sim.stats()["tasks"], file_ids)


def test_a_moved_campaign_folder_continues_without_duplicates(
    sim: SimHandle, tmp_path: Path
) -> None:
    ids = _tracker_ids(60)
    first = tmp_path / "checkout-1" / "campaigns"
    first.mkdir(parents=True)
    (first / "ids.txt").write_text("\n".join(ids) + "\n")
    (first / "skip.txt").write_text("# nothing excluded yet\n")
    (first / "c.yaml").write_text(
        _campaign("moved", targets="{devices_file: ids.txt, exclude_file: skip.txt}")
    )
    env = _env(sim, tmp_path / "store.db")
    one = fleetwave(["run", "c.yaml", "--clock", "sim", "--max-rounds", "1"], env, first)
    assert "Traceback" not in one.stderr, one.stderr
    assert "moved:" in one.stdout, one.stdout + one.stderr

    moved = tmp_path / "elsewhere" / "checkout-2" / "campaigns"
    shutil.copytree(first, moved)
    shutil.rmtree(tmp_path / "checkout-1")  # the old checkout is gone
    two = fleetwave(["run", "c.yaml", "--clock", "sim"], env, moved)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "moved: completed" in two.stdout
    assert "spec" not in two.stderr

    db = store.get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    per_device = _tasks_per_device(sim, db, "moved")
    sent = {d for d, r in device_rows(db, "moved").items() if r.status is not SKIPPED}
    assert sent and sent <= set(ids)
    assert set(per_device) == sent and set(per_device.values()) == {1}
    assert events(db, "moved", ["spec_changed", "spec_change_accepted"]) == []


def test_mutable_changes_apply_and_immutable_ones_need_acceptance(
    sim: SimHandle, tmp_path: Path
) -> None:
    env = _env(sim, tmp_path / "store.db")
    text = _campaign("changes", targets="{groups: [{name: trackers-madrid}]}", approval=True)
    (tmp_path / "c.yaml").write_text(text)
    first = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert first.returncode == 0 and "changes: awaiting_approval" in first.stdout, first.stderr

    # mutable: description, poll interval, a threshold -> taken, with old and new values
    text = (
        text.replace("first text", "second text")
        .replace("poll_interval: 5m", "poll_interval: 2m")
        .replace("min_finished: 5", "min_finished: 7")
    )
    (tmp_path / "c.yaml").write_text(text)
    second = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changes: awaiting_approval" in second.stdout

    db = store.get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    (changed,) = events(db, "changes", ["spec_changed"])
    by_field = {c["field"]: c for c in changed.data["changes"]}
    assert set(by_field) == {"description", "policy.poll_interval", "thresholds.min_finished"}
    assert (by_field["description"]["old"], by_field["description"]["new"]) == (
        "first text",
        "second text",
    )
    assert (
        by_field["thresholds.min_finished"]["old"],
        by_field["thresholds.min_finished"]["new"],
    ) == (5, 7)

    # immutable: the chunk size -> refused in one line naming it, with the real command
    (tmp_path / "c.yaml").write_text(
        text.replace("max_devices_per_task: 40", "max_devices_per_task: 30")
    )
    refused = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line, line
    assert "policy.max_devices_per_task" in line
    assert "fleetwave run c.yaml --accept-spec-change" in line

    # accepted explicitly: recorded with who; the run goes on (approve, then complete)
    accepted = fleetwave(["run", "c.yaml", "--clock", "sim", "--accept-spec-change"], env, tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    (ev,) = events(db, "changes", ["spec_change_accepted"])
    assert ev.actor and ev.actor.startswith("cli") and ev.data["by"] == ev.actor
    assert ev.data["accepted"] == ["policy.max_devices_per_task"]
    ok = fleetwave(["approve", "changes"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    done = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert done.returncode == 0 and "changes: completed" in done.stdout, done.stderr
    # the new threshold is what the engine decided with
    inputs = [
        e.data["inputs"]
        for e in events(db, "changes", ["decision"])
        if "min_finished" in e.data.get("inputs", {})
    ]
    assert inputs and inputs[-1]["min_finished"] == 7
    per_device = _tasks_per_device(sim, db, "changes")
    assert set(per_device.values()) == {1}


def test_devices_excluded_after_the_start_get_no_task(sim: SimHandle, tmp_path: Path) -> None:
    env = _env(sim, tmp_path / "store.db")
    (tmp_path / "skip.txt").write_text("")
    text = _campaign(
        "excl",
        targets="{groups: [{name: trackers-madrid}], exclude_file: skip.txt}",
        approval=True,
    )
    (tmp_path / "c.yaml").write_text(text)
    first = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert first.returncode == 0 and "excl: awaiting_approval" in first.stdout, first.stderr

    db = store.get_engine(f"sqlite:///{tmp_path / 'store.db'}")
    rows = device_rows(db, "excl")
    second_wave = sorted(d for d, r in rows.items() if r.wave_index == 1)
    late = second_wave[:7]
    (tmp_path / "skip.txt").write_text("# taken out after the canary\n" + "\n".join(late) + "\n")
    assert fleetwave(["approve", "excl"], env, tmp_path).returncode == 0
    done = fleetwave(["run", "c.yaml", "--clock", "sim"], env, tmp_path)
    assert done.returncode == 0 and "excl: completed" in done.stdout, done.stdout + done.stderr

    per_device = _tasks_per_device(sim, db, "excl")
    assert not set(late) & set(per_device), "an excluded device got a task"
    rows = device_rows(db, "excl")
    assert set(per_device) == {d for d, r in rows.items() if r.status is not SKIPPED}
    assert set(per_device.values()) == {1}
    assert {rows[d].status for d in late} == {SKIPPED}
    dropped = events(db, "excl", ["devices_dropped"])
    assert sum(e.data["count"] for e in dropped) == 7
    assert sorted(d for e in dropped for d in e.data["devices"]) == late
    assert all(e.data["reason"] == "excluded" for e in dropped)
    # the changed exclusion list itself is a recorded (mutable) spec change
    (changed,) = events(db, "excl", ["spec_changed"])
    assert [c["field"] for c in changed.data["changes"]] == ["targets.exclude_file"]
