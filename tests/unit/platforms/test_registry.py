"""The registry of platform factories and the spec's ``platform: {type, profile}``."""

from __future__ import annotations

from pathlib import Path

import pytest

import fleetwave.platforms as platforms
from fleetwave.cli import main
from fleetwave.clock import Clock
from fleetwave.errors import UserError
from fleetwave.platforms import (
    PlatformRef,
    UnknownPlatformType,
    known_platform_types,
    open_platform,
    register_platform,
    simulator_url,
)
from fleetwave.platforms.base import Platform
from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings
from fleetwave.sim.linked_clock import clock_from_option
from fleetwave.spec import check_text, load_spec_text
from fleetwave.spec.model import spec_changes

BASE = """\
name: t
kind: firmware
{platform}
package: {{file_id: abc}}
targets: {{devices: [d1]}}
waves: [{{percent: 100}}]
"""

LAB = {
    "IODM_LAB_BASE_URL": "http://127.0.0.1:9",
    "IODM_LAB_APP_ID": "lab",
    "IODM_LAB_SECRET": "lab-secret",
}


@pytest.fixture
def lab_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in LAB.items():
        monkeypatch.setenv(k, v)


def test_the_new_form_names_type_and_profile() -> None:
    spec = load_spec_text(BASE.format(platform="platform: {type: iodm, profile: prod}"))
    assert (spec.platform.type, spec.platform.profile) == ("iodm", "prod")
    spec = load_spec_text(BASE.format(platform="platform: {type: iodm}"))
    assert spec.platform.profile == "default"
    spec = load_spec_text(BASE.format(platform=""))
    assert (spec.platform.type, spec.platform.profile) == ("iodm", "default")


def test_the_old_plain_string_is_a_profile_of_iodm() -> None:
    spec = load_spec_text(BASE.format(platform="platform: prod"))
    assert (spec.platform.type, spec.platform.profile) == ("iodm", "prod")
    _, problems = check_text(BASE.format(platform="platform: 'no spaces'"), "c.yaml")
    assert [str(p) for p in problems] == [
        "c.yaml:3:11: platform.profile: 'no spaces' is not a profile name; use letters, "
        "digits and '_'"
    ]


def test_an_unknown_type_is_an_error_at_its_line_listing_the_known_types() -> None:
    _, problems = check_text(
        BASE.format(platform="platform: {type: iodn, profile: prod}"), "c.yaml"
    )
    assert [str(p) for p in problems] == [
        "c.yaml:3:18: platform.type: unknown platform type 'iodn'; use one of "
        f"{', '.join(known_platform_types())} (e.g. platform: {{type: iodm, profile: prod}})"
    ]
    assert "iodm" in known_platform_types()
    _, problems = check_text(BASE.format(platform="platform: {profile: prod}"), "c.yaml")
    assert [str(p) for p in problems] == [
        "c.yaml:3:11: missing required key 'type' (Platform type, one of the registered types.)"
    ]


async def test_open_platform_refuses_an_unknown_type() -> None:
    with pytest.raises(UnknownPlatformType, match="unknown platform type 'nope'; known types: "):
        async with open_platform(PlatformRef("nope", "default")):
            pass


async def test_open_platform_takes_the_spec_section_or_a_profile(lab_env: None) -> None:
    spec = load_spec_text(BASE.format(platform="platform: {type: iodm, profile: lab}"))
    async with open_platform(spec.platform) as platform:
        assert isinstance(platform, IoDMPlatform)
        assert platform.settings.app_id == "lab"
        assert platform.capabilities.max_devices_per_task == 256
        assert platform.call_counts() == {}
    async with open_platform("lab") as platform:  # a bare profile: the default type
        assert isinstance(platform, IoDMPlatform)


async def test_a_registered_type_is_known_to_specs_and_open_platform(
    lab_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platforms, "_REGISTRY", dict(platforms._REGISTRY))
    opened: list[str] = []

    def factory(profile: str, *, clock: Clock | None = None) -> Platform:
        opened.append(profile)
        return IoDMPlatform(IoDMSettings.from_env(profile), clock=clock)

    register_platform("second", factory, simulator_url=lambda profile: f"http://sim/{profile}")
    assert "second" in known_platform_types()
    spec = load_spec_text(BASE.format(platform="platform: {type: second, profile: lab}"))
    async with open_platform(spec.platform) as platform:
        assert isinstance(platform, IoDMPlatform)
    assert opened == ["lab"]
    assert simulator_url(spec.platform) == "http://sim/lab"


def test_the_sim_clock_follows_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IODM_BASE_URL", raising=False)
    monkeypatch.setenv("IODM_LAB_BASE_URL", "http://127.0.0.1:9")
    spec = load_spec_text(BASE.format(platform="platform: {type: iodm, profile: lab}"))
    assert "127.0.0.1:9" in repr(clock_from_option("sim", platform=spec.platform))
    # the default profile without IODM_BASE_URL: the embedded simulator
    assert "127.0.0.1:8743" in repr(clock_from_option("sim"))


def test_a_campaign_stored_with_the_old_form_has_not_changed() -> None:
    old = {"name": "t", "platform": "default"}
    assert (
        spec_changes(old, {"name": "t", "platform": {"type": "iodm", "profile": "default"}}) == []
    )
    moved = spec_changes(old, {"name": "t", "platform": {"type": "iodm", "profile": "prod"}})
    assert [(c.field, c.mutable) for c in moved] == [("platform", False)]


def test_validate_reports_an_unknown_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE.format(platform="platform: {type: acme}"))
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    assert info.value.code == 2
    out = capsys.readouterr().out
    assert f"{path}:3:18: platform.type: unknown platform type 'acme'; use one of " in out
    assert "Traceback" not in out
    with pytest.raises(UserError):
        platforms.platform_factory("acme")


def test_validate_refuses_groups_on_thingspace_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("THINGSPACE_BASE_URL", "THINGSPACE_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ts.yaml"
    path.write_text(
        "name: ts\nkind: firmware\nplatform: {type: thingspace}\npackage: {file_id: abc}\n"
        "targets:\n  groups:\n    - name: meters\nwaves: [{percent: 100}]\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    assert info.value.code == 2
    out = capsys.readouterr().out
    assert (
        f"{path}:6:3: targets.groups: platform thingspace has no device groups; list the devices"
        in out
    )
    assert "checked against the thingspace defaults" in out
    assert "Traceback" not in out
    listed = tmp_path / "ids.yaml"
    listed.write_text(BASE.format(platform="platform: {type: thingspace}"))
    with pytest.raises(SystemExit) as ok:
        main(["validate", str(listed)])
    assert ok.value.code == 0
    assert "ok (t, firmware, 1 waves)" in capsys.readouterr().out
