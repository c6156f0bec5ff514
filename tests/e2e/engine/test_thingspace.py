"""Whole campaigns on ThingSpace: the engine and the ThingSpace driver against the ThingSpace
simulator over real HTTP, on a manual clock linked to it.

A FOTA v1 firmware campaign of IMEIs runs to completion with exactly one upgrade per
device and round; a FOTA v2 file campaign with ``execute: window`` sends its tasks as a
date plus download and install hours that lie inside the campaign's window.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetwave import store
from fleetwave.engine.runner import Outcome, OutcomeKind, advance
from fleetwave.platforms.thingspace import ThingSpacePlatform, ThingSpaceSettings
from fleetwave.sim.linked_clock import SimLinkedClock
from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from fleetwave.spec import CampaignSpec
from tests.e2e.engine.helpers import (
    Recorder,
    campaign_row,
    check_exactly_once,
    chunks,
    device_rows,
    events,
    new_store,
    spec_of,
)

D = store.DeviceRunStatus

FIRMWARE = """
name: ts-meters-fw
kind: firmware
platform: {{type: thingspace}}
package: {{version: "1.5.0", model: WM-200, manufacturer_name: Aquaflow}}
targets: {{devices_file: {ids}}}
waves:
  - count: 20
  - percent: 100
policy:
  poll_interval: 10m
  task_timeout: 12h
  max_devices_per_task: 50
thresholds: {{max_failure_percent: 30, min_finished: 20, wave_success_percent: 70}}
"""

FILES = """
name: ts-meters-config
kind: software
platform: {{type: thingspace}}
package: {{version: "2.0", model: WM-200, manufacturer_name: Aquaflow}}
targets: {{devices_file: {ids}}}
waves:
  - percent: 100
policy:
  execute: window
  poll_interval: 10m
  task_timeout: 12h
windows:
  timezone: UTC
  allowed:
    - days: [mon, tue, wed, thu, fri, sat, sun]
      start: "02:00"
      end: "05:00"
thresholds: {{max_failure_percent: 40, min_finished: 10, wave_success_percent: 50}}
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[TSHandle]:
    with run_thingspace_simulator(
        devices=1500, groups=5, seed=5, clock="manual", rate_limit=0, failure_rate=0.05
    ) as handle:
        yield handle


def _ids(sim: TSHandle, tmp_path: Path, name: str, count: int, skip: int = 0) -> Path:
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(sim.imeis("WM-200")[skip : skip + count]) + "\n")
    return path


async def _run(spec: CampaignSpec, db: Any, sim: TSHandle, rec: Recorder) -> tuple[Outcome, Any]:
    clock = SimLinkedClock(sim.base_url)
    settings = ThingSpaceSettings(
        base_url=sim.base_url,
        key=sim.client_key,
        secret=sim.client_secret,
        username=sim.username,
        password=sim.password,
        account_name=sim.account,
        rate_limit=0,
    )
    platform = ThingSpacePlatform(settings, clock=clock)
    try:
        outcome = await advance(
            spec,
            db=db,
            platform=platform,
            clock=clock,
            progress=rec,
            max_rounds=2000,
            sleep_through_windows=True,
        )
        return outcome, dict(platform.call_counts()), platform.client.auth
    finally:
        await platform.aclose()
        clock.close()


def _platform_tasks(sim: TSHandle, devices: set[str] | None = None) -> list[dict[str, Any]]:
    """The simulator's requests (those touching ``devices`` when given: the module's
    campaigns share one simulator)."""
    return [
        {
            "operationId": f"{r['api']}:{r['id']}",
            "fileId": r["package"] if r["api"] == "v1" else f"{r['package']}@2.0",
            "devices": r["devices"],
        }
        for r in sim.stats()["requests"]
        if devices is None or devices & set(r["devices"])
    ]


