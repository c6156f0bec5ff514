"""API-call and duration estimate of a campaign: the platform's rate limit is the budget.

Lower bound on IoDM: one task creation per chunk, one subtask page per 100 devices,
``ceil(active tasks / 100)`` task-list pages per polling round, plus the read-only calls
of resolution (group lookups, member pages, inventory pages, package lookups).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "GROUP_MEMBER_PAGE",
    "INVENTORY_PAGE",
    "SUBTASK_PAGE",
    "TASK_PAGE",
    "ApiEstimate",
    "estimate_calls",
]

#: Page sizes of the IoDM listings the engine uses.
TASK_PAGE = 100
SUBTASK_PAGE = 100
GROUP_MEMBER_PAGE = 1000
INVENTORY_PAGE = 250


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
    rate_per_minute: int = 100,
    poll_rounds_per_batch: int = 1,
    group_member_counts: Sequence[int] = (),
    group_lookups: int = 0,
    inventory_devices: int = 0,
    package_lookups: int = 1,
) -> ApiEstimate:
    """Estimate the calls of a campaign.

    ``chunk_sizes_per_wave[w]`` lists the device counts of wave ``w``'s chunks. Each wave
    runs in batches of at most ``max_inflight_tasks`` tasks; each batch is polled
    ``poll_rounds_per_batch`` times (1 = the lower bound) at ``ceil(batch / 100)`` task-list
    pages per round. Each chunk's subtasks are read once: ``ceil(size / 100)`` pages.
    Resolution: ``group_lookups`` name lookups, ``ceil(members / 1000)`` pages per group
    (at least 1), ``ceil(inventory_devices / 250)`` inventory pages, ``package_lookups``.
    """
    if max_inflight_tasks < 1:
        raise ValueError(f"max_inflight_tasks must be >= 1, not {max_inflight_tasks}")
    creates = poll = subtasks = 0
    for sizes in chunk_sizes_per_wave:
        creates += len(sizes)
        subtasks += sum(math.ceil(s / SUBTASK_PAGE) for s in sizes)
        remaining = len(sizes)
        while remaining > 0:
            batch = min(remaining, max_inflight_tasks)
            poll += poll_rounds_per_batch * math.ceil(batch / TASK_PAGE)
            remaining -= batch
    resolution = group_lookups + package_lookups
    resolution += sum(max(1, math.ceil(n / GROUP_MEMBER_PAGE)) for n in group_member_counts)
    resolution += math.ceil(inventory_devices / INVENTORY_PAGE)
    return ApiEstimate(resolution, creates, poll, subtasks, rate_per_minute)
