"""The report model, its markdown, JSON and chart, and its loading from a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pendulum
import pytest
from sqlmodel import Session, SQLModel, create_engine, select

from fleetwave.errors import UserError
from fleetwave.report import (
    CampaignReport,
    DeviceOutcome,
    Totals,
    WaveReport,
    build_timeline,
    render_chart,
    render_markdown,
)
from fleetwave.report.chart import consent_bars
from fleetwave.report.store import load_report, totals_from_counts
from fleetwave.store.api import RESOLVE_SKIPPED_WAVE
from fleetwave.store.models import (
    Campaign,
    CampaignStatus,
    Chunk,
    ChunkKind,
    ChunkStatus,
    DeviceRun,
    DeviceRunStatus,
    Event,
    Wave,
    WaveStatus,
)

T0 = pendulum.datetime(2026, 1, 5, 22, 0, 0, tz="UTC")


def test_timeline_is_cumulative_per_wave_and_exact_at_the_end() -> None:
    outcomes = [
        DeviceOutcome("canary", T0.add(seconds=30), True),
        DeviceOutcome("canary", T0.add(seconds=10), False),
        DeviceOutcome("canary", T0.add(seconds=10), True),
        DeviceOutcome("wave 1", T0.add(minutes=5), True),
    ]
    canary, wave1 = build_timeline(outcomes)
    assert canary.wave == "canary"
    assert canary.times == (T0.add(seconds=10), T0.add(seconds=30))
    assert canary.succeeded == (1, 2)
    assert canary.failed == (1, 1)
    assert wave1.succeeded == (1,) and wave1.failed == (0,)


def test_timeline_is_bounded_and_never_shows_a_result_early() -> None:
    outcomes = [DeviceOutcome("w", T0.add(seconds=i), i % 3 != 0) for i in range(5000)]
    (series,) = build_timeline(outcomes, max_points=50)
    assert len(series.times) <= 50
    assert series.succeeded[-1] + series.failed[-1] == 5000
    assert series.failed[-1] == len([i for i in range(5000) if i % 3 == 0])
    assert list(series.times) == sorted(series.times)
    # At each point, no more results than actually finished by then.
    for at, ok, bad in zip(series.times, series.succeeded, series.failed, strict=True):
        finished = int((at - T0).total_seconds()) + 1
        assert ok + bad <= finished


def test_timeline_rejects_a_useless_point_budget() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        build_timeline([], max_points=1)


def _report() -> CampaignReport:
    waves = (
        WaveReport(0, "canary", "succeeded", Totals(10, 9, 1), chunks=1),
        WaveReport(1, "wave | 50%", "running", Totals(100, 40, 2, 30, 28), chunks=1),
        WaveReport(0, "canary", "rolled back", Totals(9, 8, 1), phase="rollback", chunks=1),
    )
    return CampaignReport(
        name="fw-nightly",
        status="halted",
        kind="firmware",
        totals=Totals(110, 49, 3, 30, 28),
        waves=waves,
        timeline=build_timeline([DeviceOutcome("canary", T0, True)]),
        package="fileId=pkg-2, version=2.0",
        halt_reason="failure rate 0.3 > 0.1",
    )


def test_markdown_has_summary_table_and_escapes_cells() -> None:
    text = render_markdown(_report())
    assert text.startswith("# Campaign `fw-nightly`: halted")
    assert "- why it stopped: failure rate 0.3 > 0.1" in text
    assert "rolled back: 8 of 9 devices" in text
    assert "wave \\| 50%" in text  # a pipe in a name does not break the table
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3  # header + three waves
    assert all(r.count(" | ") == rows[0].count(" | ") for r in rows)
    assert "canary (rollback)" in text
    assert "| 10.0% |" in text  # canary: 1 failed of 10 finished


def test_json_is_serialisable_and_complete() -> None:
    data = json.loads(json.dumps(_report().to_json()))
    assert data["totals"]["devices"] == 110
    assert [w["phase"] for w in data["waves"]] == ["rollout", "rollout", "rollback"]
    assert data["timeline"][0]["points"][0] == {
        "at": "2026-01-05T22:00:00+00:00",
        "succeeded": 1,
        "failed": 0,
    }


def test_chart_writes_a_png(tmp_path: Path) -> None:
    path = render_chart(_report(), tmp_path / "sub" / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = CampaignReport(name="x", status="pending", kind="firmware", totals=Totals())
    assert render_chart(empty, tmp_path / "empty.png").stat().st_size > 1000


def test_chart_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"must end in \.png"):
        render_chart(_report(), tmp_path / "chart.svg")


def test_totals_from_counts_splits_rollout_and_rollback() -> None:
    D = DeviceRunStatus
    rollout, rollback = totals_from_counts(
        {
            D.SUCCEEDED: 5,
            D.ROLLED_BACK: 3,
            D.ROLLBACK_FAILED: 1,
            D.FAILED: 2,
            D.TIMED_OUT: 1,
            D.PENDING: 4,
            D.SKIPPED: 1,
            D.CANCELLED: 2,
            D.SUBMITTED: 1,
        }
    )
    assert rollout == Totals(20, 9, 3, 1, 4, 1, 2)
    assert rollback == Totals(4, 3, 1, 0)
    assert totals_from_counts({D.SUCCEEDED: 1})[1] is None


# --- from a real SQLite store -------------------------------------------------------------


def _at(minutes: float) -> datetime:
    return datetime(2026, 1, 5, 22, 0, tzinfo=UTC) + timedelta(minutes=minutes)


@pytest.fixture
def session(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def _fill(session: Session) -> None:
    D = DeviceRunStatus
    c = Campaign(
        name="flaky",
        spec={
            "kind": "firmware",
            "package": {"fileId": "pkg-new", "version": "2.0"},
            "rollback": {"fileId": "pkg-old"},
        },
        spec_hash="x" * 64,
        status=CampaignStatus.ROLLED_BACK,
        status_reason="failure rate 0.5 > 0.2 after 10 devices",
        created_at=_at(0),
        updated_at=_at(90),
    )
    session.add(c)
    session.flush()
    assert c.id is not None
    session.add(
        Wave(
            campaign_id=c.id,
            index=0,
            name="canary",
            planned_size=6,
            status=WaveStatus.FAILED,
            created_at=_at(0),
            updated_at=_at(30),
            started_at=_at(1),
            finished_at=_at(30),
        )
    )
    session.add(
        Wave(
            campaign_id=c.id,
            index=1,
            name="rest",
            planned_size=4,
            status=WaveStatus.CANCELLED,
            created_at=_at(0),
            updated_at=_at(30),
        )
    )
    up = Chunk(
        campaign_id=c.id,
        wave_index=0,
        round=0,
        seq=0,
        kind=ChunkKind.UPGRADE,
        package_kind="firmware",
        file_id="pkg-new",
        policy={},
        device_ids=[f"d{i}" for i in range(6)],
        device_count=6,
        status=ChunkStatus.FINISHED,
        operation_id="op-1",
        created_at=_at(1),
        updated_at=_at(20),
        finished_at=_at(20),
    )
    rb = Chunk(
        campaign_id=c.id,
        wave_index=0,
        round=0,
        seq=0,
        kind=ChunkKind.ROLLBACK,
        package_kind="firmware",
        file_id="pkg-old",
        policy={},
        device_ids=["d0", "d1", "d2"],
        device_count=3,
        status=ChunkStatus.FINISHED,
        operation_id="op-2",
        created_at=_at(40),
        updated_at=_at(60),
        finished_at=_at(60),
    )
    session.add_all([up, rb])
    statuses = [D.ROLLED_BACK, D.ROLLED_BACK, D.ROLLBACK_FAILED, D.FAILED, D.FAILED, D.TIMED_OUT]
    for i, st in enumerate(statuses):
        session.add(
            DeviceRun(
                campaign_id=c.id,
                device_id=f"d{i}",
                wave_index=0,
                status=st,
                failure_kind="fail" if st is D.FAILED else None,
                created_at=_at(0),
                updated_at=_at(60),
                finished_at=_at(60) if i < 3 else _at(10 + i),
            )
        )
    for i in range(6, 10):
        session.add(
            DeviceRun(
                campaign_id=c.id,
                device_id=f"d{i}",
                wave_index=1,
                status=D.CANCELLED,
                created_at=_at(0),
                updated_at=_at(30),
            )
        )
    session.add(
        Event(
            campaign_id=c.id,
            kind="threshold_breach",
            subject="wave 0",
            data={"reason": "failure rate 50% above 20%", "limit": 0.2, "nested": {"x": 1}},
            actor="flow",
            at=_at(30),
        )
    )
    session.commit()


def test_load_report_from_store(session: Session) -> None:
    _fill(session)
    report = load_report(session, "flaky")
    assert report.status == "rolled_back"
    assert report.kind == "firmware"
    assert report.package == "fileId=pkg-new, version=2.0"
    assert report.rollback_package == "fileId=pkg-old"
    assert report.halt_reason == "failure rate 0.5 > 0.2 after 10 devices"
    assert report.totals == Totals(devices=10, succeeded=3, failed=3, cancelled=4)
    canary, rest, canary_rb = report.waves
    assert (canary.name, canary.status, canary.chunks) == ("canary", "failed", 1)
    assert rest.totals.cancelled == 4
    assert canary_rb.phase == "rollback" and canary_rb.totals == Totals(3, 2, 1)
    assert canary_rb.chunks == 1
    assert [s.wave for s in report.timeline] == ["canary", "canary (rollback)"]
    by_wave = {s.wave: s for s in report.timeline}
    # Rolled-back devices count as rollout successes when their upgrade task finished.
    assert by_wave["canary"].succeeded[-1] == 3 and by_wave["canary"].failed[-1] == 3
    assert by_wave["canary (rollback)"].succeeded[-1] == 2
    assert by_wave["canary (rollback)"].failed[-1] == 1
    assert report.events[0].kind == "threshold_breach"
    assert "limit=0.2" in report.events[0].message and "nested" not in report.events[0].message
    assert report.breach == "failure rate 50% above 20%"
    assert "rolled back: 2 of 3" in render_markdown(report)


def test_unknown_campaign_names_the_known_ones(session: Session) -> None:
    _fill(session)
    with pytest.raises(UserError, match="no campaign named 'nope'") as info:
        load_report(session, "nope")
    assert "known campaigns: flaky" in str(info.value)


def test_report_lists_devices_skipped_at_resolve_with_reasons(session: Session) -> None:
    _fill(session)
    c = session.exec(select(Campaign)).one()
    assert c.id is not None
    for i, reason in enumerate(["up_to_date: on target", "up_to_date: on target", "excluded"]):
        session.add(
            DeviceRun(
                campaign_id=c.id,
                device_id=f"s{i}",
                wave_index=RESOLVE_SKIPPED_WAVE,
                status=DeviceRunStatus.SKIPPED,
                failure_detail=reason,
                created_at=_at(0),
                updated_at=_at(0),
            )
        )
    session.commit()
    report = load_report(session, "flaky")
    assert report.skipped_reasons == (("up_to_date: on target", 2), ("excluded", 1))
    assert report.totals.skipped == 3 and report.totals.devices == 13
    first = report.waves[0]
    assert (first.name, first.status, first.totals.skipped) == ("skipped at resolve", "skipped", 3)
    text = render_markdown(report)
    assert "- skipped before sending: up_to_date: on target: 2; excluded: 1" in text
    assert "- devices: 13 (10 targeted, 3 skipped)" in text
    assert report.to_json()["skipped_reasons"] == {"up_to_date: on target": 2, "excluded": 1}


def test_consent_bars_keep_answers_in_order_and_leave_out_empty_states() -> None:
    bars = consent_bars(
        (("awaiting", 0), ("declined", 4), ("confirmed", 10), ("expired", 2), ("auto", 3))
    )
    assert [(s, n) for s, n, _ in bars] == [
        ("confirmed", 10),
        ("auto", 3),
        ("declined", 4),
        ("expired", 2),
    ]
    assert len({c for _, _, c in bars}) == 4  # one colour per state
    assert consent_bars(()) == []


def test_chart_of_a_consent_campaign_has_the_answers_panel(tmp_path: Path) -> None:
    import dataclasses

    from PIL import Image

    plain = render_chart(_report(), tmp_path / "plain.png")
    consent = dataclasses.replace(
        _report(), consent=(("confirmed", 60), ("declined", 30), ("expired", 10))
    )
    with_panel = render_chart(consent, tmp_path / "consent.png")
    with Image.open(plain) as a, Image.open(with_panel) as b:
        assert a.size == (1000, 550)
        assert b.size == (1000, 700)  # the answers panel below the outcome lines
