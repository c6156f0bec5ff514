"""A campaign across three nightly windows and the spring DST change of Europe/Berlin.

The in-memory platform (engine behaviour: the platform is not the point) runs on a
ManualClock from Friday 2026-03-27; the clocks go forward in
Berlin in the night of Saturday to Sunday (02:00 CET -> 03:00 CEST). Each run ends when
the window closes (or a soak period outlasts it); the test then moves the
clock to the opening the run reported, like the next scheduled run would.
"""

from __future__ import annotations

from pathlib import Path

import pendulum

from fleetwave import store
from fleetwave.clock import ManualClock
from fleetwave.engine.runner import OutcomeKind
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from tests.e2e.engine.helpers import (
    campaign_row,
    chunks,
    device_rows,
    memory_exactly_once,
    new_store,
    run_memory,
    spec_of,
)

TZ = "Europe/Berlin"
NIGHTLY = """
name: nightly-dst
kind: software
package: {version: "2.1.0", device_type: WaterMeter, model: WM-200, manufacturer_name: Aquaflow}
targets: {groups: [{name: meters-vienna}]}
waves:
  - count: 5
    soak: 6h
  - percent: 30
    soak: 6h
  - percent: 100
policy:
  execute: window
  poll_interval: 10m
  task_timeout: 2h
  max_devices_per_task: 40
windows:
  timezone: Europe/Berlin
  allowed:
    - {days: daily, start: "22:00", end: "04:00"}
thresholds: {max_failure_percent: 30, min_finished: 5, wave_success_percent: 70}
"""


def _platform() -> MemoryPlatform:
    start = pendulum.datetime(2026, 3, 27, 12, 0, tz="UTC")
    return MemoryPlatform(MemoryConfig(devices=1200, seed=11), clock=ManualClock(start))


def _inside_window(instant: pendulum.DateTime) -> bool:
    local = instant.in_tz(TZ)
    return local.hour >= 22 or local.hour < 4


async def test_three_nightly_windows_across_dst(tmp_path: Path) -> None:
    platform = _platform()
    clock = platform.clock
    assert isinstance(clock, ManualClock)
    db = new_store(tmp_path / "nightly.db")
    spec = spec_of(NIGHTLY)
    opens: list[pendulum.DateTime] = []
    for _ in range(12):
        outcome, _calls = await run_memory(spec, db, platform)
        if outcome.kind is OutcomeKind.COMPLETED:
            break
        assert outcome.kind is OutcomeKind.WAITING_WINDOW, outcome
        assert outcome.next_open is not None and outcome.next_open > clock.now()
        assert campaign_row(db, spec.name).status is store.CampaignStatus.PAUSED
        opens.append(outcome.next_open)
        clock.advance((outcome.next_open - clock.now()).total_seconds())
    assert outcome.kind is OutcomeKind.COMPLETED, outcome

    # every run ended waiting for 22:00 Berlin time: 21:00 UTC in CET, 20:00 UTC in CEST
    assert [o.in_tz(TZ).format("HH:mm") for o in opens] == ["22:00"] * len(opens)
    assert {o.in_tz("UTC").format("MM-DD HH:mm") for o in opens} >= {
        "03-27 21:00",
        "03-28 21:00",
        "03-29 20:00",
    }

    # tasks were created only inside windows, on three different nights, and each task
    # carried its window's close as the platform's end time (03:00 UTC before the change,
    # 02:00 UTC after it)
    done = [c for c in chunks(db, spec.name) if c.operation_id]
    nights: dict[str, set[str]] = {}
    for c in done:
        created = pendulum.instance(c.created_at)
        assert _inside_window(created), created
        night = created.in_tz(TZ).subtract(hours=12).format("YYYY-MM-DD")
        assert c.policy["execute_type"] == "custom"
        end = pendulum.parse(c.policy["end_time"])
        assert isinstance(end, pendulum.DateTime)
        assert end.in_tz(TZ).format("HH:mm") == "04:00"
        nights.setdefault(night, set()).add(end.in_tz("UTC").format("HH:mm"))
    assert sorted(nights) == ["2026-03-27", "2026-03-28", "2026-03-29"]
    assert nights["2026-03-27"] == {"03:00"}
    assert nights["2026-03-28"] == {"02:00"}  # the DST night: 5 hours long
    assert nights["2026-03-29"] == {"02:00"}

    rows = device_rows(db, spec.name)
    assert all(r.status.is_final for r in rows.values())
    memory_exactly_once(db, spec.name, platform)
