"""Stage 2, resolve targets: groups, explicit IDs and ID files -> one de-duplicated device list.

Streams the platform's paged listings (group members, then one inventory pass filtered
by the package's device type) and keeps one small string per device, so a million
devices stay within a few hundred MB. Every device left out is recorded with its
:class:`SkipReason`. Read-only against the Platform protocol.
"""

from __future__ import annotations

import difflib
import enum
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fleetwave.errors import UserError
from fleetwave.platforms.base import DeviceInfo, PackageInfo, Platform
from fleetwave.platforms.errors import NotFound
from fleetwave.spec.model import CampaignSpec, GroupRef

__all__ = [
    "GroupCount",
    "NoEligibleDevices",
    "Resolution",
    "SkipReason",
    "TargetProblem",
    "no_eligible_devices",
    "read_id_file",
    "resolve_targets",
]

log = logging.getLogger(__name__)

#: Bucket of devices named explicitly (not through a group).
EXPLICIT = "(explicit)"


class TargetProblem(UserError):
    """A target named in the campaign file does not exist or cannot be read."""


class NoEligibleDevices(TargetProblem):
    """The targets resolve to no eligible device (a group of another model, an empty ID
    file, every device excluded or already on the target version)."""


class SkipReason(enum.StrEnum):
    """Why a named device is not upgraded."""

    EXCLUDED = "excluded"
    """Listed in exclude / exclude_file."""
    UP_TO_DATE = "up_to_date"
    """Already runs the target version."""
    INCOMPATIBLE = "incompatible"
    """Its model or manufacturer differs from the package's."""
    NOT_IN_INVENTORY = "not_in_inventory"
    """Not found among the inventory's devices of the package's type (other type, or unknown)."""
    CONNECTIVITY = "connectivity"
    """Its status (ONLINE/OFFLINE/...) is not in targets.connectivity."""
    REMOVED = "removed"
    """Taken out of targets.devices / devices_file after planning (never sent)."""
    OTHER_VERSION = "other_version"
    """Runs a version the package does not upgrade from (the platform would refuse the task)."""
    INELIGIBLE = "ineligible"
    """The platform says it refuses any update naming this device (not enrolled, unlicensed)."""
    REFUSED = "refused"
    """The platform refused a task naming this device, and only because of it (the rest of
    its chunk is sent again without it)."""

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    SkipReason.EXCLUDED: "excluded by the campaign",
    SkipReason.UP_TO_DATE: "already on the target version",
    SkipReason.INCOMPATIBLE: "model or manufacturer differs from the package",
    SkipReason.NOT_IN_INVENTORY: "not in the inventory as the package's device type",
    SkipReason.CONNECTIVITY: "status not allowed by targets.connectivity",
    SkipReason.REMOVED: "removed from targets.devices / devices_file after planning",
    SkipReason.OTHER_VERSION: "runs a version the package does not upgrade from",
    SkipReason.INELIGIBLE: "the platform says it cannot take updates",
    SkipReason.REFUSED: "the platform refused the task because of this device",
}


@dataclass(frozen=True, slots=True)
class GroupCount:
    """A resolved group: how many members it has and how many of them are eligible."""

    label: str
    group_id: str
    members: int
    eligible: int


@dataclass(slots=True)
class Resolution:
    """Eligible devices (unique, in resolution order) with a planner bucket each, and the
    devices left out, by reason."""

    device_ids: list[str]
    buckets: list[str]
    groups: list[GroupCount]
    explicit: int
    duplicates: int
    skipped: dict[SkipReason, list[str]] = field(default_factory=dict)
    inventory_seen: int = 0
    """Named devices the inventory pass returned."""
    inventory_scanned: int = 0
    """Devices the inventory pass read in all (named or not): its page cost."""
    notes: dict[str, str] = field(default_factory=dict)
    """Skipped device -> what exactly (its version, the platform's words); only for the
    reasons that vary per device, so it stays as small as the skips."""

    def skip_text(self, reason: SkipReason, device_id: str) -> str:
        """The stored skip reason of one device: ``value: text (note)``."""
        note = self.notes.get(device_id)
        return f"{reason.value}: {reason.text}" + (f" ({note})" if note else "")

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def skip_counts(self) -> dict[str, int]:
        """``{reason: count}`` for the reasons that occurred."""
        return {r.value: len(ids) for r, ids in self.skipped.items() if ids}


