"""The store aggregates the engine's corrections rely on, on a real SQLite store.

In-flight figures of active tasks, cancelling only never-sent devices on halt/rollback,
and SKIPPED rows (with their reason) for devices left out at resolve time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from fleetwave import store
from fleetwave.engine.runner import threshold_counts
from fleetwave.spec import load_spec_text

D = store.DeviceRunStatus
NOW = pendulum.datetime(2026, 1, 5, 22, tz="UTC")

SPEC = """
name: q
kind: firmware
package: {file_id: abc}
targets: {devices: [d1]}
waves: [{count: 6}, {percent: 100}]
thresholds: {max_failure_percent: 20, min_finished: 2}
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = store.get_engine(f"sqlite:///{tmp_path / 'q.db'}")
    store.upgrade_schema(engine)
    yield engine
    engine.dispose()


def _campaign(db: sa.Engine, devices: int = 10) -> int:
    spec = load_spec_text(SPEC)
    with store.session_scope(db) as s:
        c = store.create_or_get_campaign(s, name="q", spec=spec.model_dump(mode="json"), now=NOW)
        assert c.id is not None
        store.create_waves(
            s,
            campaign_id=c.id,
            waves=[store.WavePlan(0, "canary", 6), store.WavePlan(1, "rest", devices - 6)],
            now=NOW,
        )
        store.add_device_runs(
            s,
            campaign_id=c.id,
            devices=[(f"d{i}", 0 if i < 6 else 1) for i in range(devices)],
            now=NOW,
        )
        return c.id


def _submit(db: sa.Engine, cid: int, ids: list[str], op: str | None, seq: int = 0) -> int:
    """Write an intent for ``ids``; with ``op``, record its task too."""
    with store.session_scope(db) as s:
        chunk = store.create_chunk_intent(
            s,
            campaign_id=cid,
            wave_index=0,
            round=1,
            seq=seq,
            kind=store.ChunkKind.UPGRADE,
            package_kind="firmware",
            file_id="abc",
            policy={},
            device_ids=ids,
            now=NOW,
        )
        assert chunk.id is not None
        if op is not None:
            store.record_operation_id(s, chunk_id=chunk.id, operation_id=op, now=NOW)
        return chunk.id


def test_active_chunk_figures_and_threshold_counts_without_double_counting(
    db: sa.Engine,
) -> None:
    cid = _campaign(db)
    chunk_id = _submit(db, cid, [f"d{i}" for i in range(6)], "op-1")
    spec = load_spec_text(SPEC)
    with store.session_scope(db) as s:
        # before any poll: nothing in flight
        assert store.active_chunk_figures(s, campaign_id=cid) == []
        store.record_chunk_poll(
            s,
            chunk_id=chunk_id,
            platform_status="processing#3/40",
            now=NOW,
            stats={"total": 6, "running": 1, "succeeded": 2, "failed": 3, "cancelled": 0},
        )
        # one failure and one success already stored (e.g. by push)
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[
                store.DeviceResult("d0", D.FAILED, "fail", "boom"),
                store.DeviceResult("d1", D.SUCCEEDED),
            ],
            now=NOW,
        )
    with store.session_scope(db) as s:
        (fig,) = store.active_chunk_figures(s, campaign_id=cid)
        assert (fig.chunk_id, fig.wave_index, fig.round) == (chunk_id, 0, 1)
        assert fig.polled == {"succeeded": 2, "failed": 3, "cancelled": 0, "timed_out": 0}
        assert fig.recorded == {"succeeded": 1, "failed": 1}
        assert store.active_chunk_figures(s, campaign_id=cid, wave_index=1) == []
        recorded, in_flight = threshold_counts(s, spec=spec, campaign_id=cid)
    assert (recorded.succeeded, recorded.failed) == (1, 1)
    assert (in_flight.succeeded, in_flight.failed) == (1, 2)
    both = recorded + in_flight
    assert (both.finished, both.failures, both.total) == (5, 3, 10)
    with store.session_scope(db) as s:  # a finished chunk is no longer in flight
        store.finish_chunk(s, chunk_id=chunk_id, now=NOW)
    with store.session_scope(db) as s:
        assert store.active_chunk_figures(s, campaign_id=cid) == []


