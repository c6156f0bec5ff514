"""Loading campaign YAML: the examples, positions, readable file errors, the validate command."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.cli import main
from fleetwave.spec import SpecError, check_file, check_text, load_spec, load_spec_text

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "campaigns").glob("*.yaml"))


def test_three_examples_exist_and_validate() -> None:
    assert len(EXAMPLES) >= 3
    kinds = set()
    for path in EXAMPLES:
        spec = load_spec(path)
        kinds.add((spec.kind.value, spec.policy.execute.value, spec.rollback is not None))
    assert ("software", "device_online", False) in kinds
    assert any(rollback for _, _, rollback in kinds)


def test_yaml_12_keeps_times_as_strings() -> None:
    text = """
name: t
kind: software
package: {file_id: abc}
targets: {devices: [d1]}
waves: [{percent: 100}]
windows:
  allowed:
    - {start: 22:00, end: 05:00, days: daily}
"""
    spec = load_spec_text(text)
    assert spec.windows is not None
    assert spec.windows.allowed[0].start.hour == 22


def test_spec_error_lists_every_problem() -> None:
    text = (
        "name: t\nkind: firmwre\npackage: {file_id: a}\ntargets: {devices: [d]}\n"
        "waves: [{percent: 50}]\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "x.yaml")
    assert str(info.value).startswith("x.yaml:2:7: kind: 'firmwre' is not allowed")
    assert info.value.exit_code == 2


def test_cross_field_issues_reported_together() -> None:
    text = (
        "name: t\nkind: firmware\npackage: {file_id: a}\ntargets: {devices: [d]}\n"
        "waves:\n  - percent: 50\n  - percent: 40\nthresholds: {on_breach: rollback}\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "x.yaml")
    lines = [str(p) for p in info.value.problems]
    assert lines == [
        "x.yaml:7:14: waves[1].percent: 40 is not above the previous wave's 50; wave "
        "percentages are cumulative (share of all devices targeted by the end of the wave), "
        "so they must increase",
        "x.yaml:7:14: waves[1].percent: the last wave has percent: 40; it must be percent: 100 "
        "(cumulative) so every eligible device is covered",
        "x.yaml:8:25: thresholds.on_breach: on_breach: rollback needs a rollback package; add "
        "'rollback:' with file_id or version, or use halt / pause",
    ]


def test_devices_file_resolved_relative_to_campaign(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("d1\n")
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: t\nkind: firmware\npackage: {file_id: a}\ntargets: {devices_file: ids.txt}\n"
        "waves: [{percent: 100}]\n"
    )
    spec = load_spec(camp)
    assert spec.targets.devices_file == str((tmp_path / "ids.txt").resolve())


def test_unreadable_files(tmp_path: Path) -> None:
    assert [str(p) for p in check_file(tmp_path / "nope.yaml")[1]] == [
        f"{tmp_path / 'nope.yaml'}: no such file"
    ]
    assert "is a directory" in str(check_file(tmp_path)[1][0])
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert "not UTF-8" in str(check_file(binary)[1][0])


def test_a_missing_relative_path_names_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (problem,) = check_file("campaigns/nope.yaml")[1]
    assert str(problem) == (
        f"campaigns/nope.yaml: no such file in the working directory {tmp_path}; give a path "
        "relative to it (e.g. campaigns/NAME.yaml from the project directory) or an absolute path"
    )
    (tmp_path / "campaigns" / "nightly").mkdir(parents=True)
    (tmp_path / "campaigns" / "nightly" / "meters.yaml").write_text("name: m\n")
    (near,) = check_file("meters.yaml")[1]
    assert str(near).endswith("; did you mean campaigns/nightly/meters.yaml?")
    (other,) = check_file("campaigns/other.yaml")[1]
    assert str(other).endswith("; campaign files are under campaigns/, e.g. campaigns/NAME.yaml")


def test_validate_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ok:
        main(["validate", *map(str, EXAMPLES)])
    assert ok.value.code == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(EXAMPLES)

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nkind: firmware\nwavs: []\n")
    with pytest.raises(SystemExit) as failed:
        main(["validate", str(EXAMPLES[0]), str(bad), str(tmp_path / "missing.yaml")])
    assert failed.value.code == 2
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert f"{bad}:3:1: unknown key 'wavs'; did you mean 'waves'?" in lines
    assert f"{tmp_path / 'missing.yaml'}: no such file" in lines
    assert "Traceback" not in captured.out + captured.err
    assert "error(s) in 2 of 3 file(s)" in captured.err


def test_validate_a_directory(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "-q", str(ROOT / "tests" / "fixtures" / "bad_campaigns")])
    assert info.value.code == 2
    files = {line.split(":", 1)[0] for line in capsys.readouterr().out.splitlines()}
    assert len(files) >= 25


def test_schema_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    with pytest.raises(SystemExit) as info:
        main(["schema"])
    assert info.value.code == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "CampaignSpec"
    out = tmp_path / "s.json"
    with pytest.raises(SystemExit):
        main(["schema", "-o", str(out)])
    assert json.loads(out.read_text()) == schema


def test_documented_example_is_valid() -> None:
    doc = (ROOT / "docs" / "campaign-format.md").read_text()
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = load_spec_text(block, "docs/campaign-format.md")  # base=None: files not checked
    assert spec.name == "nightly-meters-fw-1.5.0"
    assert spec.rollback is not None and spec.rollback.version == "1.4.2"
    assert len(spec.waves) == 4 and spec.waves[2].success_percent == 98


BILLION_LAUGHS = "\n".join(
    [
        "name: laughs",
        "kind: firmware",
        "package: {file_id: abc}",
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)),
        "targets: {devices: *l9}",
        "waves: [{percent: 100}]",
    ]
)


def test_yaml_alias_bomb_is_refused_before_expansion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10^10 values once expanded: refused from the event stream, never built
    spec, problems = check_text(BILLION_LAUGHS)
    assert spec is None and len(problems) == 1
    assert str(problems[0]) == (
        "<string>:7:45: YAML error: aliases that expand to more than 10000 values (at *l2); "
        "a campaign file needs no such repetition: write the values out, or use anchors "
        "sparingly"
    )
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    with pytest.raises(SystemExit) as info:
        main(["validate", str(bomb)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{bomb}:7:45: YAML error: aliases that expand")
    assert "Traceback" not in captured.out + captured.err


def test_yaml_alias_count_is_capped_and_modest_anchors_still_work() -> None:
    many = "\n".join(
        [
            "name: many",
            "kind: firmware",
            "package: {file_id: abc}",
            "x: &x d1",
            f"y: [{', '.join(['*x'] * 501)}]",
            "targets: {devices: [d1]}",
            "waves: [{percent: 100}]",
        ]
    )
    _, problems = check_text(many)
    assert [p.message.split(" (at")[0] for p in problems] == ["YAML error: more than 500 aliases"]
    # anchors and merge keys as people use them (a shared window, a shared device list)
    spec = load_spec_text(
        """