def read_id_file(path: str | Path) -> Iterator[str]:
    """Device IDs of a file: one per line; blank lines and ``#`` comments ignored."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                text = line.split("#", 1)[0].strip()
                if text:
                    yield text
    except OSError as exc:
        raise TargetProblem(f"cannot read device ID file {p}: {exc.strerror or exc}") from None


async def _group_id(platform: Platform, index: int, ref: GroupRef) -> str:
    if ref.id is not None:
        return ref.id
    async for g in platform.list_groups(name=ref.name):
        if g.name == ref.name:
            return g.group_id
    names = [g.name async for g in platform.list_groups()]

    close = difflib.get_close_matches(ref.name or "", names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"groups: {', '.join(names[:10])}"
    raise TargetProblem(
        f"targets.groups[{index}].name: no device group named {ref.name!r} on platform "
        f"{platform.name}",
        hint=hint,
    )


def _skip_reason(
    spec: CampaignSpec, package: PackageInfo, info: DeviceInfo, allowed_status: set[str] | None
) -> tuple[SkipReason, str | None] | None:
    """Why the pre-flight skips this device, with a per-device note; None to keep it."""
    reason = _skip_why(spec, package, info, allowed_status)
    if reason is SkipReason.OTHER_VERSION:
        return reason, f"on {info.version(spec.kind)}; the package upgrades {package.from_version}"
    if reason is SkipReason.INELIGIBLE:
        return reason, info.ineligible
    return None if reason is None else (reason, None)


def _skip_why(
    spec: CampaignSpec, package: PackageInfo, info: DeviceInfo, allowed_status: set[str] | None
) -> SkipReason | None:
    t = spec.targets
    if t.check_compatibility and (
        (info.device_type is not None and info.device_type != package.device_type)
        or (info.model is not None and info.model != package.model)
        or (
            info.manufacturer_name is not None
            and info.manufacturer_name != package.manufacturer_name
        )
    ):
        return SkipReason.INCOMPATIBLE
    version = info.version(spec.kind)
    if t.skip_up_to_date and version == package.version:
        return SkipReason.UP_TO_DATE
    if (
        t.check_compatibility
        and package.from_version is not None
        and version is not None
        and version != package.from_version
    ):
        return SkipReason.OTHER_VERSION
    if info.ineligible is not None:
        return SkipReason.INELIGIBLE
    if allowed_status is not None and (info.status or "").upper() not in allowed_status:
        return SkipReason.CONNECTIVITY
    return None


async def resolve_targets(
    platform: Platform, spec: CampaignSpec, package: PackageInfo
) -> Resolution:
    """Stage 2: the eligible devices of ``spec`` for ``package``, each exactly once.

    Order of checks for a named device: excluded; then, with the inventory pre-flight,
    not in the inventory as the package's device type, incompatible model/manufacturer,
    already on the target version, on a version the package does not upgrade from, not
    eligible for updates on the platform, connectivity.
    """
    t = spec.targets
    excluded: set[str] = set(t.exclude)
    if t.exclude_file:
        excluded.update(read_id_file(t.exclude_file))

    candidates: dict[str, str] = {}  # device id -> bucket
    skipped: dict[SkipReason, list[str]] = {r: [] for r in SkipReason}
    duplicates = 0
    group_counts: list[tuple[str, str, int]] = []

    def add(device_id: str, bucket: str) -> None:
        nonlocal duplicates
        if device_id in candidates:
            duplicates += 1
        elif device_id in excluded:
            if device_id not in seen_excluded:
                seen_excluded.add(device_id)
                skipped[SkipReason.EXCLUDED].append(device_id)
            else:
                duplicates += 1
        else:
            candidates[device_id] = bucket

    seen_excluded: set[str] = set()
    for i, ref in enumerate(t.groups):
        gid = await _group_id(platform, i, ref)
        members = 0
        try:
            async for device_id in platform.group_members(gid):
                members += 1
                add(device_id, ref.label)
        except NotFound:
            raise TargetProblem(
                f"targets.groups[{i}]: no device group {ref.label} on platform {platform.name}"
            ) from None
        group_counts.append((ref.label, gid, members))
        log.info("group %s: %d members", ref.label, members)

    explicit = 0
    for device_id in t.devices:
        explicit += 1
        add(device_id, EXPLICIT)
    if t.devices_file:
        for device_id in read_id_file(t.devices_file):
            explicit += 1
            add(device_id, EXPLICIT)

    inventory_seen = inventory_scanned = 0
    models: dict[str, str] | None = None  # eligible device -> model, after the pre-flight
    notes: dict[str, str] = {}
    if t.preflight and candidates:
        models = {}
        decided: set[str] = set()
        allowed_status = {c.value for c in t.connectivity} if t.connectivity else None
        async for info in platform.devices(
            device_type=package.device_type if t.check_compatibility else None
        ):
            inventory_scanned += 1
            if info.device_id not in candidates or info.device_id in decided:
                continue
            decided.add(info.device_id)
            inventory_seen += 1
            why = _skip_reason(spec, package, info, allowed_status)
            if why is None:
                # one shared string per model, not one per device (a million devices)
                models[info.device_id] = sys.intern(info.model or "?")
            else:
                skipped[why[0]].append(info.device_id)
                if why[1]:
                    notes[info.device_id] = why[1]
        skipped[SkipReason.NOT_IN_INVENTORY] = [d for d in candidates if d not in decided]
        del decided

    device_ids: list[str] = []
    buckets: list[str] = []
    bucket_names: dict[tuple[str, str], str] = {}  # one string per bucket, shared by its devices
    per_group: dict[str, int] = {}
    for device_id, label in candidates.items():
        if models is not None:
            model = models.get(device_id)
            if model is None:
                continue
            bucket = bucket_names.get((label, model))
            if bucket is None:
                bucket = bucket_names[(label, model)] = f"{label}|{model}"
            buckets.append(bucket)
        else:
            buckets.append(label)
        device_ids.append(device_id)
        per_group[label] = per_group.get(label, 0) + 1
    groups = [
        GroupCount(label, gid, members, per_group.get(label, 0))
        for label, gid, members in group_counts
    ]
    return Resolution(
        device_ids=device_ids,
        buckets=buckets,
        groups=groups,
        explicit=explicit,
        duplicates=duplicates,
        skipped={r: ids for r, ids in skipped.items() if ids},
        inventory_seen=inventory_seen,
        inventory_scanned=inventory_scanned,
        notes=notes,
    )


def no_eligible_devices(spec: CampaignSpec, resolution: Resolution) -> NoEligibleDevices | None:
    """The error for targets that resolve to no eligible device, else None.

    Such a campaign must not be planned (it would "complete" without touching a device
    and keep its name); the message says what the targets gave and why devices were left
    out."""
    if resolution.device_ids:
        return None
    parts = [
        f"group {g.label}: {g.members} members, {g.eligible} eligible" for g in resolution.groups
    ]
    if spec.targets.devices or spec.targets.devices_file:
        parts.append(f"{resolution.explicit} device IDs named")
    for reason, ids in resolution.skipped.items():
        if ids:
            parts.append(f"{len(ids)} skipped: {reason.text}")
    detail = "; ".join(parts) or "no devices named"
    return NoEligibleDevices(
        f"campaign {spec.name!r}: the targets give no eligible device ({detail})",
        hint="fix the targets in the campaign file, e.g. groups of the package's model or the "
        "ID file, and check with `fleetwave plan FILE`; nothing was started, the name stays free",
    )
