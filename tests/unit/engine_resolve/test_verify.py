"""Stage 1 (verify package) against the in-memory platform with a hand-built fleet."""

from __future__ import annotations

import pytest

from fleetwave.engine.verify import PackageProblem, verify_packages
from fleetwave.platforms.base import PackageKind
from fleetwave.platforms.memory import MemoryPlatform
from tests.fakes import hand_built_platform, make_package, make_spec, writes

NEW = make_package("fw-new", "1.5.0")
OLD = make_package("fw-old", "1.4.2")
OTHER = make_package("fw-other", "1.5.0", model="WM-300")
SW = make_package("sw-new", "2.1.0", kind=PackageKind.SOFTWARE)


def platform() -> MemoryPlatform:
    return hand_built_platform(NEW, OLD, OTHER, SW)


async def test_selector_must_match_exactly_one() -> None:
    spec = make_spec(package={"version": "1.5.0", "device_type": "WaterMeter"})
    with pytest.raises(PackageProblem, match=r"2 firmware packages match version 1\.5\.0.*fw-new"):
        await verify_packages(platform(), spec)
    spec = make_spec(package={"version": "1.5.0", "model": "WM-200"})
    assert (await verify_packages(platform(), spec)).package == NEW


async def test_selector_without_match() -> None:
    spec = make_spec(package={"version": "9.9"})
    with pytest.raises(PackageProblem, match=r"no firmware package matches version 9\.9"):
        await verify_packages(platform(), spec)


async def test_file_id_kind_and_assertions() -> None:
    p = platform()
    assert (await verify_packages(p, make_spec(package={"file_id": "fw-new"}))).package == NEW
    with pytest.raises(PackageProblem, match="is a software package but the campaign kind"):
        await verify_packages(p, make_spec(package={"file_id": "sw-new"}))
    with pytest.raises(PackageProblem, match=r"package.model: the file says 'WM-9'"):
        await verify_packages(p, make_spec(package={"file_id": "fw-new", "model": "WM-9"}))
    with pytest.raises(PackageProblem, match=r"package\.file_id: no package 'nope'"):
        await verify_packages(p, make_spec(package={"file_id": "nope"}))


async def test_group_fit_is_checked() -> None:
    spec = make_spec(
        package={"file_id": "fw-new"},
        targets={"groups": [{"name": "g", "device_type": "GasMeter"}]},
    )
    with pytest.raises(PackageProblem, match=r"targets.groups\[0\].device_type: group g holds"):
        await verify_packages(platform(), spec)


async def test_rollback_package() -> None:
    p = platform()
    ok = make_spec(package={"file_id": "fw-new"}, rollback={"version": "1.4.2"})
    assert (await verify_packages(p, ok)).rollback == OLD
    bad = make_spec(package={"file_id": "fw-new"}, rollback={"file_id": "fw-other"})
    with pytest.raises(PackageProblem, match="rollback: package fw-other is for"):
        await verify_packages(p, bad)
    same = make_spec(
        package={"file_id": "fw-new"}, rollback={"version": "1.5.0", "model": "WM-200"}
    )
    with pytest.raises(PackageProblem, match="has the target version"):
        await verify_packages(p, same)
    assert writes(p) == 0
