"""API-call and duration estimate of a campaign: the platform's rate limit is the budget.

Lower bound: one task creation per chunk, one page of device results per
``task_devices`` devices, ``ceil(active tasks / tasks)`` task-list pages per polling
round, plus the read-only calls of resolution (group lookups, member pages, inventory
pages, package lookups). The page sizes are the platform's (its capabilities).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PAGE_KEYS", "ApiEstimate", "estimate_calls"]

#: The listings an estimate counts pages of (keys of ``Capabilities.page_sizes``).
PAGE_KEYS = ("tasks", "task_devices", "group_members", "devices")


@dataclass(frozen=True, slots=True)
class ApiEstimate:
    """Estimated platform calls by purpose and the least time they take at ``rate_per_minute``."""

    resolution_calls: int
    create_calls: int
    poll_calls: int
    subtask_calls: int
    rate_per_minute: int

    @property
    def total_calls(self) -> int:
        return self.resolution_calls + self.create_calls + self.poll_calls + self.subtask_calls

    @property
    def min_duration_seconds(self) -> float:
        """``total_calls / rate`` in seconds (0 when the rate is unlimited)."""
        if self.rate_per_minute <= 0:
            return 0.0
        return self.total_calls * 60.0 / self.rate_per_minute


def estimate_calls(
    *,
    chunk_sizes_per_wave: Sequence[Sequence[int]],
    max_inflight_tasks: int,
    page_sizes: Mapping[str, int],
    rate_per_minute: int = 0,
    poll_rounds_per_batch: int = 1,
    group_member_counts: Sequence[int] = (),
    group_lookups: int = 0,
    inventory_devices: int = 0,
    package_lookups: int = 1,
) -> ApiEstimate:
    """Estimate the calls of a campaign.

    ``chunk_sizes_per_wave[w]`` lists the device counts of wave ``w``'s chunks. Each wave
    runs in batches of at most ``max_inflight_tasks`` tasks; each batch is polled
    ``poll_rounds_per_batch`` times (1 = the lower bound) at ``ceil(batch / tasks)``
    task-list pages per round. Each chunk's device results are read once:
    ``ceil(size / task_devices)`` pages. Resolution: ``group_lookups`` name lookups,
    ``ceil(members / group_members)`` pages per group (at least 1),
    ``ceil(inventory_devices / devices)`` inventory pages, ``package_lookups``.
    ``page_sizes`` holds those four page sizes (the platform's ``Capabilities.page_sizes``);
    ``rate_per_minute`` 0 means no limit.
    """
    if max_inflight_tasks < 1:
        raise ValueError(f"max_inflight_tasks must be >= 1, not {max_inflight_tasks}")
    missing = [k for k in PAGE_KEYS if page_sizes.get(k, 0) < 1]
    if missing:
        raise ValueError(f"page_sizes lacks a size for {', '.join(missing)}")
    task_page, result_page = page_sizes["tasks"], page_sizes["task_devices"]
    member_page, inventory_page = page_sizes["group_members"], page_sizes["devices"]
    creates = poll = subtasks = 0
    for sizes in chunk_sizes_per_wave:
        creates += len(sizes)
        subtasks += sum(math.ceil(s / result_page) for s in sizes)
        remaining = len(sizes)
        while remaining > 0:
            batch = min(remaining, max_inflight_tasks)
            poll += poll_rounds_per_batch * math.ceil(batch / task_page)
            remaining -= batch
    resolution = group_lookups + package_lookups
    resolution += sum(max(1, math.ceil(n / member_page)) for n in group_member_counts)
    resolution += math.ceil(inventory_devices / inventory_page)
    return ApiEstimate(resolution, creates, poll, subtasks, rate_per_minute)
