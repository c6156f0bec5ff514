"""The receiver over real HTTP: auth, malformed bodies, idempotent monotonic updates, batching."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.notify import PushHealth
from fleetwave.store import DeviceRunStatus
from tests.integration.notify.conftest import NOW, Receiver, seed_campaign, statuses

DEVS = ["dev-a", "dev-b", "dev-c"]


def fw_state(dev: str, op: str | None, step: str = "1") -> dict[str, Any]:
    body = {
        "notifyType": "fwUpgradeStateChangeNotify",
        "deviceId": dev,
        "appId": "app",
        "subOperationId": f"sub-{dev}",
        "step": step,
        "stepDesc": {"0": "idle", "1": "downloading", "2": "downloaded", "3": "updating"}[step],
    }
    if op is not None:
        body["operationId"] = op
    return body


def fw_result(dev: str, op: str, ok: bool = True) -> dict[str, Any]:
    return {
        "notifyType": "fwUpgradeResultNotify",
        "deviceId": dev,
        "appId": "app",
        "operationId": op,
        "subOperationId": f"sub-{dev}",
        "curVersion": "1.5" if ok else "1.0",
        "targetVersion": "1.5",
        "sourceVersion": "1.0",
        "status": "SUCCESS" if ok else "FAIL",
        "statusDesc": "SUCCESS" if ok else "FAIL: flash error",
        "upgradeTime": "42",
    }


def test_token_is_required(receiver: Receiver) -> None:
    base = receiver.channel.local_url
    body = fw_state("dev-a", "op-1")
    assert receiver.http.post(f"{base}/notify/", json=body).status_code == 401
    assert receiver.http.post(f"{base}/notify/wrong-token-123", json=body).status_code == 401
    assert receiver.http.post(f"{base}/", json=body).status_code == 401
    assert receiver.http.get(receiver.url).status_code == 401
    assert receiver.http.post(receiver.url + "x", json=body).status_code == 401
    assert receiver.http.post(f"{receiver.url}/extra", json=body).status_code == 401
    assert receiver.channel.stats().unauthorized == 6
    assert receiver.channel.stats().accepted == 0


def test_callback_url_is_secret_and_unguessable(receiver: Receiver, engine: Engine) -> None:
    token = receiver.url.rsplit("/", 1)[1]
    assert len(token) >= 40  # token_urlsafe(32)
    assert token not in repr(receiver.channel)
    from fleetwave.notify import PushChannel

    with PushChannel(engine) as other:
        assert other.callback_url.rsplit("/", 1)[1] != token


def test_malformed_bodies_get_400(receiver: Receiver) -> None:
    cases: list[Any] = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"notifyType": "fwUpgradeResultNotify"}',
        b'{"notifyType": "fwUpgradeResultNotify", "deviceId": "d", "status": "MAYBE"}',
        b"",
        b"[" * 100_000,  # too deep for json: must not crash
    ]
    for raw in cases:
        r = receiver.http.post(receiver.url, content=raw)
        assert r.status_code in (400, 413), (raw[:40], r.status_code)
        assert r.json()["error"]
    big = b'{"x": "' + b"a" * 70_000 + b'"}'
    assert receiver.http.post(receiver.url, content=big).status_code == 413
    r = receiver.post({**fw_state("d", "op"), "step": "9", "stepDesc": "?"})
    assert r.status_code == 400 and "step must be 0, 1, 2 or 3" in r.json()["error"]
    assert receiver.channel.stats().malformed == len(cases) + 2


def test_events_update_device_runs_monotonically(receiver: Receiver, engine: Engine) -> None:
    camp, chunk_id = seed_campaign(engine, name="c1", devices=DEVS, operation_id="op-1")
    assert set(statuses(engine, camp).values()) == {DeviceRunStatus.SUBMITTED}
    for body in (
        fw_state("dev-a", "op-1", "1"),
        fw_state("dev-b", "op-1", "1"),
        fw_result("dev-a", "op-1", ok=True),
        fw_result("dev-b", "op-1", ok=False),
    ):
        assert receiver.post(body).status_code == 200
    assert receiver.channel.drain()
    got = statuses(engine, camp)
    assert got == {
        "dev-a": DeviceRunStatus.SUCCEEDED,
        "dev-b": DeviceRunStatus.FAILED,
        "dev-c": DeviceRunStatus.SUBMITTED,
    }
    # duplicates and late state changes (one batch each, and one by one) change nothing
    late = [
        fw_state("dev-a", "op-1", "3"),
        fw_state("dev-b", "op-1", "2"),
        fw_result("dev-a", "op-1", ok=False),  # a contradicting late result
        fw_result("dev-b", "op-1", ok=True),
        fw_result("dev-a", "op-1", ok=True),
    ]
    for body in late:
        assert receiver.post(body).status_code == 200
        assert receiver.channel.drain()
    assert statuses(engine, camp) == got
    with store.session_scope(engine, read_only=True) as s:
        a = store.get_device_run(s, campaign_id=camp, device_id="dev-a")
        b = store.get_device_run(s, campaign_id=camp, device_id="dev-b")
        assert a is not None and a.current_version == "1.5" and a.failure_kind is None
        assert b is not None and b.failure_kind == "fail"
        assert b.failure_detail == "FAIL: flash error"
    # the state change for dev-c moves it forward; its 'idle' does not
    receiver.post(fw_state("dev-c", "op-1", "2"))
    receiver.post(fw_state("dev-c", "op-1", "0"))
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-c"] is DeviceRunStatus.IN_PROGRESS
    assert receiver.channel.last_seen(camp) is not None
    with store.session_scope(engine, read_only=True) as s:
        assert store.count_unfinished_devices(s, chunk_id=chunk_id) == 1
    receiver.post(fw_result("dev-c", "op-1"))
    assert receiver.channel.drain()
    with store.session_scope(engine, read_only=True) as s:
        assert store.count_unfinished_devices(s, chunk_id=chunk_id) == 0


def test_result_then_state_in_one_batch_keeps_the_result(
    receiver: Receiver, engine: Engine
) -> None:
    camp, _ = seed_campaign(engine, name="c2", devices=DEVS, operation_id="op-2")
    bodies = [fw_result("dev-a", "op-2"), fw_state("dev-a", "op-2", "3")] * 3
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda b: httpx.post(receiver.url, json=b).status_code, bodies))
    assert codes == [200] * 6
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-a"] is DeviceRunStatus.SUCCEEDED


def test_unknown_and_foreign_events_are_ignored(receiver: Receiver, engine: Engine) -> None:
    camp, _ = seed_campaign(engine, name="c3", devices=DEVS, operation_id="op-3")
    intent_camp, _ = seed_campaign(engine, name="c4", devices=["dev-x"], operation_id=None)
    before = statuses(engine, camp)
    for body in (
        fw_result("dev-a", "op-unknown"),  # no chunk has this operationId
        fw_result("dev-zzz", "op-3"),  # not a device of the task
        {
            **fw_result("dev-a", "op-3"),
            "notifyType": "swUpgradeResultNotify",
            "swUpgradeResult": "SUCCESS",
        },  # software result for a firmware task
    ):
        assert receiver.post(body).status_code == 200
    assert receiver.channel.drain()
    assert statuses(engine, camp) == before
    # unknown operations are retried for park_seconds, then counted as ignored
    deadline = time.monotonic() + 5
    while receiver.channel.stats().unknown_operation < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    st = receiver.channel.stats()
    assert st.unknown_operation == 1 and st.ignored == 3 and st.changed == 0
    assert statuses(engine, intent_camp) == {"dev-x": DeviceRunStatus.QUEUED}


# parked long enough that a loaded machine still records the operationId in time
@pytest.mark.park_seconds(60)
def test_push_before_the_operation_id_is_recorded_is_applied(
    receiver: Receiver, engine: Engine
) -> None:
    camp, chunk_id = seed_campaign(engine, name="c5", devices=DEVS, operation_id=None)
    assert receiver.post(fw_result("dev-a", "op-5")).status_code == 200
    assert receiver.channel.drain()
    assert receiver.channel.stats().parked == 1
    with store.session_scope(engine) as s:  # the engine commits the operationId a moment later
        store.record_operation_id(s, chunk_id=chunk_id, operation_id="op-5", now=NOW)
    deadline = time.monotonic() + 60
    while statuses(engine, camp)["dev-a"] is not DeviceRunStatus.SUCCEEDED:
        assert time.monotonic() < deadline, receiver.channel.stats()
        time.sleep(0.05)


def test_finished_chunks_and_retried_devices_ignore_stale_events(
    receiver: Receiver, engine: Engine
) -> None:
    camp, chunk_id = seed_campaign(engine, name="c6", devices=DEVS, operation_id="op-6a")
    receiver.post(fw_result("dev-a", "op-6a", ok=False))
    assert receiver.channel.drain()
    with store.session_scope(engine) as s:
        store.finish_chunk(s, chunk_id=chunk_id, now=NOW)
    # dev-a is retried in a new task; the old task's events must not touch it
    seed_campaign(
        engine, name="c6", devices=["dev-a"], operation_id="op-6b", seq=1, add_devices=False
    )
    assert statuses(engine, camp)["dev-a"] is DeviceRunStatus.SUBMITTED
    receiver.post(fw_result("dev-a", "op-6a", ok=False))
    receiver.post(fw_state("dev-b", "op-6a", "1"))
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-a"] is DeviceRunStatus.SUBMITTED
    assert statuses(engine, camp)["dev-b"] is DeviceRunStatus.SUBMITTED
    receiver.post(fw_result("dev-a", "op-6b", ok=True))
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-a"] is DeviceRunStatus.SUCCEEDED


def test_events_without_operation_id_find_the_active_task(
    receiver: Receiver, engine: Engine
) -> None:
    camp, _ = seed_campaign(engine, name="c7", devices=DEVS, operation_id="op-7")
    assert receiver.post(fw_state("dev-b", None, "1")).status_code == 200
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-b"] is DeviceRunStatus.IN_PROGRESS


def test_a_burst_is_written_in_few_transactions(receiver: Receiver, engine: Engine) -> None:
    devices = [f"dev-{i:04d}" for i in range(400)]
    camp, _ = seed_campaign(engine, name="burst", devices=devices, operation_id="op-b")
    flushes_before = receiver.channel.stats().flushes
    with concurrent.futures.ThreadPoolExecutor(8) as pool, httpx.Client() as http:
        codes = list(
            pool.map(
                lambda d: http.post(receiver.url, json=fw_result(d, "op-b")).status_code, devices
            )
        )
    assert codes == [200] * 400
    assert receiver.channel.drain()
    assert set(statuses(engine, camp).values()) == {DeviceRunStatus.SUCCEEDED}
    flushes = receiver.channel.stats().flushes - flushes_before
    assert 1 <= flushes < 100  # batched, never one transaction per request


def test_liveness_follows_the_channel_clock(receiver: Receiver, engine: Engine) -> None:
    channel, clock = receiver.channel, receiver.clock
    assert isinstance(channel, PushHealth)  # the slice of it the monitor depends on
    camp, _ = seed_campaign(engine, name="live", devices=DEVS, operation_id="op-l")
    assert not channel.healthy(clock.now())  # never subscribed
    channel.liveness.mark_subscribed(clock.now())
    assert channel.healthy(clock.now(), camp)
    clock.advance(61)
    assert not channel.healthy(clock.now(), camp)  # quiet for longer than quiet_after
    receiver.post(fw_state("dev-a", "op-l"))
    assert channel.drain()
    assert channel.last_seen(camp) == clock.now()
    assert channel.healthy(clock.now(), camp)
    channel.stop()
    assert not channel.healthy(clock.now(), camp)  # receiver down: polling takes over
