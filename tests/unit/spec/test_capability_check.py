"""A campaign's limits against its platform's capabilities: FILE:LINE:COL errors.

The corpus in tests/fixtures/capability_campaigns holds files that are valid campaigns
(``check_file`` accepts them) but ask IoDM for what it cannot do; each names its
expected errors in a ``# expect: LINE:COL: text`` header, checked against the
capabilities of a real :class:`IoDMPlatform` (built from settings, no call made).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from fleetwave.cli import main
from fleetwave.platforms import default_capabilities
from fleetwave.platforms.base import Capabilities, ExecuteType, PackageKind
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.spec import (
    SpecError,
    apply_capabilities,
    capability_problems,
    check_file,
    check_file_with_source,
    load_spec_text,
)
from fleetwave.spec.model import CampaignSpec
from tests.fixtures import CORPORA, expected_errors

ROOT = Path(__file__).resolve().parents[3]
CORPUS = CORPORA / "capability_campaigns"
FILES = sorted(CORPUS.glob("*.yaml"))
EXAMPLES = sorted((ROOT / "campaigns").glob("*.yaml"))


@pytest.fixture(scope="module")
def iodm() -> Capabilities:
    settings = IoDMSettings.from_env(
        "lab",
        environ={
            "IODM_LAB_BASE_URL": "http://127.0.0.1:9",
            "IODM_LAB_APP_ID": "a",
            "IODM_LAB_SECRET": "s",
        },
    )
    return IoDMPlatform(settings).capabilities


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_capability_corpus(path: Path, iodm: Capabilities) -> None:
    spec, problems, source = check_file_with_source(path)
    assert spec is not None, problems  # a valid campaign ...
    found = capability_problems(spec, iodm, source)  # ... that IoDM cannot run
    rendered = [str(p) for p in found]
    expected = expected_errors(path)
    assert expected, f"{path.name} has no '# expect:' header"
    for line, col, text in expected:
        hits = [p for p in found if (p.line, p.col) == (line, col) and text in p.message]
        assert hits, f"{path.name}: no error '{line}:{col}: {text}' in {rendered}"
    for p in found:
        assert str(p).startswith(f"{path}:{p.line}:{p.col}: "), p
        assert "\n" not in str(p)
    with pytest.raises(SpecError) as info:
        apply_capabilities(spec, iodm, source)
    assert info.value.problems == found


def test_the_examples_fit_their_platform(iodm: Capabilities) -> None:
    for path in EXAMPLES:
        spec, problems, source = check_file_with_source(path)
        assert spec is not None, problems
        caps = iodm if spec.platform.type == "iodm" else default_capabilities(spec.platform.type)
        assert caps is not None, spec.platform
        assert capability_problems(spec, caps, source) == []


TEXT = """\
name: t
kind: software
platform: {type: iodm, profile: default}
package: {file_id: abc}
targets:
  groups: [{name: g}]
waves: [{percent: 100}]
policy:
  execute: device_online
  max_inflight_devices: 20
windows:
  allowed:
    - {start: "22:00", end: "22:30"}
