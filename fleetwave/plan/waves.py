"""Waves and chunks: pure, deterministic splitting of a resolved device list.

The device order is a seeded, stratified shuffle (round-robin over buckets such as
(group, model)), so a canary of N devices touches up to N different buckets instead of
the first IDs of one group. Wave sizes are cumulative (see :func:`wave_sizes`). The
same inputs always give the same plan, whatever order the devices were resolved in.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "CampaignPlan",
    "ChunkPlan",
    "WavePlan",
    "WaveTarget",
    "chunk",
    "plan_waves",
    "seed_int",
    "stratified_order",
    "wave_sizes",
]


@dataclass(frozen=True, slots=True)
class WaveTarget:
    """How big a wave is, CUMULATIVELY: by its end, ``count`` devices (first wave only)
    or ``percent`` % of all devices (rounded up) have been targeted."""

    name: str
    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ValueError(f"wave {self.name!r}: give exactly one of count or percent")
        if self.count is not None and self.count < 1:
            raise ValueError(f"wave {self.name!r}: count must be >= 1, not {self.count}")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise ValueError(f"wave {self.name!r}: percent must be in (0, 100], not {self.percent}")


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One platform task's worth of devices: at most ``max_devices_per_task``."""

    wave_index: int
    index: int
    device_ids: tuple[str, ...]

    @property
    def key(self) -> str:
        """Stable identity inside a campaign plan, e.g. ``w0-c3`` (for exactly-once intents)."""
        return f"w{self.wave_index}-c{self.index}"

    def __len__(self) -> int:
        return len(self.device_ids)


@dataclass(frozen=True, slots=True)
class WavePlan:
    """One wave: its name, its chunks (in submission order); may be empty for tiny fleets."""

    index: int
    name: str
    chunks: tuple[ChunkPlan, ...]

    @property
    def device_count(self) -> int:
        return sum(len(c.device_ids) for c in self.chunks)

    @property
    def device_ids(self) -> tuple[str, ...]:
        """All devices of the wave, in order (built on demand from the chunks)."""
        return tuple(itertools.chain.from_iterable(c.device_ids for c in self.chunks))

    def iter_devices(self) -> Iterator[str]:
        for c in self.chunks:
            yield from c.device_ids


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """The whole split: waves in order, each with its chunks."""

    waves: tuple[WavePlan, ...]
    seed: str
    max_devices_per_task: int

    @property
    def device_count(self) -> int:
        return sum(w.device_count for w in self.waves)

    @property
    def chunk_count(self) -> int:
        return sum(len(w.chunks) for w in self.waves)

    def iter_chunks(self) -> Iterator[ChunkPlan]:
        for w in self.waves:
            yield from w.chunks


def seed_int(seed: str) -> int:
    """A stable 64-bit integer from a seed string (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")


def stratified_order(
    device_ids: Sequence[str], *, seed: str, buckets: Sequence[str] | None = None
) -> list[str]:
    """Order devices for rollout: deterministic, independent of the input order.

    Devices are grouped by ``buckets[i]`` (e.g. ``"meters-berlin/WM-100"``; all in one
    bucket when None), each bucket is sorted then shuffled with a seed derived from
    ``seed`` and the bucket, the buckets are put in a seeded order, and the result takes
    one device from each bucket in turn (round-robin) until all are used. ``device_ids``
    must be unique.
    """
    if buckets is not None and len(buckets) != len(device_ids):
        raise ValueError(f"{len(buckets)} bucket keys for {len(device_ids)} devices")
    by_bucket: dict[str, list[str]] = {}
    if buckets is None:
        by_bucket[""] = list(device_ids)
    else:
        for dev, b in zip(device_ids, buckets, strict=True):
            by_bucket.setdefault(b, []).append(dev)
    keys = sorted(by_bucket)
    random.Random(seed_int(f"{seed}|buckets")).shuffle(keys)
    lists = []
    for k in keys:
        members = by_bucket[k]
        members.sort()
        random.Random(seed_int(f"{seed}|{k}")).shuffle(members)
        lists.append(members)
    if len(lists) == 1:
        return lists[0]
    sentinel = object()
    return [
        d  # type: ignore[misc]
        for d in itertools.chain.from_iterable(itertools.zip_longest(*lists, fillvalue=sentinel))
        if d is not sentinel
    ]


def wave_sizes(total: int, waves: Sequence[WaveTarget]) -> list[int]:
    """Devices per wave for ``total`` devices. Cumulative targets: wave i ends with
    ``min(count, total)`` or ``ceil(total * percent / 100)`` devices targeted (never fewer
    than the previous wave); its size is the difference. The sizes always sum to the last
    cumulative target (``total`` when the last wave is 100 %)."""
    if total < 0:
        raise ValueError(f"total must be >= 0, not {total}")
    sizes: list[int] = []
    done = 0
    for w in waves:
        if w.count is not None:
            cum = min(w.count, total)
        else:
            assert w.percent is not None
            cum = math.ceil(Decimal(total) * Decimal(str(w.percent)) / 100)
        cum = max(min(cum, total), done)
        sizes.append(cum - done)
        done = cum
    return sizes


def chunk(device_ids: Sequence[str], size: int, *, wave_index: int = 0) -> tuple[ChunkPlan, ...]:
    """Consecutive chunks of at most ``size`` devices (all full but the last)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, not {size}")
    return tuple(
        ChunkPlan(wave_index, i, tuple(device_ids[start : start + size]))
        for i, start in enumerate(range(0, len(device_ids), size))
    )


def plan_waves(
    device_ids: Sequence[str],
    waves: Sequence[WaveTarget],
    *,
    seed: str,
    max_devices_per_task: int,
    buckets: Sequence[str] | None = None,
) -> CampaignPlan:
    """Split unique ``device_ids`` into waves of chunks: stratified seeded order, then
    cumulative wave sizes, then chunks of at most ``max_devices_per_task``."""
    if not waves:
        raise ValueError("a plan needs at least one wave")
    if len(set(device_ids)) != len(device_ids):
        raise ValueError("device_ids must be unique (resolve de-duplicates them)")
    ordered = stratified_order(device_ids, seed=seed, buckets=buckets)
    plans: list[WavePlan] = []
    start = 0
    for i, (w, n) in enumerate(zip(waves, wave_sizes(len(ordered), waves), strict=True)):
        plans.append(
            WavePlan(
                i, w.name, chunk(ordered[start : start + n], max_devices_per_task, wave_index=i)
            )
        )
        start += n
    return CampaignPlan(tuple(plans), seed, max_devices_per_task)