def test_stats_an_older_engine_wrote_read_as_absent(db: sa.Engine) -> None:
    """A chunk polled before the neutral keys (IoDM's status words) adds nothing in flight."""
    cid = _campaign(db)
    chunk_id = _submit(db, cid, [f"d{i}" for i in range(4)], "op-1")
    spec = load_spec_text(SPEC)
    with store.session_scope(db) as s:
        store.record_chunk_poll(
            s,
            chunk_id=chunk_id,
            platform_status="processing",
            now=NOW,
            stats={"total": 4, "processing": 1, "success": 2, "fail": 1},
        )
    with store.session_scope(db) as s:
        (fig,) = store.active_chunk_figures(s, campaign_id=cid)
        assert fig.polled == {"succeeded": 0, "failed": 0, "cancelled": 0, "timed_out": 0}
        _, in_flight = threshold_counts(s, spec=spec, campaign_id=cid)
    assert (in_flight.succeeded, in_flight.failed, in_flight.timed_out) == (0, 0, 0)


def test_cancel_unsent_devices_keeps_failures_and_live_chunks(db: sa.Engine) -> None:
    cid = _campaign(db)
    _submit(db, cid, ["d0", "d1"], "op-1")
    with store.session_scope(db) as s:
        store.record_device_results(
            s,
            campaign_id=cid,
            results=[
                store.DeviceResult("d0", D.FAILED, "fail", "boom"),
                store.DeviceResult("d1", D.TIMED_OUT, "timeout", "late"),
            ],
            now=NOW,
        )
    _submit(db, cid, ["d2"], None, seq=1)  # an intent whose task may exist: not cancelled
    with store.session_scope(db) as s:
        n = store.cancel_unsent_devices(s, campaign_id=cid, now=NOW)
    assert n == 7  # d3..d9 were never sent
    with store.session_scope(db) as s:
        rows = {r.device_id: r for r in store.iter_device_runs(s, campaign_id=cid)}
    assert rows["d0"].status is D.FAILED and rows["d0"].failure_detail == "boom"
    assert rows["d1"].status is D.TIMED_OUT
    assert rows["d2"].status is D.QUEUED
    assert {rows[f"d{i}"].status for i in range(3, 10)} == {D.CANCELLED}


def test_skipped_rows_carry_their_reason_and_are_never_claimed(db: sa.Engine) -> None:
    cid = _campaign(db, devices=8)
    with store.session_scope(db) as s:
        added = store.add_skipped_device_runs(
            s,
            campaign_id=cid,
            devices=iter(
                [
                    ("s1", "up_to_date: on target"),
                    ("s2", "up_to_date: on target"),
                    ("s3", "x"),
                    ("d0", "would clash with a planned device"),
                ]
            ),
            now=NOW,
            batch_size=2,
        )
        assert added == 3  # d0 is already planned: left as it is
        assert store.skip_reason_counts(s, campaign_id=cid) == {"up_to_date: on target": 2, "x": 1}
        row = store.get_device_run(s, campaign_id=cid, device_id="s1")
        assert row is not None and row.wave_index == store.RESOLVE_SKIPPED_WAVE
        assert row.status is D.SKIPPED and row.finished_at is not None
        assert store.get_device_run(s, campaign_id=cid, device_id="d0").status is D.PENDING  # type: ignore[union-attr]
        store.claim_devices(s, campaign_id=cid, now=NOW)
        claims = s.execute(sa.text("SELECT device_id FROM device_claim")).scalars().all()
    assert "s1" not in claims and "d0" in claims
