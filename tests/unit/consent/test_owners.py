"""Reading the ownership file: CSV and JSON, and FILE:LINE errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.consent.owners import OwnershipFileError, read_ownership


def test_csv_and_json(tmp_path: Path) -> None:
    csv_file = tmp_path / "o.csv"
    csv_file.write_text("device_id,owner_id,extra\nd1,alice,x\nd2, bob ,y\nd1,alice,z\n")
    assert read_ownership(csv_file) == [("d1", "alice"), ("d2", "bob")]
    listed = tmp_path / "o.json"
    listed.write_text('[{"device_id": "d1", "owner_id": "alice"}]')
    assert read_ownership(listed) == [("d1", "alice")]
    mapping = tmp_path / "m.json"
    mapping.write_text('{"d1": "alice", "d2": "bob"}')
    assert read_ownership(mapping) == [("d1", "alice"), ("d2", "bob")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "a.csv",
            "device,owner\nd1,alice\n",
            "a.csv:1: the header must name device_id and owner_id",
        ),
        (
            "b.csv",
            "device_id,owner_id\nd1,alice\nd2,\n",
            "b.csv:3: owner_id of device d2 is missing",
        ),
        (
            "c.csv",
            "device_id,owner_id\nd1,alice\nd1,bob\n",
            "c.csv:3: device d1 is listed with two owners",
        ),
        ("d.json", '[{"device_id": "d1"', "d.json:1: not valid JSON"),
        ("e.json", "[1]", "e.json: item 0 is not an object"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(OwnershipFileError) as err:
        read_ownership(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
