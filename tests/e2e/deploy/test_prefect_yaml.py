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
        (schedule,) = d["schedules"]
        minute, hour, *rest = schedule["cron"].split()
        assert rest == ["*", "*", "*"], f"{d['name']}: nightly means every day"
        assert 0 <= int(minute) < 60 and (int(hour) >= 18 or int(hour) <= 5), schedule["cron"]
        pendulum.timezone(schedule["timezone"])  # raises for an unknown zone
        assert schedule["active"] is True


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
    (cron,) = d["schedules"]
    minute, hour = (int(x) for x in cron["cron"].split()[:2])
    window_days = {day.iso for w in spec.windows.allowed for day in w.days}
    # Every day of two weeks in winter and in summer (DST), skipping blackout days.
    for start in (pendulum.datetime(2026, 1, 5), pendulum.datetime(2026, 7, 6)):
        for offset in range(14):
            local = start.add(days=offset).replace(tzinfo=pendulum.timezone(cron["timezone"]))
            instant = local.set(hour=hour, minute=minute).add(minutes=1).in_tz("UTC")
            local_day = instant.in_tz(spec.windows.timezone)
            if schedule.is_blackout(local_day.date()):
                continue
            if local_day.isoweekday() not in window_days:
                continue  # no window on that weekday
            assert schedule.is_open(instant), f"{deployment}: {instant} is outside every window"
