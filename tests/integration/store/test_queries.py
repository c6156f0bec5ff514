"""The store's read queries for push events and reports, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.store import ChunkKind, ChunkRef, ChunkStatus, DeviceResult, DeviceRunStatus
from tests.integration.store.conftest import NOW
from tests.integration.store.test_api import _campaign, _ids, _intent

D = DeviceRunStatus
LATER = NOW + timedelta(hours=1)


def _submitted(engine: Engine, cid: int, ids: list[str], op: str, *, seq: int = 0, rnd: int = 0):  # type: ignore[no-untyped-def]
    with store.session_scope(engine) as s:
        chunk = _intent(s, cid, ids, seq=seq, rnd=rnd)
        store.record_operation_id(s, chunk_id=chunk.id, operation_id=op, now=NOW)
        return chunk.id


def test_chunk_refs_members_and_unfinished(engine: Engine) -> None:
    cid = _campaign(engine)
    ids = _ids("fw-1", 0, 1, 2)
    chunk_id = _submitted(engine, cid, ids, "op-1")
    with store.session_scope(engine) as s:
        ref = ChunkRef(chunk_id, cid, ChunkKind.UPGRADE, ChunkStatus.SUBMITTED, "firmware")
        assert store.chunk_refs_by_operation_id(s, operation_ids=["op-1", "op-x"]) == {"op-1": ref}
        assert store.chunk_refs_by_operation_id(s, operation_ids=[]) == {}
        by_device = store.active_chunk_refs_by_device(s, device_ids=[*ids, "fw-1-d009", "nope"])
        assert by_device == {i: [ref] for i in ids}
        assert store.chunk_members(s, chunk_ids={chunk_id}, device_ids=[ids[0], "fw-1-d009"]) == {
            (chunk_id, ids[0])
        }
        assert store.chunk_members(s, chunk_ids=set(), device_ids=ids) == set()
        assert store.count_unfinished_devices(s, chunk_id=chunk_id) == 3
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[DeviceResult(ids[0], D.SUCCEEDED), DeviceResult(ids[1], D.IN_PROGRESS)],
            now=NOW,
        )
        assert store.count_unfinished_devices(s, chunk_id=chunk_id) == 2
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[DeviceResult(ids[1], D.FAILED, "fail"), DeviceResult(ids[2], D.TIMED_OUT)],
            now=NOW,
        )
        assert store.count_unfinished_devices(s, chunk_id=chunk_id) == 0
        store.finish_chunk(s, chunk_id=chunk_id, now=NOW)
    with store.session_scope(engine) as s:
        # a finished chunk is no longer active, but its operationId still maps to it
        assert store.active_chunk_refs_by_device(s, device_ids=ids) == {}
        (got,) = store.chunk_refs_by_operation_id(s, operation_ids=["op-1"]).values()
        assert got.status is ChunkStatus.FINISHED


def test_lookups_split_long_id_lists(engine: Engine) -> None:
    # more ids than one IN (...) list holds: every batch is asked, nothing is lost
    n = 1201
    cid = _campaign(engine, n=n, waves=1)
    ids = [f"fw-1-d{i:03}" for i in range(3)]
    chunk_id = _submitted(engine, cid, ids, "op-1")
    everyone = [f"fw-1-d{i:03}" for i in range(n)]
    with store.session_scope(engine) as s:
        pairs = store.chunk_members(s, chunk_ids=[chunk_id], device_ids=reversed(everyone))
        assert pairs == {(chunk_id, i) for i in ids}
        assert sorted(store.active_chunk_refs_by_device(s, device_ids=everyone)) == ids
        ops = [f"op-{i}" for i in range(n)]
        assert list(store.chunk_refs_by_operation_id(s, operation_ids=ops)) == ["op-1"]


def test_report_counts_and_streams(engine: Engine) -> None:
    cid = _campaign(engine, n=10)
    wave0 = _ids("fw-1", 0, 1, 2)
    first = _submitted(engine, cid, wave0, "op-1")
    with store.session_scope(engine) as s:
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[
                DeviceResult(wave0[0], D.SUCCEEDED),
                DeviceResult(wave0[1], D.FAILED, "fail"),
                DeviceResult(wave0[2], D.FAILED, "offline"),
            ],
            now=NOW,
        )
        store.finish_chunk(s, chunk_id=first, now=NOW)
        # a halt cancels a retryable failure (it keeps its failure_kind) and the pending wave
        store.set_device_status(
            s, campaign_id=cid, status=D.CANCELLED, device_ids=[wave0[2]], now=LATER
        )
        store.set_device_status(s, campaign_id=cid, wave_index=1, status=D.CANCELLED, now=LATER)
        _intent(s, cid, [wave0[1]], rnd=1)  # an intent without operationId: not a task
    with store.session_scope(engine) as s:
        assert store.device_status_counts_by_wave(s, campaign_id=cid) == {
            0: {D.SUCCEEDED: 1, D.QUEUED: 1, D.CANCELLED: 1},
            1: {D.CANCELLED: 7},
        }
        assert store.chunk_counts_by_wave(s, campaign_id=cid) == {(0, ChunkKind.UPGRADE): 1}

        stream = store.iter_finished_devices(s, campaign_id=cid, yield_per=2)
        finished = sorted(stream, key=lambda f: f.finished_at)
        assert finished == [
            store.FinishedDevice(0, D.SUCCEEDED, NOW),
            store.FinishedDevice(0, D.CANCELLED, LATER),
        ]
        assert all(f.finished_at.tzinfo is not None for f in finished)

        (task,) = store.iter_task_devices(s, campaign_id=cid, kind=ChunkKind.UPGRADE)
        assert task == store.TaskDevices(0, wave0, NOW, NOW)
        assert list(store.iter_task_devices(s, campaign_id=cid, kind=ChunkKind.ROLLBACK)) == []


def test_task_devices_newest_first(engine: Engine) -> None:
    cid = _campaign(engine)
    a = _submitted(engine, cid, _ids("fw-1", 0), "op-a")
    _submitted(engine, cid, _ids("fw-1", 1), "op-b", seq=1)
    with store.session_scope(engine) as s:
        store.finish_chunk(s, chunk_id=a, now=LATER)
        tasks = list(store.iter_task_devices(s, campaign_id=cid, kind=ChunkKind.UPGRADE))
        assert [t.device_ids for t in tasks] == [_ids("fw-1", 1), _ids("fw-1", 0)]
        assert [t.finished_at for t in tasks] == [None, LATER]


def test_failure_kind_counts_leave_rollback_failures_out(engine: Engine) -> None:
    # a device whose rollback failed took the new version: its failure is not the upgrade's
    cid = _campaign(engine)
    ids = _ids("fw-1", 0, 1, 2)
    up = _submitted(engine, cid, ids, "op-up")
    with store.session_scope(engine) as s:
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[
                DeviceResult(ids[0], D.FAILED, "fail", "boom"),
                DeviceResult(ids[1], D.SUCCEEDED),
                DeviceResult(ids[2], D.TIMED_OUT, "timeout", "late"),
            ],
            now=NOW,
        )
        store.finish_chunk(s, chunk_id=up, now=NOW)
        rb = _intent(s, cid, [ids[1]], seq=1, kind=ChunkKind.ROLLBACK)
        store.record_operation_id(s, chunk_id=rb.id, operation_id="op-rb", now=NOW)
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[DeviceResult(ids[1], D.ROLLBACK_FAILED, "fail", "rollback refused")],
            now=LATER,
        )
    with store.session_scope(engine) as s:
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0)[D.ROLLBACK_FAILED] == 1
        assert store.failure_kind_counts(s, campaign_id=cid) == {"fail": 1, "timeout": 1}
        assert store.failure_kind_counts(s, campaign_id=cid, wave_index=1) == {}
