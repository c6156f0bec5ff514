"""One store wherever ``fleetwave run`` is started, and no run on a store it would lose.

Judged from the platform's side: the simulator's task list must hold no device twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.sim.testing import SimHandle, run_simulator
from tests.e2e.engine.helpers import fleetwave_cli as fleetwave
from tests.e2e.engine.helpers import sim_env

CAMPAIGN = """
name: store-trackers
kind: software
package: {version: "5.3.0", device_type: Tracker, model: TRK-9, manufacturer_name: Roamly}
targets: {groups: [{name: trackers-madrid}]}
waves:
  - count: 10
  - percent: 100
policy: {poll_interval: 5m, task_timeout: 6h, max_devices_per_task: 5}
thresholds: {max_failure_percent: 90, min_finished: 5, wave_success_percent: 10}
"""

#: Exit codes of a refusal (user error) or a platform error: a run stopped by --max-rounds
#: exits with neither, whatever its outcome's code.
_REFUSED = (2, 3)


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_simulator(devices=300, groups=6, seed=13, clock="manual", rate_limit=0) as handle:
        yield handle


def _env(sim: SimHandle, home: Path) -> dict[str, str]:
    env = sim_env(sim, FLEETWAVE_HOME=str(home))
    for name in ("FLEETWAVE_DB_URL", "XDG_DATA_HOME"):
        env.pop(name, None)
    return env


def _tasks_per_device(sim: SimHandle) -> Counter[str]:
    per_device: Counter[str] = Counter()
    for task in sim.stats()["tasks"]:
        per_device.update(task["devices"])
    return per_device


def test_a_run_from_another_directory_continues_the_same_campaign(
    sim: SimHandle, tmp_path: Path
) -> None:
    env = _env(sim, tmp_path / "home")
    campaigns = tmp_path / "checkout" / "campaigns"
    campaigns.mkdir(parents=True)
    (campaigns / "g.yaml").write_text(CAMPAIGN)
    created = fleetwave(["db", "upgrade"], env, tmp_path / "checkout")
    assert created.returncode == 0, created.stderr

    first = fleetwave(
        ["run", "campaigns/g.yaml", "--max-rounds", "1", "--clock", "sim", "--quiet"],
        env,
        tmp_path / "checkout",
    )
    assert first.returncode not in _REFUSED, first.stderr
    sent = _tasks_per_device(sim)
    assert sent, first.stdout + first.stderr  # the first run did send tasks

    second = fleetwave(
        ["run", "g.yaml", "--max-rounds", "1", "--clock", "sim", "--quiet"], env, campaigns
    )
    assert second.returncode not in _REFUSED, second.stderr
    per_device = _tasks_per_device(sim)
    twice = {d: n for d, n in per_device.items() if n > 1}
    assert not twice, f"devices with a second task: {twice}"
    # one store: the one under FLEETWAVE_HOME; none appeared beside either working directory
    assert not (tmp_path / "checkout" / ".fleetwave").exists()
    assert not (campaigns / ".fleetwave").exists()
    assert str(tmp_path / "home" / "fleetwave.db") in created.stdout
    current = fleetwave(["db", "current"], env, campaigns)
    assert current.returncode == 0 and "(FLEETWAVE_HOME)" in current.stdout


def test_an_in_memory_store_is_refused_before_any_task(sim: SimHandle, tmp_path: Path) -> None:
    env = _env(sim, tmp_path / "home")
    env["FLEETWAVE_DB_URL"] = "sqlite://"
    (tmp_path / "g.yaml").write_text(CAMPAIGN)
    run = fleetwave(["run", "g.yaml", "--max-rounds", "1", "--clock", "sim"], env, tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    err = run.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "in-memory database" in err and "--new-store" in err
    assert sim.stats()["tasks"] == []
    assert not (tmp_path / "home").exists()  # nothing created on the way either


def test_a_new_store_must_be_asked_for(sim: SimHandle, tmp_path: Path) -> None:
    env = _env(sim, tmp_path / "home")
    (tmp_path / "g.yaml").write_text(CAMPAIGN)
    argv = ["run", "g.yaml", "--max-rounds", "1", "--clock", "sim", "--quiet"]
    refused = fleetwave(argv, env, tmp_path)
    assert refused.returncode == 2
    err = refused.stderr.strip()
    assert "\n" not in err and f"no fleetwave store at {tmp_path / 'home' / 'fleetwave.db'}" in err
    assert "fleetwave db upgrade" in err and "--new-store" in err
    assert sim.stats()["tasks"] == []
    accepted = fleetwave([*argv, "--new-store"], env, tmp_path)
    assert accepted.returncode not in _REFUSED, accepted.stderr
    assert sim.stats()["tasks"]
    assert (tmp_path / "home" / "fleetwave.db").is_file()