async def test_a_firmware_campaign_runs_to_completion_exactly_once(
    sim: TSHandle, tmp_path: Path
) -> None:
    start = sim.clock()
    db = new_store(tmp_path / "fw.db")
    spec = spec_of(FIRMWARE.format(ids=_ids(sim, tmp_path, "fw", 120)))
    rec = Recorder()
    outcome, calls, auth = await _run(spec, db, sim, rec)
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    rows = device_rows(db, spec.name)
    assert len(rows) == 120
    statuses = {r.status for r in rows.values()}
    assert statuses <= {D.SUCCEEDED, D.FAILED, D.TIMED_OUT, D.SKIPPED}, statuses
    succeeded = [d for d, r in rows.items() if r.status is D.SUCCEEDED]
    assert len(succeeded) >= 80
    for device in succeeded[:5]:  # the platform's own truth: the device runs 1.5.0
        assert sim.device(device)["softwareList"][0]["version"] == "1.5.0"
    file_ids = {c.file_id for c in chunks(db, spec.name)}
    per_device = check_exactly_once(db, spec.name, _platform_tasks(sim), file_ids)
    assert set(per_device) <= set(rows)
    # a token an hour (it lasts one) and a session only when one lapsed: no login storm
    hours = (sim.clock() - start).total_seconds() / 3600
    assert 1 <= auth.token_logins <= hours + 1, (auth.token_logins, hours)
    assert calls["POST /api/ts/v1/oauth2/token"] == auth.token_logins
    assert 1 <= auth.session_logins <= auth.token_logins, auth.session_logins
    assert calls["POST /api/m2m/v1/session/login"] == auth.session_logins
    creates = calls["POST /api/fota/v1/upgrades"]
    assert creates == len([c for c in chunks(db, spec.name) if c.operation_id])
    assert campaign_row(db, spec.name).status is store.CampaignStatus.COMPLETED


async def test_a_file_campaign_keeps_its_download_and_install_hours(
    sim: TSHandle, tmp_path: Path
) -> None:
    db = new_store(tmp_path / "files.db")
    spec = spec_of(FILES.format(ids=_ids(sim, tmp_path, "files", 60)))
    rec = Recorder()
    outcome, calls, _ = await _run(spec, db, sim, rec)
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert calls["POST /api/fota/v2/campaigns/files/{account}"] >= 1
    rows = device_rows(db, spec.name)
    assert sum(r.status is D.SUCCEEDED for r in rows.values()) >= 30
    for c in chunks(db, spec.name):
        policy = c.policy
        assert policy["execute_type"] == "custom"
        start, end = policy["start_time"], policy["end_time"]
        assert start is not None and end is not None
        # whole hours inside 02:00-05:00 UTC
        assert start[11:13] >= "02" and end[11:13] <= "05" and start[14:16] == "00"
    ids = {c.operation_id.removeprefix("v2:") for c in chunks(db, spec.name) if c.operation_id}
    sent = [r for r in sim.stats()["requests"] if r["id"] in ids]
    assert sent and all(r["api"] == "v2" for r in sent)


async def test_separate_install_hours_go_as_their_own_window(sim: TSHandle, tmp_path: Path) -> None:
    """``windows.install`` apart from the allowed (download) window: each FOTA v2 campaign
    the simulator receives carries both lists, and the campaign completes under them."""
    ids = _ids(sim, tmp_path, "install", 40, skip=200)
    text = FILES.format(ids=ids).replace("name: ts-meters-config", "name: ts-meters-install")
    text = text.replace(
        '      end: "05:00"\n', '      end: "05:00"\n  install: {start: "04:00", end: "07:00"}\n'
    )
    spec = spec_of(text)
    assert spec.windows is not None and spec.windows.install is not None
    db = new_store(tmp_path / "install.db")
    outcome, _, _ = await _run(spec, db, sim, Recorder())
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    sent = [c for c in chunks(db, spec.name) if c.operation_id]
    assert sent
    for c in sent:
        assert c.policy["install_start"][11:16] == "04:00", c.policy
        assert c.policy["install_end"][11:16] == "07:00", c.policy
    ops = {c.operation_id.removeprefix("v2:") for c in sent if c.operation_id}
    requests = [r for r in sim.stats()["requests"] if r["id"] in ops]
    assert len(requests) == len(ops)
    for r in requests:
        (download,) = r["downloadTimeWindowList"]
        assert download["startTime"] >= 2 and download["endTime"] == 5, r
        assert r["installTimeWindowList"] == [{"startTime": 4, "endTime": 7}], r
    rows = device_rows(db, spec.name)
    done = [r for r in rows.values() if r.status is D.SUCCEEDED]
    assert len(done) >= 20


