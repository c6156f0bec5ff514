"""The engine's consent round in SQL, on SQLite and PostgreSQL: the store sorts a wave's
pending devices by consent exactly as the rule (``decide.consent_split``) does, reads at
most a limit of them, never the unanswered ones, and moves the left-out ones in one UPDATE;
owners' retries leave out devices another campaign holds or later took in."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pendulum
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.engine.decide import ConsentBucket, consent_split, consent_states
from fleetwave.spec.model import ConsentTimeoutAction
from fleetwave.store import CampaignStatus, ConsentState, DeviceRunStatus, NewDeviceRun, WavePlan
from tests.integration.store.conftest import NOW

S = ConsentState
D = DeviceRunStatus
SLOT = (NOW + timedelta(hours=13), NOW + timedelta(hours=15))
EARLY = (NOW + timedelta(hours=2), NOW + timedelta(hours=3))


def _consent_campaign(
    engine: Engine, name: str, states: dict[str, ConsentState | None], *, appoint: dict[str, tuple]
) -> int:
    """A campaign whose wave 0 holds ``states``' devices, PENDING, with those consents
    (None: the device has no consent row)."""
    with store.session_scope(engine) as s:
        c = store.create_or_get_campaign(s, name=name, spec={"name": name}, now=NOW)
        assert c.id is not None
        store.create_waves(s, campaign_id=c.id, waves=[WavePlan(0, "all", len(states))], now=NOW)
        store.add_device_runs(
            s, campaign_id=c.id, devices=[NewDeviceRun(d, 0) for d in states], now=NOW
        )
        store.open_consent_plan(
            s,
            campaign_id=c.id,
            device_ids=[d for d, st in states.items() if st is not None],
            period_start=NOW,
            period_end=NOW + timedelta(days=7),
            windows=[],
            delivery="platform",
            target_version="2.0",
            now=NOW,
        )
        table = store.DeviceConsent.__table__  # type: ignore[attr-defined]
        for state in {st for st in states.values() if st not in (None, S.AWAITING)}:
            ids = [d for d, st in states.items() if st is state and d not in appoint]
            if ids:
                s.execute(
                    sa.update(table)
                    .where(table.c.campaign_id == c.id, table.c.device_id.in_(ids))
                    .values(state=state.value)
                )
        for d, (start, end) in appoint.items():
            s.execute(
                sa.update(table)
                .where(table.c.campaign_id == c.id, table.c.device_id == d)
                .values(state=S.APPOINTED.value, appoint_start=start, appoint_end=end)
            )
        return c.id


MIX: dict[str, ConsentState | None] = {
    **{f"c{i:02}": S.CONFIRMED for i in range(7)},
    **{f"u{i:02}": S.AUTO for i in range(2)},
    **{f"p{i:02}": S.APPOINTED for i in range(3)},
    **{f"d{i:02}": S.DECLINED for i in range(2)},
    **{f"x{i:02}": S.EXPIRED for i in range(2)},
    **{f"w{i:02}": S.AWAITING for i in range(5)},
    "n00": None,  # no consent row: as unanswered
}
APPOINT = {"p00": SLOT, "p01": SLOT, "p02": EARLY}


@pytest.mark.parametrize(
    ("timed_out", "on_timeout"),
    [
        (False, ConsentTimeoutAction.SKIP),
        (True, ConsentTimeoutAction.SKIP),
        (True, ConsentTimeoutAction.PROCEED),
        (True, ConsentTimeoutAction.FAIL),
    ],
)
def test_the_store_sorts_as_the_rule_does(
    engine: Engine, timed_out: bool, on_timeout: ConsentTimeoutAction
) -> None:
    cid = _consent_campaign(engine, "mix", MIX, appoint=APPOINT)
    slot = {d: tuple(pendulum.instance(t) for t in span) for d, span in APPOINT.items()}
    split = consent_split(
        {d: (st or S.AWAITING, slot.get(d)) for d, st in MIX.items()},  # type: ignore[misc]
        timed_out=timed_out,
        on_timeout=on_timeout,
    )

    def states(bucket: ConsentBucket) -> frozenset[ConsentState]:
        return consent_states(bucket, timed_out=timed_out, on_timeout=on_timeout)

    with store.session_scope(engine) as s:
        send = store.pending_by_consent(
            s, campaign_id=cid, wave_index=0, consent_states=states(ConsentBucket.SEND), limit=99
        )
        assert [d for d, _ in send] == split.send
        got = store.appointed_pending(s, campaign_id=cid, wave_index=0, limit=99)
        assert [a.device_id for a in got] == ["p02", "p00", "p01"]  # earliest appointment first
        grouped: dict[tuple, list[str]] = {}
        for a in got:
            grouped.setdefault((a.start, a.end), []).append(a.device_id)
        assert sorted(map(sorted, grouped.values())) == sorted(
            map(sorted, split.appointed.values())
        )
        moved = {
            bucket: store.leave_out_pending(
                s,
                campaign_id=cid,
                wave_index=0,
                consent_states=states(bucket),
                status=D.SKIPPED,
                failure_kind=f"consent_{bucket.value}",
                failure_detail="left out",
                now=NOW,
            )
            for bucket in (ConsentBucket.DECLINED, ConsentBucket.EXPIRED)
        }
    assert moved == {
        ConsentBucket.DECLINED: len(split.declined),
        ConsentBucket.EXPIRED: len(split.expired),
    }
    with store.session_scope(engine, read_only=True) as s:
        runs = {r.device_id: r for r in store.iter_device_runs(s, campaign_id=cid)}
    for d in split.declined + split.expired:
        assert runs[d].status is D.SKIPPED and runs[d].finished_at is not None
    kinds = {d: runs[d].failure_kind for d in split.declined + split.expired}
    assert kinds == {
        **{d: "consent_declined" for d in split.declined},
        **{d: "consent_expired" for d in split.expired},
    }
    assert {runs[d].status for d in split.held + split.send} <= {D.PENDING}


def test_a_round_reads_at_most_the_limit_and_never_the_unanswered(engine: Engine) -> None:
    """A wave of 2,500 pending devices where 23 owners consented: each read holds at most
    the limit and only consented devices; sending them (QUEUED) and reading again pages
    through all 23, after which nothing more is read while 2,477 still await an answer."""
    n, consented = 2500, set(range(7, 2500, 109))
    mix = {f"dev-{i:05}": (S.CONFIRMED if i in consented else S.AWAITING) for i in range(n)}
    cid = _consent_campaign(engine, "big", mix, appoint={})
    send_states = consent_states(
        ConsentBucket.SEND, timed_out=False, on_timeout=ConsentTimeoutAction.SKIP
    )
    limit, seen, reads = 5, [], []
    for _ in itertools.count():
        with store.session_scope(engine) as s:
            got = store.pending_by_consent(
                s, campaign_id=cid, wave_index=0, consent_states=send_states, limit=limit
            )
            reads.append(len(got))
            if not got:
                break
            ids = [d for d, _ in got]
            assert all(mix[d] is S.CONFIRMED for d in ids)  # never an unanswered device
            seen += ids
            store.set_device_status(s, campaign_id=cid, status=D.QUEUED, now=NOW, device_ids=ids)
    assert max(reads) == limit and reads[-1] == 0
    assert seen == sorted(d for d, st in mix.items() if st is S.CONFIRMED)
    assert len(seen) == len(consented) == 23
    with store.session_scope(engine) as s:
        assert store.appointed_pending(s, campaign_id=cid, wave_index=0, limit=limit) == []
        counts = store.device_status_counts(s, campaign_id=cid, wave_index=0)
    assert counts[D.PENDING] == n - 23


def test_owner_retries_skip_devices_held_or_taken_by_another_campaign(engine: Engine) -> None:
    mix: dict[str, ConsentState | None] = {f"r{i}": S.CONFIRMED for i in range(4)}
    cid = _consent_campaign(engine, "old", mix, appoint={})
    failed_at, asked_at = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    table = store.DeviceConsent.__table__  # type: ignore[attr-defined]
    with store.session_scope(engine) as s:
        for status in (D.QUEUED, D.SUBMITTED, D.FAILED):
            store.set_device_status(s, campaign_id=cid, status=status, now=failed_at)
        s.execute(
            sa.update(table)
            .where(table.c.campaign_id == cid)
            .values(retries=1, answered_at=asked_at)
        )
        store.set_campaign_status(s, campaign_id=cid, status=CampaignStatus.RUNNING, now=NOW)
        store.set_campaign_status(s, campaign_id=cid, status=CampaignStatus.COMPLETED, now=NOW)
        assert store.count_owner_retries(s, campaign_id=cid) == 4
        assert [r.device_id for r in store.owner_retries(s, campaign_id=cid, limit=3)] == [
            "r0",
            "r1",
            "r2",
        ]
        # a running campaign holds r1 now; a later one (finished) took r2 in
        newer = store.create_or_get_campaign(s, name="newer", spec={"n": 2}, now=NOW)
        later = store.create_or_get_campaign(s, name="later", spec={"n": 3}, now=NOW)
        assert newer.id is not None and later.id is not None
        store.add_device_runs(s, campaign_id=newer.id, devices=[NewDeviceRun("r1", 0)], now=NOW)
        store.add_device_runs(s, campaign_id=later.id, devices=[NewDeviceRun("r2", 0)], now=NOW)
        store.set_campaign_status(s, campaign_id=newer.id, status=CampaignStatus.RUNNING, now=NOW)
        for status in (CampaignStatus.RUNNING, CampaignStatus.COMPLETED):  # claims released
            store.set_campaign_status(s, campaign_id=later.id, status=status, now=NOW)
    with store.session_scope(engine) as s:
        plain = store.owner_retries(s, campaign_id=cid)
        after = store.owner_retries(s, campaign_id=cid, superseded=True)
        assert store.count_owner_retries(s, campaign_id=cid, superseded=True) == 2
    with store.session_scope(engine) as s:
        assert store.claim_owner_retries(s, campaign_id=cid, now=NOW) == 2
        assert store.claim_owner_retries(s, campaign_id=cid, now=NOW) == 0  # once
        claim = store.DeviceClaim.__table__  # type: ignore[attr-defined]
        claims = s.execute(
            sa.select(claim.c.device_id, claim.c.campaign_id).order_by(claim.c.device_id)
        ).all()
    assert [tuple(c) for c in claims] == [("r0", cid), ("r1", newer.id), ("r3", cid)]
    assert [r.device_id for r in plain] == ["r0", "r2", "r3"]
    assert [(r.device_id, r.attempt, r.wave_index) for r in after] == [("r0", 0, 0), ("r3", 0, 0)]


def test_appointments_that_ended_unsent_are_skipped_and_expire(engine: Engine) -> None:
    cid = _consent_campaign(engine, "missed", MIX, appoint=APPOINT)
    with store.session_scope(engine) as s:  # a device already sent keeps its run
        s.execute(
            sa.update(store.DeviceRun.__table__)  # type: ignore[attr-defined]
            .where(store.DeviceRun.campaign_id == cid, store.DeviceRun.device_id == "p01")
            .values(status=D.SUBMITTED.value)
        )
    args = dict(campaign_id=cid, wave_index=0, failure_kind="missed", failure_detail="x")
    with store.session_scope(engine) as s:  # EARLY has ended, SLOT has not
        moved = store.miss_appointments(s, now=NOW + timedelta(hours=4), **args)
    assert moved == 1
    with store.session_scope(engine) as s:  # a replay moves nothing
        assert store.miss_appointments(s, now=NOW + timedelta(hours=4), **args) == 0
    with store.session_scope(engine) as s:  # SLOT over: p00 goes, p01 (sent) stays
        assert store.miss_appointments(s, now=NOW + timedelta(hours=16), **args) == 1
    with store.session_scope(engine, read_only=True) as s:
        runs = {r.device_id: r for r in store.iter_device_runs(s, campaign_id=cid)}
        rows = store.consent_rows(s, campaign_id=cid, device_ids=["p00", "p01", "p02"])
    assert {d: (runs[d].status, runs[d].failure_kind) for d in ("p00", "p01", "p02")} == {
        "p00": (D.SKIPPED, "missed"),
        "p01": (D.SUBMITTED, None),
        "p02": (D.SKIPPED, "missed"),
    }
    assert {d: rows[d].state for d in rows} == {
        "p00": S.EXPIRED,
        "p01": S.APPOINTED,
        "p02": S.EXPIRED,
    }
    assert all(runs[d].status is D.PENDING for d in MIX if d[0] in "cuw")


def test_owner_retries_whose_appointment_ended_unsent_expire(engine: Engine) -> None:
    """An owner's retry (a failed device, appointed again after the failure) whose new
    appointment is over expires; one still ahead, a pending device's and a confirmed retry
    stay as they are; the failed runs keep their result."""
    mix: dict[str, ConsentState | None] = {f"r{i}": S.CONFIRMED for i in range(4)}
    cid = _consent_campaign(engine, "retry-missed", mix, appoint={})
    failed_at, asked_at = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    table = store.DeviceConsent.__table__  # type: ignore[attr-defined]
    runs = store.DeviceRun.__table__  # type: ignore[attr-defined]
    with store.session_scope(engine) as s:
        for status in (D.QUEUED, D.SUBMITTED, D.FAILED):
            store.set_device_status(s, campaign_id=cid, status=status, now=failed_at)
        s.execute(  # r3 never failed: still pending, appointed with an ended slot
            sa.update(runs)
            .where(runs.c.campaign_id == cid, runs.c.device_id == "r3")
            .values(status=D.PENDING.value, finished_at=None)
        )
        s.execute(sa.update(table).where(table.c.campaign_id == cid).values(answered_at=asked_at))
        for device, retries, slot in (
            ("r0", 1, EARLY),  # a retry appointed 2-3 h after NOW
            ("r1", 1, SLOT),  # a retry appointed 13-15 h after NOW
            ("r3", 0, EARLY),  # a pending device's appointment, not a retry
        ):
            s.execute(
                sa.update(table)
                .where(table.c.campaign_id == cid, table.c.device_id == device)
                .values(
                    state=S.APPOINTED.value,
                    retries=retries,
                    appoint_start=slot[0],
                    appoint_end=slot[1],
                )
            )
        s.execute(  # r2: a confirmed retry (no appointment)
            sa.update(table)
            .where(table.c.campaign_id == cid, table.c.device_id == "r2")
            .values(retries=1)
        )
    args = dict(campaign_id=cid, wave_index=0)
    with store.session_scope(engine) as s:  # nothing has ended yet
        assert store.miss_retry_appointments(s, now=NOW + timedelta(hours=2), **args) == 0
    with store.session_scope(engine) as s:  # EARLY is over: r0's retry expires, r3 is not one
        assert store.miss_retry_appointments(s, now=NOW + timedelta(hours=4), **args) == 1
    with store.session_scope(engine) as s:  # a replay changes nothing
        assert store.miss_retry_appointments(s, now=NOW + timedelta(hours=4), **args) == 0
        assert [r.device_id for r in store.owner_retries(s, campaign_id=cid)] == ["r1", "r2"]
    with store.session_scope(engine) as s:  # the whole campaign, after SLOT: r1 too
        assert (
            store.miss_retry_appointments(
                s, campaign_id=cid, wave_index=None, now=NOW + timedelta(hours=16)
            )
            == 1
        )
    with store.session_scope(engine, read_only=True) as s:
        rows = store.consent_rows(s, campaign_id=cid, device_ids=list(mix))
        status = {r.device_id: r.status for r in store.iter_device_runs(s, campaign_id=cid)}
        assert [r.device_id for r in store.owner_retries(s, campaign_id=cid)] == ["r2"]
    assert {d: rows[d].state for d in rows} == {
        "r0": S.EXPIRED,
        "r1": S.EXPIRED,
        "r2": S.CONFIRMED,
        "r3": S.APPOINTED,
    }
    assert status == {"r0": D.FAILED, "r1": D.FAILED, "r2": D.FAILED, "r3": D.PENDING}
