"""The generated fleet: groups as ranges, O(1) device IDs, packages, determinism per seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwave.sim.fleet import MODELS, Fleet, hash_u, hash_u_array


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(
    seed=st.integers(0, 2**63),
    indices=st.lists(st.integers(0, 10**7), min_size=1, max_size=20),
    salt=st.integers(0, 100),
)
def test_vectorised_hash_equals_scalar(seed: int, indices: list[int], salt: int) -> None:
    arr = hash_u_array(seed, np.array(indices, dtype=np.int64), salt)
    assert arr.tolist() == [hash_u(seed, i, salt) for i in indices]


@settings(deadline=None, max_examples=40)
@given(devices=st.integers(1, 50_000), groups=st.integers(1, 40), seed=st.integers(0, 1000))
def test_groups_partition_the_fleet(devices: int, groups: int, seed: int) -> None:
    groups = min(groups, devices)
    fleet = Fleet(devices, groups, seed)
    assert len(fleet.groups) == groups
    assert fleet.groups[0].start == 0 and fleet.groups[-1].stop == devices
    for a, b in zip(fleet.groups, fleet.groups[1:], strict=False):
        assert a.stop == b.start and a.size >= 1
    assert len({g.name for g in fleet.groups}) == groups
    assert len({g.group_id for g in fleet.groups}) == groups
    for g in fleet.groups:
        assert fleet.group_of(g.start) == g == fleet.group_of(g.stop - 1)
        assert g.name.startswith(g.model.key + "-")


@settings(deadline=None)  # no timing asserts: CI machines are shared
@given(devices=st.integers(1, 2_000_000), data=st.data())
def test_device_ids_map_back(devices: int, data: st.DataObject) -> None:
    fleet = Fleet(devices, 1, 1)
    i = data.draw(st.integers(0, devices - 1))
    assert fleet.index_of(fleet.device_id(i)) == i
    assert fleet.index_of(fleet.device_id(i) + "0") is None
    assert fleet.index_of("dev-" + "9" * fleet.id_width) in (None, int("9" * fleet.id_width))


def test_bad_device_ids() -> None:
    fleet = Fleet(100, 2, 1)
    for bad in ("", "dev-", "dev-000000100", "dev-00000100", "x-00000001", "dev-0000000a"):
        assert fleet.index_of(bad) is None, bad


def test_default_fleet_shape_and_determinism() -> None:
    a, b, c = Fleet(2000, 8, 1), Fleet(2000, 8, 1), Fleet(2000, 8, 2)
    assert [(g.name, g.start, g.stop, g.group_id) for g in a.groups] == [
        (g.name, g.start, g.stop, g.group_id) for g in b.groups
    ]
    assert [g.size for g in a.groups] != [g.size for g in c.groups]
    assert {m.model for m in a.models_present()} == {m.model for m in MODELS}
    flaky = sum(g.size for g in a.groups if g.model.model == "FLAKY-1")
    assert 0.01 * 2000 <= flaky <= 0.06 * 2000
    assert len(a.packages) == 4 * len(MODELS)
    assert [p.file_id for p in a.packages] == [p.file_id for p in b.packages]
    for m in MODELS:
        kinds = sorted((p.file_type, p.version) for p in a.packages if p.model == m)
        assert kinds == sorted(
            [
                ("firmwarePackage", m.fw_current),
                ("firmwarePackage", m.fw_new),
                ("softwarePackage", m.sw_current),
                ("softwarePackage", m.sw_new),
            ]
        )
    codes = a.status_array()
    assert [a.base_status(i) for i in range(0, 2000, 7)] == [
        ("ONLINE", "OFFLINE", "ABNORMAL", "INACTIVE")[c] for c in codes[::7]
    ]


def test_invalid_fleet_sizes() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        Fleet(0, 1, 1)
    with pytest.raises(ValueError, match="groups must be between"):
        Fleet(5, 6, 1)
