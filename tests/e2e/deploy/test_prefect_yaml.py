"""prefect.yaml without a server: every deployment is well formed and matches campaigns/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _config() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _deployments() -> list[dict[str, Any]]:
    deployments = _config()["deployments"]
    assert isinstance(deployments, list) and deployments
    return deployments


def test_every_deployment_runs_the_campaign_flow_on_the_process_pool() -> None:
    names = [d["name"] for d in _deployments()]
    assert len(names) == len(set(names)), f"duplicate deployment names: {names}"
    for d in _deployments():
        path, _, func = d["entrypoint"].partition(":")
        assert (ROOT / path).is_file(), f"{d['name']}: entrypoint file {path} does not exist"
        assert f"def {func}(" in (ROOT / path).read_text(), f"{d['name']}: no {func} in {path}"
        assert d["work_pool"]["name"] == "fleetwave"
        env = d["work_pool"].get("job_variables", {}).get("env", {})
        assert env.get("PREFECT_TELEMETRY_ENABLED") == "false"
        assert not any("SECRET" in k or "PASSWORD" in k for k in env), "no secret in prefect.yaml"


def test_every_deployments_flow_runs_send_heartbeats_the_automation_expects() -> None:
    """The flow-run process gets PREFECT_FLOWS_HEARTBEAT_FREQUENCY from the deployment (a job
    variable overrides the worker's environment): the automation of `fleetwave prefect setup`
    crashes a run after WINDOW_SECONDS without one, so each must come more often. Prefect's
    own default (180 s) would crash healthy runs."""
    from flows.heartbeats import HEARTBEAT_SECONDS, HEARTBEAT_SETTING, WINDOW_SECONDS

    for d in _deployments():
        env = d["work_pool"].get("job_variables", {}).get("env", {})
        assert env.get(HEARTBEAT_SETTING) == str(HEARTBEAT_SECONDS), d["name"]
    assert HEARTBEAT_SETTING == "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
    assert HEARTBEAT_SECONDS >= 30 and 2 * HEARTBEAT_SECONDS <= WINDOW_SECONDS


def test_the_heartbeat_setting_is_the_one_prefect_reads() -> None:
    """The setting's name and minimum, as the installed Prefect reads them."""
    from prefect.settings.models.flows import FlowsSettings

    from flows.heartbeats import HEARTBEAT_SECONDS, HEARTBEAT_SETTING

    settings = FlowsSettings.model_validate({HEARTBEAT_SETTING.lower(): HEARTBEAT_SECONDS})
    assert settings.heartbeat_frequency == HEARTBEAT_SECONDS
    with pytest.raises(ValueError, match="greater than or equal to 30"):
        FlowsSettings.model_validate({HEARTBEAT_SETTING.lower(): 29})


def test_the_manual_deployment_asks_for_the_campaign_file() -> None:
    (manual,) = [d for d in _deployments() if d["name"] == "run-campaign"]
    assert "campaign" not in (manual.get("parameters") or {})
    assert not manual.get("schedules")


def test_one_nightly_deployment_per_example_campaign() -> None:
    examples = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "campaigns").glob("*.yaml"))
    assert examples, "campaigns/ has no example campaign"
    nightly = [d for d in _deployments() if d.get("schedules")]
    scheduled = sorted(d["parameters"]["campaign"] for d in nightly)
    assert scheduled == examples
    for d in nightly:
        assert d["name"].startswith("nightly-")
        # one run per campaign is the store's lease: a deployment concurrency slot is revoked
        # when a run pauses for approval (Prefect 3.9), and its renewal then crashes the run
        assert "concurrency_limit" not in d, f"{d['name']}: no deployment concurrency limit"
        for schedule in d["schedules"]:
            minute, hour, dom, month, _dow = schedule["cron"].split()
            assert (dom, month) == ("*", "*"), schedule["cron"]
            assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24, schedule["cron"]
            pendulum.timezone(schedule["timezone"])  # raises for an unknown zone
            assert schedule["active"] is True


def _cron_days(field: str) -> set[int]:
    """ISO weekdays (Monday = 1) of a cron day-of-week field (0 or 7 = Sunday)."""
    if field == "*":
        return set(range(1, 8))
    days: set[int] = set()
    for part in field.split(","):
        a, _, b = part.partition("-")
        days.update(range(int(a), int(b or a) + 1))
    return {d % 7 or 7 for d in days}