async def test_plan_says_how_each_window_is_sent(sim: TSHandle, tmp_path: Path) -> None:
    from fleetwave.cli.campaign import preview_campaign

    ids = _ids(sim, tmp_path, "plan", 30)
    night = FILES.format(ids=ids).replace('"02:00"', '"22:30"').replace('"05:00"', '"03:00"')
    clock = SimLinkedClock(sim.base_url)
    settings = ThingSpaceSettings(
        base_url=sim.base_url,
        key=sim.client_key,
        secret=sim.client_secret,
        username=sim.username,
        password=sim.password,
        account_name=sim.account,
        rate_limit=0,
    )
    platform = ThingSpacePlatform(settings, clock=clock)
    try:
        now = sim.clock()
        data = await preview_campaign(spec_of(night), platform, now=now)
        sent = [w["sent_as"] for w in data["windows"]["next"]]
        assert sent and all(
            s.endswith(
                "23:00-24:00 UTC (cut at midnight UTC: the rest of the "
                "window would reopen on other days)"
            )
            for s in sent
        ), sent
        hours = FILES.format(ids=ids).replace(
            '      end: "05:00"\n',
            '      end: "05:00"\n  install: {start: "04:00", end: "07:00"}\n',
        )
        data = await preview_campaign(spec_of(hours), platform, now=now)
        sent = [w["sent_as"] for w in data["windows"]["next"]]
        assert sent and all(
            s.endswith(", download 02:00-05:00 UTC, install 04:00-07:00 UTC") for s in sent
        ), sent
        fw = (
            FIRMWARE.format(ids=ids).replace(
                "  max_devices_per_task: 50\n",
                "  max_devices_per_task: 50\n  execute: window\n",
            )
            + "windows:\n  timezone: UTC\n  allowed:\n"
            + "    - {days: [mon], start: '02:00', end: '05:00'}\n"
        )
        data = await preview_campaign(spec_of(fw), platform, now=now)
        assert all(
            w["sent_as"].startswith(
                "cannot be sent: FOTA v1 firmware upgrades are scheduled by date"
            )
            for w in data["windows"]["next"]
        )
    finally:
        await platform.aclose()
        clock.close()


FLAKY = """
name: ts-flaky-rollback
kind: firmware
platform: {{type: thingspace}}
package: {{version: "0.2.0", model: FLAKY-1, manufacturer_name: Flakeworks}}
rollback: {{version: "0.1.0", model: FLAKY-1, manufacturer_name: Flakeworks}}
targets: {{devices_file: {ids}}}
waves:
  - count: 20
  - percent: 100
policy: {{poll_interval: 10m, task_timeout: 6h, max_devices_per_task: 10}}
thresholds: {{max_failure_percent: 20, min_finished: 10, on_breach: rollback}}
"""


async def test_a_breach_rolls_back_with_the_previous_firmware(
    sim: TSHandle, tmp_path: Path
) -> None:
    path = tmp_path / "flaky.txt"
    path.write_text("\n".join(sim.imeis("FLAKY-1")[:30]) + "\n")
    db = new_store(tmp_path / "flaky.db")
    spec = spec_of(FLAKY.format(ids=path))
    outcome, _, _ = await _run(spec, db, sim, Recorder())
    assert outcome.kind is OutcomeKind.ROLLED_BACK, outcome
    rows = device_rows(db, spec.name)
    back = [d for d, r in rows.items() if r.status is D.ROLLED_BACK]
    assert back, {r.status for r in rows.values()}
    for device in back:  # the platform's truth: the previous firmware again
        assert sim.device(device)["softwareList"][0]["version"] == "0.1.0"
    rollback = [c for c in chunks(db, spec.name) if c.kind is store.ChunkKind.ROLLBACK]
    assert rollback and {c.file_id for c in rollback} == {"FOTA_Flakeworks_FLAKY-1_0.2.0To0.1.0"}


