"""Pure parts of the store: the transition tables, the spec hash, the UTC column type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from fleetwave.store import (
    TRANSITIONS,
    CampaignStatus,
    ChunkStatus,
    ConsentState,
    DeviceRunStatus,
    IllegalTransitionError,
    UTCDateTime,
    WaveStatus,
    allowed_sources,
    campaign_spec_hash,
    check_transition,
)


@pytest.mark.parametrize(
    "enum_cls", [CampaignStatus, WaveStatus, ChunkStatus, DeviceRunStatus, ConsentState]
)
def test_every_status_has_a_transition_row_and_a_docstring_entry(enum_cls: type) -> None:
    table = TRANSITIONS[enum_cls]
    assert set(table) == set(enum_cls)
    for targets in table.values():
        assert all(isinstance(t, enum_cls) for t in targets)
    for member in enum_cls:  # every value is documented in the enum's docstring
        assert f"{member.name}:" in (enum_cls.__doc__ or ""), member


def test_terminal_and_claim_holding_statuses() -> None:
    assert {s for s in CampaignStatus if s.is_terminal} == {
        CampaignStatus.COMPLETED,
        CampaignStatus.ROLLED_BACK,
        CampaignStatus.FAILED,
        CampaignStatus.CANCELLED,
    }
    assert not any(s.holds_devices for s in CampaignStatus if s.is_terminal)
    assert not CampaignStatus.HALTED.holds_devices and CampaignStatus.RUNNING.holds_devices
    assert {s for s in WaveStatus if s.is_terminal} == {
        WaveStatus.SUCCEEDED,
        WaveStatus.FAILED,
        WaveStatus.REJECTED,
        WaveStatus.SKIPPED,
        WaveStatus.CANCELLED,
    }
    assert not DeviceRunStatus.QUEUED.is_final and DeviceRunStatus.TIMED_OUT.is_final


def test_check_transition_raises_a_typed_error_with_a_stable_code() -> None:
    check_transition(ChunkStatus.INTENT, ChunkStatus.SUBMITTED, subject="chunk 1")
    with pytest.raises(IllegalTransitionError) as err:
        check_transition(ChunkStatus.FINISHED, ChunkStatus.INTENT, subject="chunk 7")
    assert err.value.code == "illegal_transition"
    assert (err.value.current, err.value.target) == ("finished", "intent")
    assert "chunk 7" in str(err.value)


def test_allowed_sources_inverts_the_table() -> None:
    assert allowed_sources(DeviceRunStatus.QUEUED) == {
        DeviceRunStatus.PENDING,
        DeviceRunStatus.FAILED,
        DeviceRunStatus.TIMED_OUT,
    }
    # a device already in a task can never be queued again before a result arrives
    for busy in (DeviceRunStatus.QUEUED, DeviceRunStatus.SUBMITTED, DeviceRunStatus.IN_PROGRESS):
        assert busy not in allowed_sources(DeviceRunStatus.QUEUED)
    assert allowed_sources(ChunkStatus.SUBMITTED) == {ChunkStatus.INTENT}


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_spec_hash_ignores_key_order(spec: dict[str, object]) -> None:
    reordered = dict(reversed(list(spec.items())))
    assert campaign_spec_hash(spec) == campaign_spec_hash(reordered)
    assert len(campaign_spec_hash(spec)) == 64


def test_spec_hash_changes_with_content() -> None:
    assert campaign_spec_hash({"a": 1}) != campaign_spec_hash({"a": 2})


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_utc_datetime_type(dialect: object) -> None:
    t = UTCDateTime()
    plus2 = datetime(2026, 1, 5, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    bound = t.process_bind_param(plus2, dialect)  # type: ignore[arg-type]
    assert bound == datetime(2026, 1, 5, 0, 0, tzinfo=UTC) and type(bound) is datetime
    p = pendulum.datetime(2026, 7, 1, 12, tz="America/New_York")
    assert t.process_bind_param(p, dialect) == datetime(2026, 7, 1, 16, tzinfo=UTC)  # type: ignore[arg-type]
    assert t.process_result_value(datetime(2026, 1, 5), dialect) == datetime(  # type: ignore[arg-type]
        2026, 1, 5, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="naive"):
        t.process_bind_param(datetime(2026, 1, 5), dialect)  # type: ignore[arg-type]
    assert t.process_bind_param(None, dialect) is None  # type: ignore[arg-type]
