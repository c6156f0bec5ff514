"""Pure planning: waves and chunks from a resolved device list, allowed windows, estimates.

No I/O here; the engine and the ``plan`` command feed it what resolution found.
"""

from fleetwave.plan.estimate import ApiEstimate, estimate_calls
from fleetwave.plan.waves import (
    CampaignPlan,
    ChunkPlan,
    WavePlan,
    WaveTarget,
    chunk,
    plan_waves,
    seed_int,
    stratified_order,
    wave_sizes,
)
from fleetwave.plan.windows import (
    WeeklyWindow,
    WindowSchedule,
    WindowTooShort,
    to_policy_window,
)

__all__ = [
    "ApiEstimate",
    "CampaignPlan",
    "ChunkPlan",
    "WavePlan",
    "WaveTarget",
    "WeeklyWindow",
    "WindowSchedule",
    "WindowTooShort",
    "chunk",
    "estimate_calls",
    "plan_waves",
    "seed_int",
    "stratified_order",
    "to_policy_window",
    "wave_sizes",
]
