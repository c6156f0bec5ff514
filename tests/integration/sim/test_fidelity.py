"""Fidelity to Huawei's reference and SDKs: ``callbackurl``, late subscriptions, ``extendInfo``,
unknown paths (real HTTP against the simulator)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings, reset_limiters
from fleetwave.sim.testing import SimHandle
from tests.integration.sim.conftest import (
    FW_UPGRADE,
    IODM,
    OPERATIONS,
    SUBSCRIBE,
    Api,
    Receiver,
    error_of,
)

STATE, RESULT = "fwUpgradeStateChangeNotify", "fwUpgradeResultNotify"


def _task(mapi: Api, sim: SimHandle, n: int, group: str = "meters-berlin", skip: int = 0) -> str:
    """A firmware task on ``n`` online, never-failing members of ``group`` (after ``skip``)."""
    fid = mapi.package("WM-200", "firmware", "1.5.0")
    devs = mapi.members(group, skip + n)[skip:]
    sim.set_devices(device_ids=devs, connectivity="online", failure_rate=0.0)
    body = mapi.ok("post", FW_UPGRADE, json={"fileId": fid, "targets": {"devices": devs}})
    return str(body["operationId"])


def _steps(received: list[dict[str, Any]], op: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in received:
        if n["operationId"] == op:
            out.setdefault(n["deviceId"], []).append(n.get("stepDesc", "result"))
    return out


def _wait_pushed(sim: SimHandle, n: int) -> dict[str, int]:
    deadline = time.monotonic() + 10  # the sender counts after the receiver has answered
    while (counts := sim.stats(tasks=False)["notifications"])["pushed"] < n:
        assert time.monotonic() < deadline, counts
        time.sleep(0.02)
    return dict(counts)


# -- subscribe: callbackurl (the SDKs) and callbackUrl (the HTTP chapter) -----------------------


def test_subscribe_accepts_callbackurl_as_the_official_sdks_send_it(
    mapi: Api, manual_sim: SimHandle, receiver: Receiver
) -> None:
    r = mapi.post(SUBSCRIBE, json={"notifyType": RESULT, "callbackurl": receiver.url})
    assert r.status_code == 200, r.text
    op = _task(mapi, manual_sim, 2)
    manual_sim.advance(3000)
    receiver.wait_for(lambda got: len(got) >= 2)
    assert {(n["notifyType"], n["operationId"], n["status"]) for n in receiver.received} == {
        (RESULT, op, "SUCCESS")
    }
    # the lower-case spelling is validated like the other one
    bad = mapi.post(SUBSCRIBE, json={"notifyType": RESULT, "callbackurl": "ftp://x"})
    assert error_of(bad) == (400, "100222")
    missing = mapi.post(SUBSCRIBE, json={"notifyType": RESULT})
    assert error_of(missing) == (400, "100222")


async def test_the_adapter_subscribes_and_receives_pushes(
    manual_sim: SimHandle, mapi: Api, receiver: Receiver
) -> None:
    reset_limiters()
    settings = IoDMSettings(
        base_url=manual_sim.base_url,
        app_id=manual_sim.app_id,
        secret=manual_sim.secret,
        rate_limit=0,
    )
    async with IoDMPlatform(settings) as platform:
        await platform.subscribe(RESULT, receiver.url)
    reset_limiters()
    mapi.login()  # the adapter's login replaced this client's token
    op = _task(mapi, manual_sim, 3)
    manual_sim.advance(3000)
    receiver.wait_for(lambda got: len(got) >= 3)
    assert sorted(n["operationId"] for n in receiver.received) == [op] * 3


# -- a subscription made after a task exists ---------------------------------------------------


def test_a_late_subscription_receives_the_later_events_of_running_tasks(
    mapi: Api, manual_sim: SimHandle, receiver: Receiver
) -> None:
    done = _task(mapi, manual_sim, 2, skip=0)
    manual_sim.advance(1500)  # every subtask of `done` is final before anyone subscribes
    running = _task(mapi, manual_sim, 3, skip=2)
    manual_sim.advance(1)  # past the "downloading" step (online devices start at creation)
    for t in (STATE, RESULT):
        assert mapi.post(SUBSCRIBE, json={"notifyType": t, "callbackUrl": receiver.url}).is_success
    # subscribing again replaces the callback; it must not schedule the events twice
    assert mapi.post(SUBSCRIBE, json={"notifyType": STATE, "callbackUrl": receiver.url}).is_success
    manual_sim.advance(3000)
    receiver.wait_for(lambda got: len(got) >= 12)
    steps = _steps(receiver.received, running)
    assert len(steps) == 3
    for dev, seq in steps.items():  # what happened after the subscription, once, in order
        assert seq == ["downloaded", "updating", "idle", "result"], (dev, seq)
    assert _steps(receiver.received, done) == {}  # its past is not replayed

    # a task created after the subscriptions gets every event, from its creation on
    mapi.login()  # the simulator's hour-long token has expired on its clock
    later = _task(mapi, manual_sim, 2, skip=5)
    manual_sim.advance(3000)
    receiver.wait_for(lambda got: len(got) >= 22)
    for seq in _steps(receiver.received, later).values():
        assert seq == ["downloading", "downloaded", "updating", "idle", "result"]
    assert _wait_pushed(manual_sim, 22) == {"pushed": 22, "failed": 0, "pending": 0}
    assert len(receiver.received) == 22
    ids = Counter(
        (n["subOperationId"], n["notifyType"], n.get("stepDesc")) for n in receiver.received
    )
    assert max(ids.values()) == 1


# -- subtasks: extendInfo as well as extendPara --------------------------------------------------


async def test_subtasks_carry_extend_info_and_extend_para(mapi: Api, manual_sim: SimHandle) -> None:
    op = _task(mapi, manual_sim, 2)
    manual_sim.advance(3000)
    page = mapi.ok("get", f"{OPERATIONS}/{op}/subOperations", params={"pageSize": 10})
    assert len(page["data"]) == 2
    for sub in page["data"]:
        assert sub["extendInfo"] == sub["extendPara"]
        assert sub["extendInfo"]["curVersion"] == sub["extendInfo"]["targetVersion"] == "1.5.0"
        assert sub["extendInfo"]["sourceVersion"] == "1.4.2"
    reset_limiters()
    settings = IoDMSettings(
        base_url=manual_sim.base_url,
        app_id=manual_sim.app_id,
        secret=manual_sim.secret,
        rate_limit=0,
    )
    async with IoDMPlatform(settings) as platform:
        results = [r async for r in platform.subtasks(op)]
    reset_limiters()
    assert [(r.source_version, r.current_version, r.target_version) for r in results] == [
        ("1.4.2", "1.5.0", "1.5.0")
    ] * 2


# -- unknown paths --------------------------------------------------------------------------------


def test_unknown_paths_answer_in_the_platforms_error_shape(api: Api) -> None:
    for path in (f"{IODM}/nothing-here", "/iocm/app/dm/v9.9.9/devices", "/favicon.ico"):
        r = api.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json() == {"error_code": "100225", "error_desc": "The resource is not found"}
    # a known path with a method it does not serve: HTTP 405, still the platform's body
    r = api.delete(f"{OPERATIONS}/firmwareUpgrade")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert r.json()["error_code"] == "100225"
    # the admin API keeps its own shape
    r = httpx.get(f"{api.sim.base_url}/sim/nothing")
    assert r.status_code == 404 and "/sim/info" in r.json()["error"]
