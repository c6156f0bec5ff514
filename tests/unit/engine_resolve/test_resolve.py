"""Stage 2 (resolve) against the in-memory platform with a hand-built fleet: de-duplication
and skip reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from fleetwave.engine.resolve import SkipReason, TargetProblem, read_id_file, resolve_targets
from fleetwave.platforms.base import DeviceInfo, PackageKind
from fleetwave.platforms.memory import MemoryPlatform
from tests.fakes import hand_built_platform, make_package, make_spec, writes

PKG = make_package("fw-new", "1.5.0")


def fleet() -> MemoryPlatform:
    p = hand_built_platform(PKG)
    a = [f"a{i}" for i in range(10)]
    b = [f"b{i}" for i in range(5)] + ["a0", "a1"]  # two devices in both groups
    p.fleet.add_group("g-a", "meters-a", a)
    p.fleet.add_group("g-b", "meters-b", b)
    for d in a + b[:5] + ["x1", "x2"]:
        p.fleet.add_device(d)
    # special cases
    p.fleet.add_device("a2", fw_version="1.5.0")  # already up to date
    p.fleet.add_device("a3", online=False)
    p.fleet.add_device("a4", model="WM-300")  # incompatible model
    p.fleet.add_device("a5", device_type="GasMeter")  # other type
    p.fleet.add_device("t1", device_type="Tracker")
    return p


async def test_groups_dedup_and_skip_reasons() -> None:
    p = fleet()
    spec = make_spec(
        targets={
            "groups": [{"name": "meters-a"}, {"id": "g-b"}],
            "devices": ["x1", "b0", "ghost"],
            "exclude": ["a9"],
            "connectivity": ["ONLINE"],
        }
    )
    r = await resolve_targets(p, spec, PKG)
    assert len(r.device_ids) == len(set(r.device_ids))
    assert r.skipped[SkipReason.EXCLUDED] == ["a9"]
    assert r.skipped[SkipReason.UP_TO_DATE] == ["a2"]
    assert r.skipped[SkipReason.CONNECTIVITY] == ["a3"]
    assert r.skipped[SkipReason.INCOMPATIBLE] == ["a4"]
    # a5 is a GasMeter: the inventory pass filtered by WaterMeter never returns it
    assert sorted(r.skipped[SkipReason.NOT_IN_INVENTORY]) == ["a5", "ghost"]
    expected = {f"a{i}" for i in (0, 1, 6, 7, 8)} | {f"b{i}" for i in range(5)} | {"x1"}
    assert set(r.device_ids) == expected
    assert r.duplicates == 3  # a0, a1 from group b, b0 explicitly
    assert r.explicit == 3
    assert [(g.label, g.members, g.eligible) for g in r.groups] == [
        ("meters-a", 10, 5),
        ("id:g-b", 7, 5),
    ]
    assert len(r.buckets) == len(r.device_ids)
    assert r.buckets[0] == "meters-a|WM-200"
    assert writes(p) == 0


async def test_no_preflight_keeps_everything_but_exclusions() -> None:
    p = fleet()
    spec = make_spec(
        targets={
            "groups": [{"name": "meters-a"}],
            "exclude": ["a1"],
            "preflight": False,
            "skip_up_to_date": False,
            "check_compatibility": False,
        }
    )
    r = await resolve_targets(p, spec, PKG)
    assert r.device_ids == [f"a{i}" for i in range(10) if i != 1]
    assert r.skip_counts() == {"excluded": 1}
    assert "devices" not in p.calls


async def test_software_kind_compares_sw_version() -> None:
    pkg = make_package("sw-new", "2.1.0", kind=PackageKind.SOFTWARE)
    p = fleet()
    p.fleet.add_package(pkg)
    p.fleet.add_device("a0", sw_version="2.1.0", fw_version="1.5.0")
    spec = make_spec(kind="software", package={"file_id": "sw-new"})
    r = await resolve_targets(p, spec, pkg)
    assert r.skipped[SkipReason.UP_TO_DATE] == ["a0"]  # a2 has fw 1.5.0 but sw 2.0.1
    assert "a2" in r.device_ids


async def test_unknown_group_name_suggests_close_match() -> None:
    p = fleet()
    spec = make_spec(targets={"groups": [{"name": "meters-aa"}]})
    with pytest.raises(
        TargetProblem,
        match=r"targets.groups\[0\].name: no device group named "
        r"'meters-aa'.*did you mean 'meters-a'",
    ):
        await resolve_targets(p, spec, PKG)


async def test_unknown_group_id() -> None:
    p = fleet()
    spec = make_spec(targets={"groups": [{"id": "nope"}]})
    with pytest.raises(TargetProblem, match="no device group id:nope"):
        await resolve_targets(p, spec, PKG)


async def test_id_files(tmp_path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# header\nx1\n\n  x2  # trailing comment\nx1\n")
    ex = tmp_path / "ex.txt"
    ex.write_text("x2\n")
    assert list(read_id_file(ids)) == ["x1", "x2", "x1"]
    p = fleet()
    spec = make_spec(
        targets={"devices_file": str(ids), "exclude_file": str(ex), "skip_up_to_date": True}
    )
    r = await resolve_targets(p, spec, PKG)
    assert r.device_ids == ["x1"]
    assert r.skipped[SkipReason.EXCLUDED] == ["x2"]
    assert r.duplicates == 1
    assert r.buckets == ["(explicit)|WM-200"]


def test_missing_id_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(TargetProblem, match="cannot read device ID file"):
        list(read_id_file(tmp_path / "nope.txt"))


async def test_large_fleet_streams_once() -> None:
    n = 20_000
    p = hand_built_platform(PKG)
    ids = [f"d{i:06d}" for i in range(n)]
    p.fleet.add_group("g", "big", ids)
    for d in ids:
        p.fleet.add_device(d)
    r = await resolve_targets(p, make_spec(targets={"groups": [{"name": "big"}]}), PKG)
    assert len(r.device_ids) == n
    pages = p.capabilities.page_sizes
    assert p.calls["group_members"] == n // pages["group_members"]  # one call a page
    assert p.calls["devices"] == n // pages["devices"]
    assert r.inventory_scanned == n


class _Inventory:
    """Just an inventory (all ``resolve_targets`` reads when targets are device IDs)."""

    name = "inventory"

    def __init__(self, *infos: DeviceInfo) -> None:
        self.infos = infos

    async def devices(
        self, *, device_type: str | None = None, status: str | None = None
    ) -> AsyncIterator[DeviceInfo]:
        for info in self.infos:
            yield info


def _info(device_id: str, fw: str, ineligible: str | None = None) -> DeviceInfo:
    return DeviceInfo(device_id, None, "WM-200", "Aquaflow", fw, None, None, ineligible)


async def test_a_package_with_a_from_version_and_ineligible_devices() -> None:
    """A device on another version than the package upgrades from, and one the platform
    says cannot take updates, are skipped with a note each; the stored text has both."""
    pkg = replace(make_package("fw-new", "1.5.0"), device_type="", from_version="1.4.2")
    inv = _Inventory(
        _info("m1", "1.4.2"),
        _info("m2", "1.3.0"),
        _info("m3", "1.4.2", ineligible="never registered"),
        _info("m4", "1.5.0"),
        _info("m5", "1.3.0", ineligible="never registered"),
    )
    spec = make_spec(targets={"devices": ["m1", "m2", "m3", "m4", "m5"]})
    r = await resolve_targets(inv, spec, pkg)  # type: ignore[arg-type]
    assert r.device_ids == ["m1"]
    assert r.skipped == {
        SkipReason.UP_TO_DATE: ["m4"],
        SkipReason.OTHER_VERSION: ["m2", "m5"],  # the version check comes first
        SkipReason.INELIGIBLE: ["m3"],
    }
    assert r.skip_text(SkipReason.INELIGIBLE, "m3") == (
        "ineligible: the platform says it cannot take updates (never registered)"
    )
    assert r.skip_text(SkipReason.OTHER_VERSION, "m2") == (
        "other_version: runs a version the package does not upgrade from "
        "(on 1.3.0; the package upgrades 1.4.2)"
    )
    assert r.skip_text(SkipReason.UP_TO_DATE, "m4") == "up_to_date: already on the target version"
    # without the compatibility check a device on another version is kept; an ineligible
    # one never is (the platform would refuse the whole task)
    loose = make_spec(targets={"devices": ["m2", "m3"], "check_compatibility": False})
    r = await resolve_targets(inv, loose, pkg)  # type: ignore[arg-type]
    assert r.device_ids == ["m2"] and r.skipped == {SkipReason.INELIGIBLE: ["m3"]}