"""


def test_another_platform_limits_at_their_lines(iodm: Capabilities, tmp_path: Path) -> None:
    """A platform without groups, software packages, on-line execution or windows under
    an hour, with tasks of 50 devices: one error per limit, at its key."""
    small = dataclasses.replace(
        iodm,
        platform="small",
        max_devices_per_task=50,
        package_kinds=frozenset({PackageKind.FIRMWARE}),
        execute_types=frozenset({ExecuteType.NOW, ExecuteType.CUSTOM}),
        min_window=timedelta(hours=1),
        has_groups=False,
    )
    path = tmp_path / "c.yaml"
    path.write_text(TEXT)
    spec, problems, source = check_file_with_source(path)
    assert spec is not None, problems
    found = capability_problems(spec, small, source)
    assert all(p.file == str(path) for p in found)
    assert [(p.line, p.col) for p in found] == [(2, 7), (6, 11), (9, 12), (10, 25), (13, 29)]
    lines = [p.message for p in found]
    assert lines[0] == (
        "kind: platform small does not upgrade software packages (it upgrades: firmware)"
    )
    assert lines[1].startswith("targets.groups: platform small has no device groups")
    assert lines[2] == (
        "policy.execute: platform small cannot run tasks with execute: device_online; "
        "use one of now, window"
    )
    assert lines[3].startswith("policy.max_inflight_devices: 20 is below max_devices_per_task")
    assert lines[4] == (
        "windows.allowed[0].end: the window 22:00-22:30 lasts 30m; platform small rejects "
        "windows under 1h"
    )
    assert [(p.line, p.col) for p in capability_problems(spec, iodm, source)] == [(10, 25)]


def test_the_platform_default_task_size_is_filled_in(iodm: Capabilities) -> None:
    spec = load_spec_text(TEXT)
    assert spec.policy.max_devices_per_task is None
    # the old 256 of a stored snapshot and this default are the same chunk size on IoDM
    applied = apply_capabilities(
        spec.model_copy(
            update={"policy": spec.policy.model_copy(update={"max_inflight_devices": None})}
        ),
        iodm,
    )
    assert applied.policy.max_devices_per_task == 256
    explicit = load_spec_text(TEXT.replace("max_inflight_devices: 20", "max_devices_per_task: 40"))
    assert apply_capabilities(explicit, iodm).policy.max_devices_per_task == 40


def test_without_a_file_the_error_names_the_campaign(iodm: Capabilities) -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": "in-code",
            "kind": "firmware",
            "package": {"file_id": "f"},
            "targets": {"devices": ["d1"]},
            "waves": [{"percent": 100}],
            "policy": {"max_devices_per_task": 1000},
        }
    )
    with pytest.raises(SpecError) as info:
        apply_capabilities(spec, iodm)
    assert str(info.value).startswith(
        "campaign in-code: policy.max_devices_per_task: 1000 is above the largest task of "
        "platform iodm (256 devices)"
    )


def test_validate_checks_the_platform_limits(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "task-above-platform-limit.yaml"
    assert check_file(path)[0] is not None  # offline structure alone accepts it
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path), str(EXAMPLES[0])])
    assert info.value.code == 2
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{path}:13:25: policy.max_devices_per_task: 300 is above the largest task of "
        in (out[0][: len(str(path)) + 72])
    )
    assert any(line.startswith(f"{EXAMPLES[0]}: ok") for line in out)


def test_validate_notes_a_profile_not_configured_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("IODM_NOWHERE_BASE_URL", "IODM_NOWHERE_APP_ID", "IODM_NOWHERE_SECRET"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(TEXT.replace("profile: default", "profile: nowhere"))
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    assert info.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: note: platform iodm:nowhere is not usable here")
    assert "limits are checked by plan and run" in out[0]
    assert out[1].startswith(f"{path}: ok")


INSTALL = """\
name: files-install
kind: software
package: {version: "2.0", model: WM-200, manufacturer_name: Aquaflow}
targets: {devices: ["351234560000002"]}
waves: [{percent: 100}]
policy: {execute: window}
windows:
  timezone: Europe/Berlin
  allowed: [{start: "02:00", end: "05:00"}]
  install: {start: "04:00", end: "04:30"}
"""


def test_install_hours_need_a_platform_that_keeps_them_apart(
    iodm: Capabilities, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(INSTALL)
    spec, problems, source = check_file_with_source(path)
    assert spec is not None, problems
    (refused,) = capability_problems(spec, iodm, source)
    assert (refused.line, refused.col) == (10, 12)
    assert refused.message.startswith(
        "windows.install: platform iodm takes no install hours apart from the task's window"
    )
    hourly = dataclasses.replace(iodm, install_windows=True, min_window=timedelta(hours=1))
    (short,) = capability_problems(spec, hourly, source)
    assert short.message == (
        "windows.install.end: the install window 04:00-04:30 lasts 30m; platform iodm "
        "rejects windows under 1h"
    )
    ok = load_spec_text(INSTALL.replace('"04:30"', '"24:00"'))
    assert capability_problems(ok, hourly) == []


def test_install_hours_are_checked_in_the_spec() -> None:
    with pytest.raises(SpecError, match="must end after it starts on the same day"):
        load_spec_text(INSTALL.replace('end: "04:30"', 'end: "01:00"'))
    with pytest.raises(SpecError, match=r"need policy\.execute: window, not now"):
        load_spec_text(INSTALL.replace("{execute: window}", "{execute: now}"))
    spec = load_spec_text(INSTALL.replace('"04:30"', '"07:00"'))
    assert spec.windows is not None and spec.windows.install is not None
    # the first install hours ending after the instant, in the campaign's timezone (DST)
    from datetime import UTC, datetime

    summer = spec.windows.install.occurrence(datetime(2026, 7, 1, 3, tzinfo=UTC), "Europe/Berlin")
    assert summer == (datetime(2026, 7, 1, 2, tzinfo=UTC), datetime(2026, 7, 1, 5, tzinfo=UTC))
    late = spec.windows.install.occurrence(datetime(2026, 1, 5, 7, tzinfo=UTC), "Europe/Berlin")
    assert late == (datetime(2026, 1, 6, 3, tzinfo=UTC), datetime(2026, 1, 6, 6, tzinfo=UTC))