@pytest.mark.parametrize("deployment", [d["name"] for d in _deployments() if d.get("schedules")])
def test_schedules_and_description_follow_the_campaign_windows(deployment: str) -> None:
    """One schedule per allowed window, on that window's days (a Mon-Fri window is not
    scheduled daily), in its timezone; the description names the campaign, its windows
    and the schedule's timezone, as flows/schedules.py derives them."""
    from fleetwave.spec import load_spec
    from flows.schedules import cron_schedules, deployment_description

    (d,) = [d for d in _deployments() if d["name"] == deployment]
    file = d["parameters"]["campaign"]
    spec = load_spec(ROOT / file)
    schedules = [{"cron": x["cron"], "timezone": x["timezone"]} for x in d["schedules"]]
    if spec.windows is not None and spec.windows.allowed:
        assert schedules == cron_schedules(spec)
    summary, _, _ = d["description"].partition(": campaign ")
    expected = deployment_description(
        summary, file, spec, schedule_timezone=schedules[0]["timezone"]
    )
    assert " ".join(d["description"].split()) == expected
    assert schedules[0]["timezone"] in expected


def test_a_weekday_window_is_scheduled_on_weekdays_only() -> None:
    from fleetwave.spec import load_spec_text
    from flows.schedules import cron_schedules, describe_windows

    spec = load_spec_text(
        """
name: weekdays
kind: firmware
package: {version: "1.0", device_type: M, model: M, manufacturer_name: X}
targets: {devices: [a]}
waves: [{percent: 100}]
windows:
  timezone: Europe/Berlin
  allowed:
    - {days: weekdays, start: "22:00", end: "05:00"}
    - {days: [sat], start: "09:30", end: "12:00"}
    - {days: [sun], start: "00:00", end: "00:00"}
"""
    )
    assert cron_schedules(spec) == [
        {"cron": "0 22 * * 1-5", "timezone": "Europe/Berlin"},
        {"cron": "30 9 * * 6", "timezone": "Europe/Berlin"},
        {"cron": "0 0 * * 0", "timezone": "Europe/Berlin"},
    ]
    assert describe_windows(spec) == (
        "Mon-Fri 22:00-05:00, Sat 09:30-12:00, Sun all day (Europe/Berlin)"
    )


@pytest.mark.parametrize("deployment", [d["name"] for d in _deployments() if d.get("parameters")])
def test_campaign_parameters_name_files_that_validate(deployment: str) -> None:
    from fleetwave.spec import load_spec

    (d,) = [d for d in _deployments() if d["name"] == deployment]
    load_spec(ROOT / d["parameters"]["campaign"])


@pytest.mark.parametrize("deployment", [d["name"] for d in _deployments() if d.get("schedules")])
def test_nightly_runs_start_inside_an_allowed_window(deployment: str) -> None:
    """A scheduled run that starts outside every window would only end at once, every night."""
    from fleetwave.spec import load_spec

    (d,) = [d for d in _deployments() if d["name"] == deployment]
    spec = load_spec(ROOT / d["parameters"]["campaign"])
    if spec.windows is None or not spec.windows.allowed:
        return  # always allowed
    schedule = spec.windows.schedule()
    for cron in d["schedules"]:
        minute, hour, _, _, dow = cron["cron"].split()
        cron_days = _cron_days(dow)
        # Every day of two weeks in winter and in summer (DST), skipping blackout days.
        for start in (pendulum.datetime(2026, 1, 5), pendulum.datetime(2026, 7, 6)):
            for offset in range(14):
                local = start.add(days=offset).replace(tzinfo=pendulum.timezone(cron["timezone"]))
                if local.isoweekday() not in cron_days:
                    continue  # the schedule does not run that day
                at = local.set(hour=int(hour), minute=int(minute)).add(minutes=1)
                instant = at.in_tz("UTC")
                if schedule.is_blackout(instant.in_tz(spec.windows.timezone).date()):
                    continue
                assert schedule.is_open(instant), f"{deployment}: {instant} is outside every window"
