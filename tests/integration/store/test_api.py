"""The store's data functions against a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.store import (
    CampaignStatus,
    ChunkKind,
    ChunkStatus,
    DeviceResult,
    DeviceRunStatus,
    WavePlan,
    WaveStatus,
)
from tests.integration.store.conftest import NOW

D = DeviceRunStatus


def _campaign(engine: Engine, name: str = "fw-1", n: int = 10, waves: int = 2) -> int:
    """A campaign with ``n`` devices d000.. split over ``waves`` waves (first wave = 3)."""
    with store.session_scope(engine) as s:
        c = store.create_or_get_campaign(s, name=name, spec={"name": name, "v": 1}, now=NOW)
        assert c.id is not None
        plans = [WavePlan(0, "canary", min(3, n))]
        if waves > 1:
            plans.append(WavePlan(1, "rest", max(n - 3, 0)))
        store.create_waves(s, campaign_id=c.id, waves=plans, now=NOW)
        rows = [(f"{name}-d{i:03}", 0 if i < 3 else 1, "1.0", "2.0") for i in range(n)]
        assert store.add_device_runs(s, campaign_id=c.id, devices=rows, now=NOW, batch_size=4) == n
        return c.id


def _ids(name: str, *idx: int) -> list[str]:
    return [f"{name}-d{i:03}" for i in idx]


def test_campaign_create_get_and_spec_hash(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        a = store.create_or_get_campaign(s, name="c", spec={"b": 1, "a": [1, 2]}, now=NOW)
        b = store.create_or_get_campaign(s, name="c", spec={"a": [1, 2], "b": 1}, now=NOW)
        assert a.id == b.id and a.spec_hash == b.spec_hash
        assert a.status is CampaignStatus.PENDING
        # a PENDING campaign takes the new spec
        c = store.create_or_get_campaign(s, name="c", spec={"b": 2}, now=NOW)
        assert c.id == a.id and c.spec == {"b": 2}
        store.set_campaign_status(s, campaign_id=a.id, status=CampaignStatus.RUNNING, now=NOW)
    with store.session_scope(engine) as s:
        with pytest.raises(store.SpecChangedError) as err:
            store.create_or_get_campaign(s, name="c", spec={"b": 3}, now=NOW)
        assert err.value.code == "spec_changed"
        assert err.value.stored_hash == store.campaign_spec_hash({"b": 2})
        assert err.value.new_hash == store.campaign_spec_hash({"b": 3})
        assert err.value.stored_hash[:12] in str(err.value)
        assert err.value.new_hash[:12] in str(err.value)
    with store.session_scope(engine) as s:
        d = store.create_or_get_campaign(
            s, name="c", spec={"b": 3}, now=NOW, allow_spec_change=True
        )
        assert d.spec == {"b": 3}
        kinds = [e.kind for e in store.recent_events(s, campaign_id=d.id)]
        assert kinds[0] == "spec_change_accepted"
        with pytest.raises(store.NotFoundError):
            store.get_campaign(s, name="nope")
        assert [x.name for x in store.list_campaigns(s)] == ["c"]
        assert store.list_campaigns(s, statuses=[CampaignStatus.HALTED]) == []


def test_campaign_transitions_checked_and_logged(engine: Engine) -> None:
    cid = _campaign(engine)
    later = NOW + timedelta(hours=1)
    with store.session_scope(engine) as s:
        c = store.set_campaign_status(
            s, campaign_id=cid, status=CampaignStatus.RUNNING, now=NOW, flow_run_id="fr-1"
        )
        assert c.started_at == NOW
        store.set_campaign_status(
            s, campaign_id=cid, status=CampaignStatus.COMPLETED, now=later, reason="all waves"
        )
    with store.session_scope(engine) as s:
        with pytest.raises(store.IllegalTransitionError) as err:
            store.set_campaign_status(s, campaign_id=cid, status=CampaignStatus.RUNNING, now=later)
        assert err.value.code == "illegal_transition"
        assert "'completed' to 'running'" in str(err.value) and "fw-1" in str(err.value)
    with store.session_scope(engine, read_only=True) as s:
        c = store.get_campaign_by_id(s, campaign_id=cid)
        assert c.status is CampaignStatus.COMPLETED and c.finished_at == later
        ev = store.recent_events(s, campaign_id=cid, kinds=["campaign_status"])
        assert [e.data["to"] for e in ev] == ["completed", "running"]
        assert ev[1].flow_run_id == "fr-1" and ev[0].data["reason"] == "all waves"


def test_rows_from_a_read_only_scope_stay_readable_after_it(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        cid = store.create_or_get_campaign(s, name="ro", spec={"k": 1}, now=NOW).id
        assert cid is not None
        store.append_event(s, campaign_id=cid, kind="note", now=NOW, data={"n": 1})
    with store.session_scope(engine, read_only=True) as s:
        c = store.get_campaign_by_id(s, campaign_id=cid)
        events = store.recent_events(s, campaign_id=cid, kinds=["note"])
    # no lazy reload needed: the scope ended without expiring what it returned
    assert (c.name, c.status, c.created_at) == ("ro", CampaignStatus.PENDING, NOW)
    assert [e.data for e in events] == [{"n": 1}]


def test_timestamps_are_aware_utc_from_pendulum(engine: Engine) -> None:
    berlin = pendulum.datetime(2026, 3, 29, 3, 30, tz="Europe/Berlin")  # just after DST starts
    with store.session_scope(engine) as s:
        c = store.create_or_get_campaign(s, name="tz", spec={}, now=berlin)
    with store.session_scope(engine, read_only=True) as s:
        got = store.get_campaign(s, name="tz").created_at
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert got == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert c.id is not None
    with pytest.raises(Exception, match="naive"), store.session_scope(engine) as s:
        store.append_event(s, campaign_id=c.id, kind="x", now=datetime(2026, 1, 1))


def test_waves_idempotent_status_and_approval(engine: Engine) -> None:
    cid = _campaign(engine)
    with store.session_scope(engine) as s:
        again = store.create_waves(
            s, campaign_id=cid, waves=[WavePlan(0, "canary", 3), WavePlan(1, "rest", 7)], now=NOW
        )
        assert [w.name for w in again] == ["canary", "rest"]
        with pytest.raises(store.ConflictError):
            store.create_waves(s, campaign_id=cid, waves=[WavePlan(0, "other", 10)], now=NOW)
    soak = NOW + timedelta(hours=2)
    with store.session_scope(engine) as s:
        store.set_wave_status(s, campaign_id=cid, index=0, status=WaveStatus.RUNNING, now=NOW)
        w = store.set_wave_status(
            s,
            campaign_id=cid,
            index=0,
            status=WaveStatus.SOAKING,
            now=NOW,
            soak_until=soak,
            data={"succeeded": 3, "threshold": 0.95},
        )
        assert w.soak_until == soak
        store.set_wave_status(
            s, campaign_id=cid, index=1, status=WaveStatus.WAITING_APPROVAL, now=NOW
        )
        store.record_approval(
            s,
            campaign_id=cid,
            index=1,
            decision=store.ApprovalDecision.APPROVED,
            by="alice",
            comment="go",
            appointment_at=soak,
            now=NOW,
        )
        with pytest.raises(store.IllegalTransitionError):
            store.set_wave_status(s, campaign_id=cid, index=1, status=WaveStatus.SOAKING, now=NOW)
    with store.session_scope(engine, read_only=True) as s:
        w1 = store.get_wave(s, campaign_id=cid, index=1)
        assert w1.approval_decision is store.ApprovalDecision.APPROVED
        assert (w1.approval_by, w1.approval_comment, w1.appointment_at) == ("alice", "go", soak)
        ev = store.recent_events(s, campaign_id=cid, kinds=["wave_status"], limit=10)
        assert any(e.data.get("threshold") == 0.95 for e in ev)
        with pytest.raises(store.NotFoundError):
            store.get_wave(s, campaign_id=cid, index=7)


def test_device_rows_counts_and_streaming(engine: Engine) -> None:
    cid = _campaign(engine, n=25)
    with store.session_scope(engine) as s:
        # re-adding is harmless: nothing new is inserted
        rows = [(f"fw-1-d{i:03}", 0) for i in range(25)]
        assert store.add_device_runs(s, campaign_id=cid, devices=rows, now=NOW) == 0
        assert store.device_status_counts(s, campaign_id=cid) == {D.PENDING: 25}
        # the bulk (driver-level) path stores timestamps exactly as the ORM does
        same_stamp = s.execute(
            sa.text(
                "SELECT count(*) FROM device_run WHERE campaign_id = :c AND created_at ="
                " (SELECT created_at FROM campaign WHERE id = :c)"
            ),
            {"c": cid},
        ).scalar_one()
        assert same_stamp == 25
        assert store.device_status_counts_by_wave(s, campaign_id=cid) == {
            0: {D.PENDING: 3},
            1: {D.PENDING: 22},
        }
        ids = list(store.iter_device_ids(s, campaign_id=cid, batch_size=7))
        assert ids == sorted(ids) and len(ids) == 25 == len(set(ids))
        assert list(store.iter_device_ids(s, campaign_id=cid, wave_index=0, batch_size=2)) == (
            _ids("fw-1", 0, 1, 2)
        )
        runs = list(store.iter_device_runs(s, campaign_id=cid, wave_index=0, batch_size=2))
        assert [(r.device_id, r.source_version, r.target_version) for r in runs] == [
            (i, "1.0", "2.0") for i in _ids("fw-1", 0, 1, 2)
        ]
        n = store.set_device_status(
            s,
            campaign_id=cid,
            status=D.SKIPPED,
            device_ids=_ids("fw-1", 3, 4),
            failure_kind="already_on_target",
            now=NOW,
        )
        assert n == 2
        # cancelling the campaign's wave 1 touches only devices that may be cancelled
        assert (
            store.set_device_status(s, campaign_id=cid, status=D.CANCELLED, wave_index=1, now=NOW)
            == 20
        )
        counts = store.device_status_counts(s, campaign_id=cid)
        assert counts == {D.PENDING: 3, D.SKIPPED: 2, D.CANCELLED: 20}
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {D.PENDING: 3}
        skipped = list(store.iter_device_ids(s, campaign_id=cid, statuses=[D.SKIPPED]))
        assert skipped == _ids("fw-1", 3, 4)
        dr = store.get_device_run(s, campaign_id=cid, device_id="fw-1-d003")
        assert dr is not None and dr.failure_kind == "already_on_target" and dr.finished_at == NOW


def _intent(s, cid: int, ids: list[str], *, seq: int = 0, rnd: int = 0, kind=ChunkKind.UPGRADE):  # type: ignore[no-untyped-def]
    return store.create_chunk_intent(
        s,
        campaign_id=cid,
        wave_index=0,
        round=rnd,
        seq=seq,
        kind=kind,
        package_kind="firmware",
        file_id="file-2.0",
        policy={"execute_type": "now", "retry_times": 3},
        device_ids=ids,
        now=NOW,
    )


def test_chunk_intent_submit_results_finish(engine: Engine) -> None:
    cid = _campaign(engine)
    wave0 = _ids("fw-1", 0, 1, 2)
    with store.session_scope(engine) as s:
        chunk = _intent(s, cid, wave0)
        assert chunk.status is ChunkStatus.INTENT and chunk.operation_id is None
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {D.QUEUED: 3}
        # the same intent again: the stored chunk, devices untouched
        assert _intent(s, cid, list(reversed(wave0))).id == chunk.id
        with pytest.raises(store.ConflictError):
            _intent(s, cid, wave0[:2])
    with store.session_scope(engine) as s:
        # a device already queued on a task can never join a second one
        with pytest.raises(store.IllegalTransitionError) as err:
            _intent(s, cid, wave0[:1], seq=1)
        assert err.value.count == 1
    with store.session_scope(engine) as s:
        assert [c.id for c in store.list_intents(s, campaign_id=cid)] == [chunk.id]
        store.record_operation_id(s, chunk_id=chunk.id, operation_id="op-1", now=NOW)
        store.record_operation_id(s, chunk_id=chunk.id, operation_id="op-1", now=NOW)
        with pytest.raises(store.ConflictError):
            store.record_operation_id(s, chunk_id=chunk.id, operation_id="op-2", now=NOW)
    with store.session_scope(engine) as s:
        assert store.list_intents(s, campaign_id=cid) == []
        assert [c.operation_id for c in store.list_active_chunks(s)] == ["op-1"]
        assert store.get_chunk_by_operation_id(s, operation_id="op-1").id == chunk.id  # type: ignore[union-attr]
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {D.SUBMITTED: 3}
        store.record_chunk_poll(
            s,
            chunk_id=chunk.id,
            platform_status="processing",
            stats={"total": 3, "success": 1},
            now=NOW,
        )
        results = [
            DeviceResult(wave0[0], D.SUCCEEDED, current_version="2.0"),
            DeviceResult(wave0[1], D.FAILED, "device_offline", "code 120036"),
            DeviceResult(wave0[2], D.IN_PROGRESS),
            DeviceResult("fw-1-d009", D.SUCCEEDED),  # not in this chunk: still PENDING, skipped
        ]
        assert store.record_device_results(s, campaign_id=cid, results=results, now=NOW) == 3
        with pytest.raises(store.IllegalTransitionError) as err:
            store.record_device_results(
                s,
                campaign_id=cid,
                results=[DeviceResult("fw-1-d009", D.FAILED)],
                now=NOW,
                strict=True,
            )
        assert err.value.count == 1
    with store.session_scope(engine) as s:
        # results re-read after a restart: the same final statuses again are no-ops
        again = [
            DeviceResult(wave0[0], D.SUCCEEDED),
            DeviceResult(wave0[2], D.TIMED_OUT, "timeout"),
        ]
        assert store.record_device_results(s, campaign_id=cid, results=again, now=NOW) == 2
        store.finish_chunk(s, chunk_id=chunk.id, platform_status="success", now=NOW)
        assert store.list_active_chunks(s, campaign_id=cid) == []
        got = store.get_chunk(s, chunk_id=chunk.id)
        assert got.stats == {"total": 3, "success": 1} and got.last_polled_at == NOW
        ok = store.get_device_run(s, campaign_id=cid, device_id=wave0[0])
        assert ok is not None and ok.current_version == "2.0" and ok.attempt == 1
        assert ok.finished_at == NOW and ok.created_at == NOW and ok.status is D.SUCCEEDED
        bad = store.get_device_run(s, campaign_id=cid, device_id=wave0[1])
        assert bad is not None and (bad.failure_kind, bad.failure_detail) == (
            "device_offline",
            "code 120036",
        )
        assert store.failure_kind_counts(s, campaign_id=cid) == {"device_offline": 1, "timeout": 1}
        # retry round: the failed and timed-out devices go on a new chunk, attempt 2
        retry = _intent(s, cid, [wave0[1], wave0[2]], rnd=1)
        assert list(store.get_chunk(s, chunk_id=retry.id).device_ids) == [wave0[1], wave0[2]]
        r = store.get_device_run(s, campaign_id=cid, device_id=wave0[1])
        assert r is not None and r.attempt == 2 and r.chunk_id == retry.id
        assert r.status is D.QUEUED


def test_abandon_intent_returns_devices(engine: Engine) -> None:
    cid = _campaign(engine)
    with store.session_scope(engine) as s:
        chunk = _intent(s, cid, _ids("fw-1", 0, 1))
    with store.session_scope(engine) as s:
        store.abandon_chunk(s, chunk_id=chunk.id, reason="not on platform", now=NOW)
        with pytest.raises(store.IllegalTransitionError):
            store.record_operation_id(s, chunk_id=chunk.id, operation_id="late", now=NOW)
    with store.session_scope(engine) as s:
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {D.PENDING: 3}
        r = store.get_device_run(s, campaign_id=cid, device_id="fw-1-d000")
        assert r is not None and r.attempt == 0 and r.chunk_id is None
        assert _intent(s, cid, _ids("fw-1", 0, 1), seq=1).status is ChunkStatus.INTENT


def test_rollback_chunk(engine: Engine) -> None:
    cid = _campaign(engine)
    ids = _ids("fw-1", 0, 1)
    with store.session_scope(engine) as s:
        c = _intent(s, cid, ids)
        store.record_operation_id(s, chunk_id=c.id, operation_id="op-up", now=NOW)
        store.record_device_results(
            s, campaign_id=cid, results=[DeviceResult(i, D.SUCCEEDED) for i in ids], now=NOW
        )
        with pytest.raises(store.IllegalTransitionError):  # d002 never took the new version
            _intent(s, cid, [*ids, "fw-1-d002"], kind=ChunkKind.ROLLBACK)
    with store.session_scope(engine) as s:
        rb = _intent(s, cid, ids, kind=ChunkKind.ROLLBACK)
        store.record_operation_id(s, chunk_id=rb.id, operation_id="op-rb", now=NOW)
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {
            D.ROLLING_BACK: 2,
            D.PENDING: 1,
        }
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[DeviceResult(ids[0], D.ROLLED_BACK), DeviceResult(ids[1], D.ROLLBACK_FAILED)],
            now=NOW,
        )
        assert store.device_status_counts(s, campaign_id=cid, wave_index=0) == {
            D.ROLLED_BACK: 1,
            D.ROLLBACK_FAILED: 1,
            D.PENDING: 1,
        }


def test_late_results_of_an_old_task_do_not_touch_devices_that_moved_on(engine: Engine) -> None:
    cid = _campaign(engine)
    ids = _ids("fw-1", 0, 1)
    with store.session_scope(engine) as s:
        up = _intent(s, cid, ids)
        store.record_operation_id(s, chunk_id=up.id, operation_id="op-up", now=NOW)
        ok = [DeviceResult(i, D.SUCCEEDED) for i in ids]
        assert (
            store.record_device_results(s, campaign_id=cid, results=ok, now=NOW, chunk_id=up.id)
            == 2
        )
        rb = _intent(s, cid, ids, kind=ChunkKind.ROLLBACK)
        store.record_operation_id(s, chunk_id=rb.id, operation_id="op-rb", now=NOW)
    with store.session_scope(engine) as s:
        # the upgrade task read again while its devices roll back: nothing moves back
        late = store.record_device_results(s, campaign_id=cid, results=ok, now=NOW, chunk_id=up.id)
        assert late == 0
        counts = store.device_status_counts(s, campaign_id=cid, wave_index=0)
        assert counts == {D.ROLLING_BACK: 2, D.PENDING: 1}
        done = [DeviceResult(i, D.ROLLED_BACK) for i in ids]
        assert (
            store.record_device_results(s, campaign_id=cid, results=done, now=NOW, chunk_id=rb.id)
            == 2
        )


def test_a_reported_failure_never_fails_a_device_that_was_never_sent(engine: Engine) -> None:
    """PENDING -> FAILED is in the table (the engine fails an unanswered consent device), but
    a reported result (a late push, a stray poll) from PENDING changes nothing, on both the
    executemany path and PostgreSQL's COPY path; the engine's own move does change it."""
    cid = _campaign(engine)
    pending, sent = _ids("fw-1", 0, 1), _ids("fw-1", 2)
    assert D.PENDING in store.allowed_sources(D.FAILED)
    assert D.PENDING not in store.result_sources(D.FAILED)
    with store.session_scope(engine) as s:
        up = _intent(s, cid, sent)
        store.record_operation_id(s, chunk_id=up.id, operation_id="op-1", now=NOW)
        late = [DeviceResult(d, D.FAILED, failure_kind="fail") for d in pending + sent]
        assert store.record_device_results(s, campaign_id=cid, results=late, now=NOW) == 1
        counts = store.device_status_counts(s, campaign_id=cid, wave_index=0)
        assert counts == {D.PENDING: 2, D.FAILED: 1}
        # the engine's decision: only the unsent rows move, the failed one is not re-judged
        moved = store.set_device_status(
            s,
            campaign_id=cid,
            status=D.FAILED,
            device_ids=pending + sent,
            failure_kind="consent_expired",
            failure_detail="no answer from the owner before the timeout",
            only_from=store.UNSENT,
            now=NOW,
        )
        assert moved == 2
        rows = {r.device_id: r for r in store.iter_device_runs(s, campaign_id=cid, wave_index=0)}
    assert {d: (rows[d].status, rows[d].failure_kind) for d in pending + sent} == {
        **{d: (D.FAILED, "consent_expired") for d in pending},
        sent[0]: (D.FAILED, "fail"),
    }
    assert all(rows[d].finished_at is not None and rows[d].chunk_id is None for d in pending)


def test_device_claims_between_campaigns(engine: Engine) -> None:
    a = _campaign(engine, "a", n=5)
    with store.session_scope(engine) as s:
        b = store.create_or_get_campaign(s, name="b", spec={}, now=NOW).id
    assert b is not None
    with pytest.raises(store.DeviceClaimedError) as err, store.session_scope(engine) as s:
        store.add_device_runs(s, campaign_id=b, devices=[("a-d001", 0), ("x-1", 0)], now=NOW)
    assert err.value.code == "device_claimed"
    assert err.value.conflicts == {"a": ["a-d001"]} and err.value.total == 1
    assert "'a'" in str(err.value) and "a-d001" in str(err.value)
    # a caller that catches the error and commits keeps none of the refused call's rows
    with store.session_scope(engine) as s:
        with pytest.raises(store.DeviceClaimedError):
            store.add_device_runs(s, campaign_id=b, devices=[("a-d002", 0), ("x-2", 0)], now=NOW)
        with pytest.raises(store.IllegalTransitionError):
            _intent(s, a, ["a-d000", "not-in-campaign"])
    with store.session_scope(engine, read_only=True) as s:
        assert store.device_status_counts(s, campaign_id=b) == {}
        assert store.list_chunks(s, campaign_id=a) == []
        assert store.device_status_counts(s, campaign_id=a) == {D.PENDING: 5}
    # halting campaign a releases its devices; b may take them
    with store.session_scope(engine) as s:
        store.set_campaign_status(s, campaign_id=a, status=CampaignStatus.RUNNING, now=NOW)
        store.set_campaign_status(s, campaign_id=a, status=CampaignStatus.HALTED, now=NOW)
    with store.session_scope(engine) as s:
        store.add_device_runs(s, campaign_id=b, devices=[("a-d001", 0), ("x-1", 0)], now=NOW)
    # resuming a now fails: b holds one of its devices, and the resume rolls back
    with pytest.raises(store.DeviceClaimedError) as err, store.session_scope(engine) as s:
        store.set_campaign_status(s, campaign_id=a, status=CampaignStatus.RUNNING, now=NOW)
    assert err.value.conflicts == {"b": ["a-d001"]}
    with store.session_scope(engine) as s:
        assert store.get_campaign_by_id(s, campaign_id=a).status is CampaignStatus.HALTED
        store.set_campaign_status(s, campaign_id=b, status=CampaignStatus.CANCELLED, now=NOW)
    with store.session_scope(engine) as s:
        store.set_campaign_status(s, campaign_id=a, status=CampaignStatus.RUNNING, now=NOW)


def test_lease_acquire_expire_renew_release(engine: Engine) -> None:
    cid = _campaign(engine)
    ttl = timedelta(seconds=60)
    with store.session_scope(engine) as s:
        assert store.acquire_lease(s, campaign_id=cid, holder="run-a", ttl=ttl, now=NOW)
    with store.session_scope(engine) as s:
        assert not store.acquire_lease(s, campaign_id=cid, holder="run-b", ttl=ttl, now=NOW)
        assert store.acquire_lease(s, campaign_id=cid, holder="run-a", ttl=ttl, now=NOW)
        store.renew_lease(s, campaign_id=cid, holder="run-a", ttl=ttl, now=NOW + ttl / 2)
        # valid until NOW + 90s now
        assert not store.acquire_lease(
            s, campaign_id=cid, holder="run-b", ttl=ttl, now=NOW + timedelta(seconds=89)
        )
    later = NOW + timedelta(seconds=91)
    with store.session_scope(engine) as s:
        assert store.acquire_lease(s, campaign_id=cid, holder="run-b", ttl=ttl, now=later)
        with pytest.raises(store.LeaseLostError, match="run-b"):
            store.renew_lease(s, campaign_id=cid, holder="run-a", ttl=ttl, now=later)
        assert not store.release_lease(s, campaign_id=cid, holder="run-a")
        assert store.release_lease(s, campaign_id=cid, holder="run-b")
        assert store.acquire_lease(s, campaign_id=cid, holder="run-c", ttl=ttl, now=later)
        c = store.get_campaign_by_id(s, campaign_id=cid)
        assert (c.lease_holder, c.lease_expires_at) == ("run-c", later + ttl)


def test_events_append_only_newest_first(engine: Engine) -> None:
    cid = _campaign(engine)
    with store.session_scope(engine) as s:
        for i in range(5):
            store.append_event(
                s,
                campaign_id=cid,
                kind="decision",
                subject=f"wave {i}",
                data={"failure_rate": 0.1 * i, "limit": 0.2, "at": NOW},
                actor="engine",
                flow_run_id="fr",
                now=NOW + timedelta(minutes=i),
            )
    with store.session_scope(engine, read_only=True) as s:
        ev = store.recent_events(s, campaign_id=cid, kinds=["decision"], limit=3)
        assert [e.subject for e in ev] == ["wave 4", "wave 3", "wave 2"]
        assert ev[0].data["limit"] == 0.2 and ev[0].data["at"] == str(NOW)
        assert ev[0].at == NOW + timedelta(minutes=4)
        assert len(store.recent_events(s, limit=100)) == 6  # + campaign_created


def _snap(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "sc",
        "description": "one",
        "package": {"file_id": "fw-1"},
        "policy": {"poll_interval": "PT5M", "max_devices_per_task": 40},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            base[section] = {**base[section], field: value}  # type: ignore[dict-item]
        else:
            base[section] = value
    return base


def test_spec_changes_split_into_mutable_and_immutable(engine: Engine) -> None:
    from fleetwave.spec import spec_change_records, spec_fingerprint

    def put(spec: dict[str, object], **kw: object) -> store.Campaign:
        with store.session_scope(engine) as s:
            return store.create_or_get_campaign(
                s,
                name="sc",
                spec=spec,
                now=NOW,
                fingerprint=spec_fingerprint(spec),
                compare=spec_change_records,
                **kw,  # type: ignore[arg-type]
            )

    cid = put(_snap()).id
    assert cid is not None
    with store.session_scope(engine) as s:
        store.set_campaign_status(s, campaign_id=cid, status=CampaignStatus.RUNNING, now=NOW)
    # mutable: stored, same fingerprint, one event with old and new values
    c = put(_snap(description="two", policy__poll_interval="PT1M"))
    assert c.spec["description"] == "two" and c.spec_hash == spec_fingerprint(_snap())
    # immutable: refused, naming the field; nothing stored
    with pytest.raises(store.SpecChangedError) as err:
        put(_snap(description="two", policy__poll_interval="PT1M", package={"file_id": "fw-2"}))
    assert err.value.fields == ["package.file_id"]
    assert "package.file_id" in str(err.value) and "--accept-spec-change" in str(err.value)
    # accepted: stored, recorded with who
    new = _snap(description="two", policy__poll_interval="PT1M", package={"file_id": "fw-2"})
    c = put(new, allow_spec_change=True, actor="cli:ops")
    assert c.spec["package"] == {"file_id": "fw-2"} and c.spec_hash == spec_fingerprint(new)
    with store.session_scope(engine, read_only=True) as s:
        evs = list(
            reversed(
                store.recent_events(
                    s, campaign_id=cid, kinds=["spec_changed", "spec_change_accepted"]
                )
            )
        )
    assert [e.kind for e in evs] == ["spec_changed", "spec_change_accepted"]
    assert evs[0].data["changes"] == [
        {"field": "description", "mutable": True, "old": "one", "new": "two"},
        {"field": "policy.poll_interval", "mutable": True, "old": "PT5M", "new": "PT1M"},
    ]
    assert evs[1].actor == "cli:ops" and evs[1].data["by"] == "cli:ops"
    assert evs[1].data["accepted"] == ["package.file_id"]
    assert {"field": "package.file_id", "mutable": False, "old": "fw-1", "new": "fw-2"} in evs[
        1
    ].data["changes"]


def test_skip_pending_devices_releases_claims_and_finds_unknown(engine: Engine) -> None:
    cid = _campaign(engine, name="sk", n=6)
    with store.session_scope(engine) as s:
        store.set_device_status(
            s,
            campaign_id=cid,
            status=D.QUEUED,
            now=NOW,
            device_ids=_ids("sk", 0),
        )
        changed = store.skip_pending_devices(
            s,
            campaign_id=cid,
            device_ids=_ids("sk", 0, 1, 2, 99),
            reason="excluded: excluded by the campaign",
            now=NOW,
        )
        assert sorted(changed) == _ids("sk", 1, 2)  # queued and unknown ones untouched
        unknown = list(
            store.unknown_device_ids(s, campaign_id=cid, device_ids=_ids("sk", 5, 99, 1, 100))
        )
        assert unknown == _ids("sk", 99, 100)
    with store.session_scope(engine, read_only=True) as s:
        assert (
            store.get_device_run(s, campaign_id=cid, device_id=_ids("sk", 1)[0]).status is D.SKIPPED
        )
        assert store.skip_reason_counts(s, campaign_id=cid) == {
            "excluded: excluded by the campaign": 2
        }
        claimed = set(
            s.execute(
                sa.text("SELECT device_id FROM device_claim WHERE campaign_id = :c"), {"c": cid}
            ).scalars()
        )
    assert claimed.isdisjoint(_ids("sk", 1, 2)) and _ids("sk", 3)[0] in claimed


def test_claim_devices_counts_the_claims_it_made(engine: Engine) -> None:
    """The count is exact on both databases (PostgreSQL gives no row count for the
    INSERT ... SELECT itself): the campaign's devices once, then none."""
    cid = _campaign(engine, "cc", n=6)
    with store.session_scope(engine) as s:
        store.release_claims(s, campaign_id=cid)
    with store.session_scope(engine) as s:
        assert store.claim_devices(s, campaign_id=cid, now=NOW) == 6
        assert store.claim_devices(s, campaign_id=cid, now=NOW) == 0


def test_a_refused_claim_keeps_none_of_its_claims(engine: Engine) -> None:
    """claim_devices refused (a device another campaign holds) writes nothing, even when
    the caller catches the error and commits the rest of its transaction."""
    _campaign(engine, "held", n=3)
    cid = _campaign(engine, "taker", n=4)
    with store.session_scope(engine) as s:
        store.release_claims(s, campaign_id=cid)
        runs = store.DeviceRun.__table__  # type: ignore[attr-defined]
        s.execute(  # taker's last device is one that "held" holds
            sa.update(runs)
            .where(runs.c.campaign_id == cid, runs.c.device_id == "taker-d003")
            .values(device_id="held-d001")
        )
    with store.session_scope(engine) as s, pytest.raises(store.DeviceClaimedError):
        store.claim_devices(s, campaign_id=cid, now=NOW)
    with store.session_scope(engine, read_only=True) as s:
        held = s.execute(
            sa.text("SELECT count(*) FROM device_claim WHERE campaign_id = :c"), {"c": cid}
        ).scalar_one()
    assert held == 0