@pytest.mark.slow
async def test_callbacks_over_https_feed_the_push_receiver(tmp_path: Path) -> None:
    """ThingSpace posts only to https:// URLs: the receiver serves TLS with a certificate
    the platform trusts, and the campaign's device runs move on what it posts."""
    from fleetwave.notify import NotifySettings, PushChannel
    from tests.integration.client.test_tls import _ca, _leaf, _write_cert, _write_key

    ca_key, ca_cert = _ca("fleetwave push CA")
    key, cert = _leaf(ca_key, ca_cert, "127.0.0.1", server=True)
    ca = _write_cert(ca_cert, tmp_path / "ca.pem")
    tls = NotifySettings(
        flush_ms=20,
        quiet_after=3600,
        tls_cert=str(_write_cert(cert, tmp_path / "push.pem")),
        tls_key=str(_write_key(key, tmp_path / "push.key")),
    )
    with run_thingspace_simulator(
        devices=600, groups=3, seed=5, clock="manual", rate_limit=0, callback_ca=ca
    ) as ts:
        db = new_store(tmp_path / "push.db")
        spec = spec_of(FIRMWARE.format(ids=_ids(ts, tmp_path, "push", 40)))
        clock = SimLinkedClock(ts.base_url)
        settings = ThingSpaceSettings(
            base_url=ts.base_url,
            key=ts.client_key,
            secret=ts.client_secret,
            username=ts.username,
            password=ts.password,
            account_name=ts.account,
            rate_limit=0,
        )
        platform = ThingSpacePlatform(settings, clock=clock)
        try:
            with PushChannel(db, clock=clock, settings=tls) as channel:
                assert channel.callback_url.startswith("https://127.0.0.1:")
                outcome = await advance(
                    spec, db=db, platform=platform, clock=clock, push=channel, max_rounds=2000
                )
                stats = channel.stats()
        finally:
            await platform.aclose()
            clock.close()
        pushed = ts.stats(requests=False)["callbacks"]
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    assert pushed.get("delivered", 0) > 0 and not pushed.get("failed"), pushed
    assert stats.accepted > 0 and stats.changed > 0 and stats.malformed == 0, stats


async def test_a_lost_create_reply_is_reconciled_not_resent(sim: TSHandle, tmp_path: Path) -> None:
    db = new_store(tmp_path / "lost.db")
    text = FIRMWARE.format(ids=_ids(sim, tmp_path, "lost", 40, skip=200))
    spec = spec_of(text.replace("name: ts-meters-fw", "name: ts-meters-fw-lost"))
    sim.set_faults(
        drop_rate=1.0,
        drop_after_commit=True,  # ThingSpace creates the upgrade; its answer is lost
        methods=["POST"],
        path_prefix="/api/fota/v1/upgrades",
        count=1,
    )
    try:
        outcome, calls, _ = await _run(spec, db, sim, Recorder())
    finally:
        sim.clear_faults()
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    file_ids = {c.file_id for c in chunks(db, spec.name)}
    mine = set(device_rows(db, spec.name))
    per_device = check_exactly_once(db, spec.name, _platform_tasks(sim, mine), file_ids)
    assert per_device and set(per_device.values()) == {1}  # nobody got a second upgrade
    assert any(c.reconciled for c in chunks(db, spec.name))
    assert calls["GET /api/fota/v1/reports/{account}/devices/{deviceId}"] >= 1  # by history


ELIGIBILITY = """
name: {name}
kind: firmware
platform: {{type: thingspace}}
package: {{version: "1.5.0", model: WM-200, manufacturer_name: Aquaflow}}
targets: {{devices_file: {ids}, {targets}}}
waves:
  - percent: 100
policy:
  poll_interval: 10m
  task_timeout: 12h
  max_devices_per_task: 10
thresholds: {{max_failure_percent: 40, min_finished: 10, wave_success_percent: 50}}
"""


def _odd_devices(sim: TSHandle) -> tuple[str, str, list[str]]:
    """A WM-200 that is not FOTA eligible, one already on 1.5.0 (not the 1.4.2 the image
    upgrades from), and 1.4.2 devices no other test of the module sends."""
    ineligible = on_new = None
    usual: list[str] = []
    for imei in sim.imeis("WM-200")[300:]:
        d = sim.device(imei)
        if d["requests"]:
            continue
        version = d["softwareList"][0]["version"]
        if not d["fotaEligible"]:
            ineligible = ineligible or imei
        elif version == "1.5.0":
            on_new = on_new or imei
        elif version == "1.4.2" and len(usual) < 48:
            usual.append(imei)
        if ineligible and on_new and len(usual) == 48:
            break
    assert ineligible and on_new and len(usual) == 48, (ineligible, on_new, len(usual))
    return ineligible, on_new, usual


