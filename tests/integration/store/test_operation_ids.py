"""OperationIds are unique per platform connection: lookups scoped to a connection, a reused
id on one connection is a clear error that keeps the intent; the helpers of the platform-side
duplicate check. On a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.store import ChunkKind, ChunkStatus, DeviceRunStatus, WavePlan
from tests.integration.store.conftest import NOW

A, B = "iodm:a.example:443/app", "iodm:b.example:443/app"


def _campaign(s, name: str, n: int = 6) -> int:  # type: ignore[no-untyped-def]
    c = store.create_or_get_campaign(s, name=name, spec={"name": name}, now=NOW)
    assert c.id is not None
    store.create_waves(s, campaign_id=c.id, waves=[WavePlan(0, "all", n)], now=NOW)
    store.add_device_runs(
        s, campaign_id=c.id, devices=[(f"{name}-{i}", 0) for i in range(n)], now=NOW
    )
    return c.id


def _intent(s, cid: int, ids: list[str], key: str, seq: int = 0) -> int:  # type: ignore[no-untyped-def]
    chunk = store.create_chunk_intent(
        s,
        campaign_id=cid,
        wave_index=0,
        round=1,
        seq=seq,
        kind=ChunkKind.UPGRADE,
        package_kind="firmware",
        file_id="f",
        policy={},
        device_ids=ids,
        now=NOW,
        connection_key=key,
    )
    assert chunk.id is not None and chunk.connection_key == key
    return chunk.id


def test_the_same_operation_id_on_two_connections(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        one, two = _campaign(s, "one"), _campaign(s, "two")
        c1 = _intent(s, one, ["one-0", "one-1"], A)
        c2 = _intent(s, two, ["two-0"], B)
    with store.session_scope(engine) as s:
        store.record_operation_id(s, chunk_id=c1, operation_id="op-1", now=NOW)
        store.record_operation_id(s, chunk_id=c2, operation_id="op-1", now=NOW)  # no error
    with store.session_scope(engine) as s:
        got_a = store.get_chunk_by_operation_id(s, operation_id="op-1", connection_key=A)
        got_b = store.get_chunk_by_operation_id(s, operation_id="op-1", connection_key=B)
        assert (got_a and got_a.id, got_b and got_b.id) == (c1, c2)
        assert store.get_chunk_by_operation_id(s, operation_id="op-1", connection_key="x") is None
        refs = store.chunk_refs_by_operation_id(s, operation_ids=["op-1"], connection_keys=[B])
        assert refs["op-1"].id == c2 and refs["op-1"].campaign_id == two
        # two connections' chunks carry it: it cannot be placed, so it is absent
        assert store.chunk_refs_by_operation_id(s, operation_ids=["op-1"]) == {}
        assert (
            store.chunk_refs_by_operation_id(s, operation_ids=["op-1"], connection_keys=[A, B])
            == {}
        )
        assert store.device_status_counts(s, campaign_id=two) == {
            DeviceRunStatus.SUBMITTED: 1,
            DeviceRunStatus.PENDING: 5,
        }


def test_a_reused_operation_id_on_one_connection_keeps_the_intent(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        one, two = _campaign(s, "one"), _campaign(s, "two")
        held = _intent(s, one, ["one-0"], A)
        store.record_operation_id(s, chunk_id=held, operation_id="op-7", now=NOW)
        new = _intent(s, two, ["two-0", "two-1"], A)
    with store.session_scope(engine) as s:
        with pytest.raises(store.OperationIdCollisionError) as err:
            store.record_operation_id(s, chunk_id=new, operation_id="op-7", now=NOW)
        # the caller's transaction goes on: nothing of the failed call was written
        store.mark_operation_id_collision(
            s, chunk_id=new, operation_id="op-7", other_chunk_id=held, now=NOW
        )
    e = err.value
    assert isinstance(e, store.ConflictError) and e.code == "operation_id_collision"
    text = str(e)
    assert "operationId op-7" in text and A in text
    assert f"chunk {new} (campaign 'two', 2 devices)" in text
    assert f"chunk {held} (campaign 'one')" in text
    assert "\n" not in text
    with store.session_scope(engine) as s:
        chunk = store.get_chunk(s, chunk_id=new)
        assert chunk.status is ChunkStatus.INTENT and chunk.operation_id is None
        assert chunk.collided_operation_id == "op-7"
        assert store.device_status_counts(s, campaign_id=two) == {
            DeviceRunStatus.QUEUED: 2,
            DeviceRunStatus.PENDING: 4,
        }
        (event,) = store.recent_events(s, campaign_id=two, kinds=["operation_id_collision"])
        assert event.data["operation_id"] == "op-7" and event.data["other_chunk"] == held


def test_the_database_refuses_a_duplicate_on_one_connection(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        cid = _campaign(s, "one")
        a, b = _intent(s, cid, ["one-0"], A), _intent(s, cid, ["one-1"], A, seq=1)
    chunk = store.Chunk.__table__  # type: ignore[attr-defined]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.update(chunk).where(chunk.c.id.in_([a, b])).values(operation_id="dup"))


def test_unkeyed_chunks_take_the_connection_of_their_campaign(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        one, two = _campaign(s, "one"), _campaign(s, "two")
        old = _intent(s, one, ["one-0"], "")
        store.record_operation_id(s, chunk_id=old, operation_id="op-1", now=NOW)
        clash = _intent(s, one, ["one-1"], "", seq=1)
        store.record_operation_id(s, chunk_id=clash, operation_id="op-2", now=NOW)
        taken = _intent(s, two, ["two-0"], A)
        store.record_operation_id(s, chunk_id=taken, operation_id="op-2", now=NOW)
        assert not store.has_chunks_on_connection(s, campaign_id=one, connection_key=A)
    with store.session_scope(engine) as s:
        assert store.assign_unkeyed_chunks(s, campaign_id=one, connection_key=A, now=NOW) == 1
    with store.session_scope(engine) as s:
        assert store.get_chunk(s, chunk_id=old).connection_key == A
        assert store.get_chunk(s, chunk_id=clash).connection_key == ""  # A holds op-2 already
        assert store.has_chunks_on_connection(s, campaign_id=one, connection_key=A)
        assert not store.has_chunks_on_connection(s, campaign_id=one, connection_key=B)


def test_campaign_devices_among_and_discarding_an_unsent_plan(engine: Engine) -> None:
    with store.session_scope(engine) as s:
        one, two = _campaign(s, "one", n=1200), _campaign(s, "two")
        store.set_device_status(
            s, campaign_id=one, device_ids=["one-3"], status=DeviceRunStatus.SKIPPED, now=NOW
        )
        asked = [f"one-{i}" for i in range(0, 2400, 2)] + ["two-1", "nope"]
        found = store.campaign_devices_among(
            s,
            campaign_id=one,
            device_ids=[*asked, "one-3"],
            statuses=[DeviceRunStatus.PENDING],
        )
        assert found == {f"one-{i}" for i in range(0, 1200, 2)}
        assert store.campaign_devices_among(s, campaign_id=one, device_ids=["one-3"]) == {"one-3"}
    with store.session_scope(engine) as s:
        assert store.discard_unsent_plan(s, campaign_id=one) == 1200
        _intent(s, two, ["two-0"], A)
    with store.session_scope(engine) as s:
        assert store.get_waves(s, campaign_id=one) == []
        assert store.device_status_counts(s, campaign_id=one) == {}
        with pytest.raises(store.ConflictError):
            store.discard_unsent_plan(s, campaign_id=two)
