"""Real processes against one database: the lease, device claims, a crash after an intent."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa

from fleetwave import store
from fleetwave.store import ChunkStatus, DeviceRunStatus
from tests.integration.store import workers
from tests.integration.store.conftest import NOW, TestDB

CTX = multiprocessing.get_context("spawn")
claim = store.DeviceClaim.__table__  # type: ignore[attr-defined]


def _run(procs: list[multiprocessing.process.BaseProcess]) -> None:
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert not p.is_alive(), "worker hung"


def _new_campaign(db: TestDB, name: str) -> int:
    with store.session_scope(db.engine) as s:
        cid = store.create_or_get_campaign(s, name=name, spec={"name": name}, now=NOW).id
    assert cid is not None
    return cid


def test_two_processes_race_for_one_campaign_lease(db: TestDB) -> None:
    cid = _new_campaign(db, "leased")
    rounds = 15
    barrier, out = CTX.Barrier(2), CTX.Queue()
    procs = [
        CTX.Process(
            target=workers.race_for_lease,
            args=(db.url, db.schema, cid, holder, rounds, barrier, out),
        )
        for holder in ("run-a", "run-b")
    ]
    _run(procs)
    assert [p.exitcode for p in procs] == [0, 0]
    winners: dict[int, list[str]] = defaultdict(list)
    for _ in range(2 * rounds):
        r, holder, won = out.get(timeout=10)
        if won:
            winners[r].append(holder)
    # in every round exactly one process got the lease
    assert sorted(winners) == list(range(rounds))
    assert all(len(w) == 1 for w in winners.values()), winners


def test_one_device_claimed_by_two_campaigns(db: TestDB) -> None:
    rounds = 5
    a = [_new_campaign(db, f"a{r}") for r in range(rounds)]
    b = [_new_campaign(db, f"b{r}") for r in range(rounds)]
    barrier, out = CTX.Barrier(2), CTX.Queue()
    devices_a = [f"dev-{i:04}" for i in range(0, 300)]
    devices_b = [f"dev-{i:04}" for i in range(250, 600)]  # 50 devices in both
    procs = [
        CTX.Process(
            target=workers.race_for_devices, args=(db.url, db.schema, a, devices_a, barrier, out)
        ),
        CTX.Process(
            target=workers.race_for_devices, args=(db.url, db.schema, b, devices_b, barrier, out)
        ),
    ]
    _run(procs)
    assert [p.exitcode for p in procs] == [0, 0]
    results: dict[int, dict[int, tuple[str, list[str] | None]]] = defaultdict(dict)
    for _ in range(2 * rounds):
        r, cid, outcome, others = out.get(timeout=10)
        results[r][cid] = (outcome, others)
    with store.session_scope(db.engine, read_only=True) as s:
        for r in range(rounds):
            outcomes = results[r]
            ok = [cid for cid, (o, _) in outcomes.items() if o == "ok"]
            lost = [cid for cid, (o, _) in outcomes.items() if o == "device_claimed"]
            assert len(ok) == 1 and len(lost) == 1, outcomes
            winner = store.get_campaign_by_id(s, campaign_id=ok[0]).name
            assert outcomes[lost[0]][1] == [winner]  # the error names the other campaign
            # the loser's transaction rolled back entirely: no rows, no claims
            assert store.device_status_counts(s, campaign_id=lost[0]) == {}
            size = len(devices_a) if ok[0] in a else len(devices_b)
            assert store.device_status_counts(s, campaign_id=ok[0]) == {
                DeviceRunStatus.PENDING: size
            }
            claims = s.execute(
                sa.select(claim.c.campaign_id, sa.func.count())
                .where(claim.c.campaign_id.in_(ok + lost))
                .group_by(claim.c.campaign_id)
            ).all()
            assert claims == [(ok[0], size)]


def test_crash_between_intent_and_operation_id_leaves_a_findable_intent(db: TestDB) -> None:
    cid = _new_campaign(db, "crashy")
    devices = [f"c-{i:03}" for i in range(5)]
    with store.session_scope(db.engine) as s:
        store.create_waves(s, campaign_id=cid, waves=[store.WavePlan(0, "canary", 5)], now=NOW)
        store.add_device_runs(s, campaign_id=cid, devices=[(d, 0) for d in devices], now=NOW)
    proc = CTX.Process(target=workers.crash_after_intent, args=(db.url, db.schema, cid, devices))
    _run([proc])
    assert proc.exitcode == 3
    ttl = workers.TTL
    with store.session_scope(db.engine) as s:
        # the dead run's lease still blocks until it lapses
        assert not store.acquire_lease(s, campaign_id=cid, holder="next", ttl=ttl, now=NOW)
        assert store.acquire_lease(
            s, campaign_id=cid, holder="next", ttl=ttl, now=NOW + ttl + timedelta(seconds=1)
        )
    with store.session_scope(db.engine) as s:
        intents = store.list_intents(s, campaign_id=cid)
        assert len(intents) == 1 and intents[0].operation_id is None
        chunk = intents[0]
        assert chunk.status is ChunkStatus.INTENT and chunk.file_id == "file-2.0"
        assert list(store.get_chunk(s, chunk_id=chunk.id).device_ids) == devices  # type: ignore[arg-type]
        assert store.device_status_counts(s, campaign_id=cid) == {DeviceRunStatus.QUEUED: 5}
        # reconciliation found the task on the platform: record it, nothing is resubmitted
        store.record_operation_id(
            s,
            chunk_id=chunk.id,
            operation_id="op-found",
            now=NOW,
            reconciled=True,  # type: ignore[arg-type]
        )
    with store.session_scope(db.engine, read_only=True) as s:
        assert store.list_intents(s, campaign_id=cid) == []
        (active,) = store.list_active_chunks(s, campaign_id=cid)
        assert active.reconciled and active.operation_id == "op-found"
        assert store.device_status_counts(s, campaign_id=cid) == {DeviceRunStatus.SUBMITTED: 5}
