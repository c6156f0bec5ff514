"""Which spec fields a started campaign may change, the field-level diff, and snapshots
whose ids files are fingerprinted by content (not by where the file sits)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetwave.spec import (
    MUTABLE_FIELDS,
    SpecError,
    ids_file_fingerprint,
    immutable_part,
    is_mutable,
    load_spec,
    spec_change_records,
    spec_changes,
    spec_fingerprint,
    spec_snapshot,
)

BASE = """\
name: moved
description: first
kind: firmware
package: {file_id: fw-2}
targets:
  devices_file: ids.txt
  exclude_file: skip.txt
waves:
  - count: 2
  - percent: 100
policy: {poll_interval: 5m, max_inflight_tasks: 4, task_timeout: 1h}
thresholds: {max_failure_percent: 10, min_finished: 5}
"""


def _write(folder: Path, text: str = BASE, ids: str = "d1\nd2\nd3\n", skip: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ids.txt").write_text(ids)
    (folder / "skip.txt").write_text(skip)
    (folder / "c.yaml").write_text(text)
    return folder / "c.yaml"


@pytest.mark.parametrize(
    ("field", "mutable"),
    [
        ("description", True),
        ("policy.poll_interval", True),
        ("policy.max_inflight_tasks", True),
        ("policy.max_inflight_devices", True),
        ("thresholds", True),
        ("thresholds.max_failure_percent", True),
        ("windows", True),
        ("windows.allowed[0].start", True),
        ("waves[1].success_percent", True),
        ("targets.exclude", True),
        ("targets.exclude_file", True),
        ("package.file_id", False),
        ("rollback", False),
        ("kind", False),
        ("platform", False),
        ("targets.devices_file", False),
        ("targets.groups[0].name", False),
        ("waves[1].percent", False),
        ("waves[0].approval", False),
        ("waves", False),
        ("policy.max_devices_per_task", False),
        ("policy.execute", False),
        ("descriptionx", False),
        ("thresholds_extra", False),
    ],
)
def test_the_split(field: str, mutable: bool) -> None:
    assert is_mutable(field) is mutable
    assert "package" not in MUTABLE_FIELDS and "waves" not in MUTABLE_FIELDS


def test_ids_fingerprint_is_content_not_path_order_or_comments(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    b = tmp_path / "elsewhere" / "b.txt"
    b.parent.mkdir()
    a.write_text("d1\nd2\n")
    b.write_text("# the same devices\n  d2  \n\nd1 # canary\n")
    assert ids_file_fingerprint(a) == ids_file_fingerprint(b)
    assert ids_file_fingerprint(a).startswith("ids:2:sha256:")
    b.write_text("d1\nd3\n")
    assert ids_file_fingerprint(a) != ids_file_fingerprint(b)
    with pytest.raises(SpecError, match="cannot read the device ID file"):
        ids_file_fingerprint(tmp_path / "missing.txt")


def test_a_moved_campaign_folder_has_the_same_snapshot(tmp_path: Path) -> None:
    first = _write(tmp_path / "checkout-1" / "campaigns")
    moved = tmp_path / "checkout-2" / "deep" / "campaigns"
    shutil.copytree(first.parent, moved)
    one, two = load_spec(first), load_spec(moved / "c.yaml")
    assert one.targets.devices_file != two.targets.devices_file  # absolute paths differ
    assert spec_snapshot(one) == spec_snapshot(two)
    assert spec_fingerprint(spec_snapshot(one)) == spec_fingerprint(spec_snapshot(two))
    assert spec_changes(spec_snapshot(one), spec_snapshot(two)) == []


def test_mutable_changes_keep_the_fingerprint_and_are_listed_with_values(tmp_path: Path) -> None:
    old = spec_snapshot(load_spec(_write(tmp_path / "a")))
    text = (
        BASE.replace("description: first", "description: second")
        .replace("poll_interval: 5m", "poll_interval: 1m")
        .replace("max_failure_percent: 10", "max_failure_percent: 25")
    )
    new = spec_snapshot(load_spec(_write(tmp_path / "b", text, skip="d2\n")))
    assert spec_fingerprint(old) == spec_fingerprint(new)
    assert immutable_part(old) == immutable_part(new)
    changes = {c["field"]: c for c in spec_change_records(old, new)}
    assert set(changes) == {
        "description",
        "policy.poll_interval",
        "thresholds.max_failure_percent",
        "targets.exclude_file",
    }
    assert all(c["mutable"] for c in changes.values())
    assert (changes["description"]["old"], changes["description"]["new"]) == ("first", "second")
    assert changes["policy.poll_interval"]["old"] != changes["policy.poll_interval"]["new"]
    assert changes["thresholds.max_failure_percent"]["new"] == 25
    assert changes["targets.exclude_file"]["new"].startswith("ids:1:")


def test_immutable_changes_change_the_fingerprint_and_are_named(tmp_path: Path) -> None:
    old = spec_snapshot(load_spec(_write(tmp_path / "a")))
    text = BASE.replace("file_id: fw-2", "file_id: fw-3").replace(
        "percent: 100", "percent: 100\n    approval: true"
    )
    new = spec_snapshot(load_spec(_write(tmp_path / "b", text, ids="d1\nd2\n")))
    assert spec_fingerprint(old) != spec_fingerprint(new)
    fixed = [c.field for c in spec_changes(old, new) if not c.mutable]
    assert fixed == ["package.file_id", "targets.devices_file", "waves[1].approval"]


def test_a_path_stored_by_an_older_fleetwave_is_not_a_change(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path))
    legacy = spec.model_dump(mode="json")  # absolute paths, as stored before
    assert spec_changes(legacy, spec_snapshot(spec)) == []


def test_long_lists_are_summarised() -> None:
    old = {"targets": {"exclude": [f"d{i}" for i in range(100)]}}
    new = {"targets": {"exclude": [f"d{i}" for i in range(3, 150)]}}
    (rec,) = spec_change_records(old, new)
    assert rec["field"] == "targets.exclude" and rec["mutable"]
    assert rec["added_count"] == 50 and len(rec["added"]) == 20
    assert rec["removed"] == ["d0", "d1", "d2"] and rec["removed_count"] == 3
    assert "old" not in rec


def test_a_changed_number_of_waves_is_one_change() -> None:
    old = {"waves": [{"percent": 100}]}
    new = {"waves": [{"count": 5}, {"percent": 100}]}
    assert [c.field for c in spec_changes(old, new)] == ["waves"]
