"""What an operator sees of a consent campaign: ``fleetwave consent status NAME``, the
report (markdown and JSON) and the Prefect summary artifact count the devices by consent
state, apart from the outcomes: declines and expired answers are never failures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from fleetwave import store
from fleetwave.cli import main
from fleetwave.clock import ManualClock
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.runner import OutcomeKind, advance
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.report.store import load_report
from flows.artifacts import publish_report
from tests.e2e.engine.helpers import answer_all, device_rows, new_store, spec_of
from tests.e2e.engine.test_consent_campaign import SPEC, _iso

D = store.DeviceRunStatus


@dataclass
class Finished:
    """A finished consent campaign and what its owners answered."""

    url: str
    expected: dict[str, int]
    failed: int
    token: str
    devices: list[str]


async def _campaign(tmp_path: Path) -> Finished:
    """``consent-meters`` on 40 devices: one auto, one appointed, three declined, two
    silent (expired, skipped), the rest confirmed; the platform fails some of them."""
    clock = ManualClock()
    t0 = clock.now()
    platform = MemoryPlatform(MemoryConfig(devices=40, seed=3, failure_rate=0.3), clock=clock)
    path = tmp_path / "operator.db"
    db = new_store(path)
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    auto, appointed, *rest = devices
    declined, silent, confirmed = rest[:3], rest[3:5], rest[5:]
    with store.session_scope(db) as s:
        store.import_device_owners(s, rows=[(d, "owner") for d in devices], now=t0)
        token = store.issue_owner_token(s, owner_id="owner", now=t0)
        store.set_auto_upgrade(s, device_id=auto, enabled=True, actor="owner:owner", now=t0)
    spec = spec_of(SPEC)
    await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
    start = (t0 + timedelta(hours=3)).replace(second=0, microsecond=0)
    items = [{"deviceId": d, "action": "confirm"} for d in confirmed]
    items += [{"deviceId": d, "action": "cancel"} for d in declined]
    items.append(
        {
            "deviceId": appointed,
            "action": "appoint",
            "appointStart": _iso(start),
            "appointEnd": _iso(start + timedelta(hours=2)),
        }
    )
    answer_all(db, clock, token, items)
    last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=2000)
    assert last.kind is OutcomeKind.COMPLETED, last
    runs = device_rows(db, "consent-meters")
    db.dispose()
    failed = sum(1 for r in runs.values() if r.status in (D.FAILED, D.TIMED_OUT))
    assert failed, "the seeded failure rate should fail at least one consenting device"
    for d in (*declined, *silent):
        assert runs[d].status is D.SKIPPED
    expected = {
        "awaiting": 0,
        "confirmed": len(confirmed),
        "appointed": 1,
        "declined": len(declined),
        "expired": len(silent),
        "auto": 1,
    }
    return Finished(f"sqlite:///{path}", expected, failed, token, devices)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    assert done.value.code in (0, None), err
    return out


async def test_consent_status_and_report_count_consent_apart_from_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await _campaign(tmp_path)
    name = "consent-meters"
    status = json.loads(_cli(["consent", "status", name, "--db", run.url, "--json"], capsys))
    assert status == {"campaign": name, "consent": run.expected}
    text = _cli(["consent", "status", name, "--db", run.url], capsys).splitlines()
    assert text[0] == f"campaign {name}: consent of {sum(run.expected.values())} devices"
    assert {tuple(line.split()) for line in text[1:]} == {
        (state, str(n)) for state, n in run.expected.items()
    }
    report = json.loads(_cli(["report", name, "--db", run.url, "--json"], capsys))
    assert report["consent"] == run.expected
    # the declined and the expired devices are skipped, not failed
    assert report["totals"]["failed"] == run.failed
    assert report["totals"]["skipped"] == run.expected["declined"] + run.expected["expired"]
    markdown = _cli(["report", name, "--db", run.url, "--format", "md"], capsys)
    line = "- consent (apart from outcomes): " + ", ".join(
        f"{state} {n}" for state, n in run.expected.items()
    )
    assert line in markdown.splitlines()
    # the campaign completed: its plan stays open until the period (2d) ends, then closes
    engine = store.get_engine(run.url)
    clock = ManualClock()  # the campaign's start
    server = ConsentServer(create_consent_app(engine=engine, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    plan_url, details_url = (
        "/enduserapi/v2/getDeviceUpgradePlan",
        "/enduserapi/v2/getBatchUpgradeDetails",
    )
    try:
        headers = {"Authorization": f"Bearer {run.token}"}
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
            open_plan = c.get(plan_url, params={"deviceId": run.devices[0]})
            clock.advance(3 * 24 * 3600)  # past the plan period
            plan = c.get(plan_url, params={"deviceId": run.devices[0]})
            details = c.post(details_url, json={"deviceIds": run.devices[:2]})
    finally:
        server.stop()
        engine.dispose()
    assert open_plan.status_code == 200, open_plan.text
    assert open_plan.json()["data"]["campaign"] == name
    assert (plan.status_code, plan.json()["error"]["code"]) == (409, "PLAN_ENDED")
    assert {d["upgradeStatus"] for d in details.json()["data"]["details"]} == {"no_plan"}


async def test_the_summary_artifact_counts_consent_apart(
    tmp_path: Path, prefect_server: str
) -> None:
    run = await _campaign(tmp_path)
    engine = store.get_engine(run.url)
    with store.session_scope(engine, read_only=True) as s:
        report = load_report(s, "consent-meters")
    engine.dispose()

    @flow
    async def consent_campaign() -> str:  # what flows/campaign.py does at the end of a run
        from prefect.runtime import flow_run

        await publish_report(report)
        return str(flow_run.id)

    run_id = await consent_campaign()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    (summary,) = [a for a in found if a.type == "markdown"]
    lines = str(summary.data).splitlines()
    assert (
        "- consent (apart from outcomes): "
        + ", ".join(f"{state} {n}" for state, n in run.expected.items())
        in lines
    )
    assert any(line.startswith(f"- failed: {run.failed} (") for line in lines), lines
