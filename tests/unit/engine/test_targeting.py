"""The target lists re-read before every submission: real files, re-read when changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.engine.resolve import TargetProblem
from fleetwave.engine.targeting import TargetingReader
from fleetwave.spec import load_spec

CAMPAIGN = """\
name: t
kind: firmware
package: {file_id: fw-2}
targets: {devices_file: ids.txt, exclude: [d9], exclude_file: skip.txt}
waves: [{percent: 100}]
"""


def _spec(tmp_path: Path, groups: bool = False) -> Path:
    (tmp_path / "ids.txt").write_text("d1\nd2\nd3\n")
    (tmp_path / "skip.txt").write_text("")
    text = CAMPAIGN
    if groups:
        text = text.replace("{devices_file", "{groups: [{name: g}], devices_file")
    (tmp_path / "c.yaml").write_text(text)
    return tmp_path / "c.yaml"


def test_reads_again_after_a_change(tmp_path: Path) -> None:
    reader = TargetingReader(load_spec(_spec(tmp_path)))
    first = reader.read()
    assert first.excluded == {"d9"} and first.targeted == {"d1", "d2", "d3"}
    assert reader.read() is first  # unchanged files are not parsed again
    (tmp_path / "skip.txt").write_text("d2  # broken\n")
    (tmp_path / "ids.txt").write_text("d1\nd2\n")
    second = reader.read()
    assert second.excluded == {"d2", "d9"} and second.targeted == {"d1", "d2"}
    assert second.explicit_key != first.explicit_key


def test_with_groups_removal_from_the_file_is_not_known(tmp_path: Path) -> None:
    reader = TargetingReader(load_spec(_spec(tmp_path, groups=True)))
    assert reader.read().targeted is None


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    reader = TargetingReader(load_spec(_spec(tmp_path)))
    reader.read()
    (tmp_path / "skip.txt").unlink()
    with pytest.raises(TargetProblem, match=r"cannot read device ID file .*skip\.txt") as err:
        reader.read()
    assert "nothing was sent" in str(err.value)