name: anchors
kind: firmware
package: {file_id: abc}
targets: {devices: &ids [d1, d2, d3], exclude: *ids}
waves: [{percent: 100}]
windows:
  timezone: Europe/Berlin
  allowed:
    - &night {days: weekdays, start: "22:00", end: "04:00"}
    - {<<: *night, days: weekends}
"""
    )
    assert spec.targets.exclude == ["d1", "d2", "d3"]
    assert spec.windows is not None and len(spec.windows.allowed) == 2


def test_validate_reports_a_campaign_name_used_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = (
        "kind: firmware\npackage: {file_id: abc}\ntargets: {devices: [d1]}\n"
        "waves: [{percent: 100}]\n"
    )
    (tmp_path / "a.yaml").write_text(f"name: same-name\n{body}")
    (tmp_path / "b.yaml").write_text(f"# the copy\n\nname: same-name\n{body}")
    (tmp_path / "c.yaml").write_text(f"name: other-name\n{body}")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(tmp_path)])
    assert info.value.code == 2
    captured = capsys.readouterr()
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    lines = captured.out.splitlines()
    assert f"{a}:1:1: campaign name 'same-name' is also used by {b}:3; each campaign file " in (
        captured.out
    )
    assert f"{b}:3:1: campaign name 'same-name' is also used by {a}:1; " in captured.out
    assert [line for line in lines if ": ok (" in line] == [
        f"{tmp_path / 'c.yaml'}: ok (other-name, firmware, 1 waves)"
    ]
    assert "2 error(s) in 2 of 3 file(s)" in captured.err
    # the same file named twice is one file, not a duplicate
    with pytest.raises(SystemExit) as again:
        main(["validate", str(a), str(a)])
    assert again.value.code == 0