async def _eligibility_campaign(
    sim: TSHandle, tmp_path: Path, name: str, devices: list[str], targets: str
) -> tuple[Outcome, dict[str, Any], Any, CampaignSpec]:
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(devices) + "\n")
    spec = spec_of(ELIGIBILITY.format(name=name, ids=path, targets=targets))
    db = new_store(tmp_path / f"{name}.db")
    outcome, calls, _ = await _run(spec, db, sim, Recorder())
    return outcome, calls, db, spec


async def test_ineligible_and_other_firmware_devices_are_skipped_before_any_create(
    sim: TSHandle, tmp_path: Path
) -> None:
    """The pre-flight reads the account's device list: a device ThingSpace calls not FOTA
    eligible and one not on the image's from-version are skipped with their reasons, and
    the rest of the campaign completes, one upgrade per sent device, none refused."""
    ineligible, on_new, usual = _odd_devices(sim)
    devices = [*usual[:10], ineligible, *usual[10:20], on_new, *usual[20:24]]
    outcome, calls, db, spec = await _eligibility_campaign(
        sim, tmp_path, "ts-elig-preflight", devices, "skip_up_to_date: false"
    )
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    rows = device_rows(db, spec.name)
    assert rows[ineligible].status is D.SKIPPED
    assert (rows[ineligible].failure_detail or "").startswith("ineligible: "), rows[ineligible]
    assert "not FOTA eligible" in (rows[ineligible].failure_detail or "")
    assert rows[on_new].status is D.SKIPPED
    assert rows[on_new].failure_detail == (
        "other_version: runs a version the package does not upgrade from "
        "(on 1.5.0; the package upgrades 1.4.2)"
    )
    sent = [c for c in chunks(db, spec.name) if c.operation_id]
    # every create was accepted: none refused, none abandoned
    assert calls["POST /api/fota/v1/upgrades"] == len(sent) == len(chunks(db, spec.name))
    counts = sim.stats()["device_request_counts"]
    assert {d: counts.get(d, 0) for d in devices} == {
        d: 0 if d in (ineligible, on_new) else 1 for d in devices
    }
    assert {r.status for d, r in rows.items() if d not in (ineligible, on_new)} <= {
        D.SUCCEEDED,
        D.FAILED,
        D.TIMED_OUT,
    }


async def test_a_create_refused_for_one_device_skips_it_and_resends_the_rest(
    sim: TSHandle, tmp_path: Path
) -> None:
    """Without the pre-flight ThingSpace refuses the whole upgrade because of one device it
    names (DeviceNotEligible, DeviceMismatch): that device is skipped with ThingSpace's
    words and the rest of its chunk goes in the next round, no device ever sent twice."""
    ineligible, on_new, usual = _odd_devices(sim)
    devices = [*usual[24:30], ineligible, *usual[30:36], on_new, *usual[36:48]]
    outcome, calls, db, spec = await _eligibility_campaign(
        sim,
        tmp_path,
        "ts-elig-refused",
        devices,
        "preflight: false, skip_up_to_date: false, check_compatibility: false",
    )
    assert outcome.kind is OutcomeKind.COMPLETED, outcome
    rows = device_rows(db, spec.name)
    for bad, said in ((ineligible, "is not FOTA eligible"), (on_new, "has firmware 1.5.0")):
        assert rows[bad].status is D.SKIPPED, rows[bad]
        detail = rows[bad].failure_detail or ""
        assert detail.startswith("refused: the platform refused the task because of this "), detail
        assert said in detail, detail
    all_chunks = chunks(db, spec.name)
    sent = [c for c in all_chunks if c.operation_id]
    abandoned = [c for c in all_chunks if c.status is store.ChunkStatus.ABANDONED]
    assert len(abandoned) == 2, [(c.id, c.note) for c in abandoned]
    assert calls["POST /api/fota/v1/upgrades"] == len(sent) + 2
    counts = sim.stats()["device_request_counts"]
    assert {d: counts.get(d, 0) for d in devices} == {
        d: 0 if d in (ineligible, on_new) else 1 for d in devices
    }
    dropped = events(db, spec.name, ["devices_dropped"])
    assert sorted(d for e in dropped for d in e.data["devices"]) == sorted([ineligible, on_new])
