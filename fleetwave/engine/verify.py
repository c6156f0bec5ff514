"""Stage 1, verify the package: it exists, is of the campaign's kind, and fits the targets.

Read-only against the Platform protocol. A selector must match exactly one package; the
optional rollback package must fit the same devices. Problems raise :class:`PackageProblem`
(a ``UserError``: one line, what to change in the campaign file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fleetwave.errors import UserError
from fleetwave.platforms.base import PackageInfo, PackageKind, Platform
from fleetwave.platforms.errors import PackageNotFound
from fleetwave.spec.model import CampaignSpec, PackageRef

__all__ = ["PackageProblem", "VerifiedPackages", "find_package", "verify_packages"]

log = logging.getLogger(__name__)


class PackageProblem(UserError):
    """The campaign's package (or rollback package) does not exist or does not fit."""


@dataclass(frozen=True, slots=True)
class VerifiedPackages:
    """The package to install and the rollback package, as the platform describes them."""

    package: PackageInfo
    rollback: PackageInfo | None = None


def _fit(p: PackageInfo) -> str:
    return f"{p.device_type}/{p.model}/{p.manufacturer_name}"


def _check_ref(where: str, ref: PackageRef, pkg: PackageInfo, kind: PackageKind) -> None:
    if pkg.kind is not kind:
        raise PackageProblem(
            f"{where}: package {pkg.file_id} ({pkg.name} {pkg.version}) is a {pkg.kind.value} "
            f"package but the campaign kind is {kind.value}",
            hint="change kind or name a package of that kind",
        )
    for field, want, have in (
        ("device_type", ref.device_type, pkg.device_type),
        ("model", ref.model, pkg.model),
        ("manufacturer_name", ref.manufacturer_name, pkg.manufacturer_name),
    ):
        if want is not None and want != have:
            raise PackageProblem(
                f"{where}.{field}: the file says {want!r} but package {pkg.file_id} is for "
                f"{have!r} ({_fit(pkg)})"
            )


async def find_package(
    platform: Platform, ref: PackageRef, kind: PackageKind, *, where: str = "package"
) -> PackageInfo:
    """The one package ``ref`` names (by file_id, or a selector matching exactly one)."""
    if ref.file_id is not None:
        try:
            pkg = await platform.get_package(ref.file_id)
        except PackageNotFound:
            raise PackageProblem(
                f"{where}.file_id: no package {ref.file_id!r} on platform {platform.name}",
                hint="check the file_id, or select by version",
            ) from None
        _check_ref(where, ref, pkg, kind)
        return pkg
    found = [
        p
        async for p in platform.find_packages(
            kind=kind,
            version=ref.version,
            device_type=ref.device_type,
            model=ref.model,
            manufacturer_name=ref.manufacturer_name,
        )
    ]
    if not found:
        raise PackageProblem(
            f"{where}: no {kind.value} package matches {ref.describe()} on platform "
            f"{platform.name}",
            hint="check version/device_type/model/manufacturer_name, or give file_id",
        )
    if len(found) > 1:
        listing = ", ".join(f"{p.file_id} ({_fit(p)})" for p in found[:5])
        raise PackageProblem(
            f"{where}: {len(found)} {kind.value} packages match {ref.describe()}: {listing}",
            hint="add device_type, model or manufacturer_name, or give file_id",
        )
    _check_ref(where, ref, found[0], kind)
    return found[0]


async def verify_packages(platform: Platform, spec: CampaignSpec) -> VerifiedPackages:
    """Stage 1: find the package and the rollback package and check they fit the targets."""
    pkg = await find_package(platform, spec.package, spec.kind)
    for i, g in enumerate(spec.targets.groups):
        for field, want, have in (
            ("device_type", g.device_type, pkg.device_type),
            ("model", g.model, pkg.model),
            ("manufacturer_name", g.manufacturer_name, pkg.manufacturer_name),
        ):
            if want is not None and want != have:
                raise PackageProblem(
                    f"targets.groups[{i}].{field}: group {g.label} holds {want!r} devices but "
                    f"the package {pkg.name} {pkg.version} is for {have!r}; the platform would "
                    "refuse the task"
                )
    rollback = None
    if spec.rollback is not None:
        rollback = await find_package(platform, spec.rollback, spec.kind, where="rollback")
        if _fit(rollback) != _fit(pkg):
            raise PackageProblem(
                f"rollback: package {rollback.file_id} is for {_fit(rollback)} but the package "
                f"is for {_fit(pkg)}; a rollback must fit the same devices"
            )
        if rollback.file_id == pkg.file_id or rollback.version == pkg.version:
            raise PackageProblem(
                f"rollback: package {rollback.file_id} has the target version {pkg.version}; "
                "name the version the devices run now"
            )
    log.info("verified package %s (%s %s)", pkg.file_id, pkg.name, pkg.version)
    return VerifiedPackages(pkg, rollback)
