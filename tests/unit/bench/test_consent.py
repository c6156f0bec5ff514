"""The consent benchmark's pure helpers: its campaign, owners, latency figures, send groups."""

from __future__ import annotations

from datetime import timedelta

from bench.consent import consent_spec_text, latency_stats, owner_of, send_groups
from fleetwave.spec import load_spec_text


def test_the_campaign_is_the_api_budget_one_with_consent() -> None:
    spec = load_spec_text(
        consent_spec_text(inflight=7, poll="5m", waves="single", period="2d", answer_timeout="2h")
    )
    assert spec.consent is not None
    assert (spec.consent.period, spec.consent.answer_timeout) == (
        timedelta(days=2),
        timedelta(hours=2),
    )
    assert spec.policy.max_inflight_tasks == 7
    assert len(spec.waves) == 1


def test_owners_have_consecutive_devices() -> None:
    assert [owner_of(i, 3) for i in range(7)] == [
        "owner-0000000",
        "owner-0000000",
        "owner-0000000",
        "owner-0000001",
        "owner-0000001",
        "owner-0000001",
        "owner-0000002",
    ]


def test_latency_figures_are_nearest_rank_in_milliseconds() -> None:
    st = latency_stats([i / 1000 for i in range(100, 0, -1)])  # 1..100 ms, unsorted
    assert (st.count, st.p50, st.p95, st.max) == (100, 50.0, 95.0, 100.0)
    assert latency_stats([]).count == 0 and latency_stats([]).p95 == 0.0


def test_send_groups_split_by_run_round_and_window() -> None:
    now = {"execute_type": "now", "start_time": None, "end_time": None}
    slot = {"execute_type": "custom", "start_time": "T1", "end_time": "T2"}
    other = {"execute_type": "custom", "start_time": "T3", "end_time": "T4"}
    chunks = [
        {"run": 1, "round": 1, "policy": now, "devices": 256},
        {"run": 1, "round": 1, "policy": now, "devices": 13},
        {"run": 2, "round": 1, "policy": now, "devices": 256},
        {"run": 2, "round": 1, "policy": slot, "devices": 100},
        {"run": 2, "round": 1, "policy": other, "devices": 40},
        {"run": 2, "round": 1, "policy": other, "devices": 40},
    ]
    groups = send_groups(chunks)
    assert [(g.devices, g.tasks, g.bound) for g in groups] == [
        (269, 2, 2),
        (256, 1, 1),
        (100, 1, 1),
        (80, 2, 1),  # two half-full tasks where one would do
    ]
    assert groups[0].label == "run 1 round 1 now"
    assert groups[3].label == "run 2 round 1 window T3 .. T4"
    assert groups[3].mean == 40.0
