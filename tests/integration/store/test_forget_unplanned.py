"""``forget_unplanned_campaign``: a run that failed before planning leaves no row behind,
and nothing else is ever deleted (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.store import CampaignStatus, WavePlan
from tests.integration.store.conftest import NOW

TTL = timedelta(minutes=10)


def _pending(engine: Engine, name: str, holder: str | None) -> int:
    with store.session_scope(engine) as s:
        c = store.create_or_get_campaign(s, name=name, spec={"name": name}, now=NOW)
        assert c.id is not None
        store.append_event(s, campaign_id=c.id, kind="run_failed", now=NOW, data={"e": "x"})
        if holder is not None:
            assert store.acquire_lease(s, campaign_id=c.id, holder=holder, ttl=TTL, now=NOW)
        return c.id


def test_an_unplanned_campaign_is_forgotten_by_its_lease_holder(engine: Engine) -> None:
    cid = _pending(engine, "never-planned", "run-1")
    with store.session_scope(engine) as s:
        assert not store.forget_unplanned_campaign(s, campaign_id=cid, holder="run-2")
    with store.session_scope(engine) as s:
        assert store.forget_unplanned_campaign(s, campaign_id=cid, holder="run-1")
    with store.session_scope(engine, read_only=True) as s:
        assert store.find_campaign(s, name="never-planned") is None
        assert store.recent_events(s, campaign_id=cid) == []
    # the name is free again: a new campaign, with only its own two events
    again = _pending(engine, "never-planned", None)
    with store.session_scope(engine, read_only=True) as s:
        kinds = [e.kind for e in store.recent_events(s, campaign_id=again)]
    assert kinds == ["run_failed", "campaign_created"]


def test_planned_or_moved_campaigns_are_kept(engine: Engine) -> None:
    planned = _pending(engine, "planned", "run-1")
    with store.session_scope(engine) as s:
        store.create_waves(s, campaign_id=planned, waves=[WavePlan(0, "all", 0)], now=NOW)
    halted = _pending(engine, "halted", "run-1")
    with store.session_scope(engine) as s:
        store.set_campaign_status(s, campaign_id=halted, status=CampaignStatus.HALTED, now=NOW)
    for cid in (planned, halted):
        with store.session_scope(engine) as s:
            assert not store.forget_unplanned_campaign(s, campaign_id=cid, holder="run-1")
    with store.session_scope(engine, read_only=True) as s:
        assert store.find_campaign(s, name="planned") is not None
        assert store.find_campaign(s, name="halted") is not None
        assert len(store.recent_events(s, campaign_id=planned)) >= 2
