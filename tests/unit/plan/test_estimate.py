"""The API-call estimate: the lower bound of DESIGN.md's performance lens."""

from __future__ import annotations

import math

import pytest

from fleetwave.plan import estimate_calls

#: IoDM's page sizes (its capabilities).
PAGES = {"tasks": 100, "task_devices": 100, "group_members": 1000, "devices": 250}


def test_lower_bound_for_one_wave() -> None:
    n = 10_000
    sizes = [256] * (n // 256) + [n % 256]
    e = estimate_calls(
        chunk_sizes_per_wave=[sizes], max_inflight_tasks=1000, rate_per_minute=100, page_sizes=PAGES
    )
    assert e.create_calls == math.ceil(n / 256) == 40
    assert e.subtask_calls == 39 * 3 + 1  # ceil(256/100) = 3 pages per full chunk; 16 -> 1
    assert e.poll_calls == 1  # 40 active tasks fit one task-list page
    assert e.resolution_calls == 1  # the package lookup
    assert e.total_calls == 1 + 40 + 1 + 118
    assert e.min_duration_seconds == pytest.approx(e.total_calls * 0.6)


def test_inflight_cap_adds_polling_batches_and_resolution_pages() -> None:
    e = estimate_calls(
        chunk_sizes_per_wave=[[10], [100] * 250],
        max_inflight_tasks=120,
        poll_rounds_per_batch=3,
        group_member_counts=[0, 2500],
        group_lookups=2,
        inventory_devices=1001,
        package_lookups=2,
        rate_per_minute=0,
        page_sizes=PAGES,
    )
    # wave 1: one batch of 1 task; wave 2: batches of 120, 120, 10 tasks -> pages 2, 2, 1
    assert e.poll_calls == 3 * (1 + 2 + 2 + 1)
    assert e.resolution_calls == 2 + 2 + (1 + 3) + 5
    assert e.min_duration_seconds == 0.0  # unlimited rate


def test_bad_inflight() -> None:
    with pytest.raises(ValueError, match="max_inflight_tasks"):
        estimate_calls(chunk_sizes_per_wave=[], max_inflight_tasks=0, page_sizes=PAGES)


def test_page_sizes_come_from_the_platform() -> None:
    """A platform with pages of 50 tasks and 20 device results costs more calls."""
    small = {"tasks": 50, "task_devices": 20, "group_members": 100, "devices": 10}
    e = estimate_calls(
        chunk_sizes_per_wave=[[100] * 120],
        max_inflight_tasks=120,
        group_member_counts=[250],
        inventory_devices=25,
        page_sizes=small,
    )
    assert e.poll_calls == 3  # ceil(120 / 50)
    assert e.subtask_calls == 120 * 5  # ceil(100 / 20) per task
    assert e.resolution_calls == 1 + 3 + 3  # package, ceil(250 / 100), ceil(25 / 10)
    with pytest.raises(ValueError, match="task_devices"):
        estimate_calls(chunk_sizes_per_wave=[[1]], max_inflight_tasks=1, page_sizes={"tasks": 100})
