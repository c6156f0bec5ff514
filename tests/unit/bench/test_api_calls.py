"""The benchmark's pure helpers: the lower-bound formula, endpoint categories, the campaign."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import (
    CATEGORIES,
    StageMeter,
    bench_spec_text,
    bench_ts_spec_text,
    by_category,
    categorize,
    categorize_ts,
    lower_bound,
    ts_lower_bound,
)
from fleetwave.spec import load_spec_text

NB = "/iodm/northbound/v1.5.0"


def test_lower_bound_of_the_issue_example() -> None:
    # 100,000 devices: 391 creates, 1000 subtask pages; rounds with 150, 100, 1, 0 active
    bound = lower_bound(100_000, [150, 100, 1, 0])
    assert (bound.creates, bound.subtask_pages, bound.progress) == (391, 1000, 2 + 1 + 1 + 0)
    assert bound.total == 391 + 1000 + 4


def test_lower_bound_rounds_up_at_the_edges() -> None:
    assert lower_bound(256, []).creates == 1
    assert lower_bound(257, []).creates == 2
    assert lower_bound(100, [100]).subtask_pages == 1
    assert lower_bound(101, [101]).progress == 2
    assert lower_bound(0, []).total == 0


@given(
    st.integers(min_value=0, max_value=10**7),
    st.lists(st.integers(min_value=0, max_value=10**4), max_size=50),
)
def test_lower_bound_is_monotone_and_tight(n: int, rounds: list[int]) -> None:
    b = lower_bound(n, rounds)
    assert b.creates * 256 >= n > (b.creates - 1) * 256 or n == b.creates == 0
    assert b.subtask_pages * 100 >= n > (b.subtask_pages - 1) * 100 or n == b.subtask_pages == 0
    assert lower_bound(n + 1, rounds).total >= b.total
    assert lower_bound(n, [*rounds, 1]).progress == b.progress + 1


@pytest.mark.parametrize("bad", [(-1, []), (5, [-1])])
def test_lower_bound_rejects_negative_input(bad: tuple[int, list[int]]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        lower_bound(*bad)


@pytest.mark.parametrize(
    ("endpoint", "category"),
    [
        (f"POST {NB}/operations/firmwareUpgrade", "create"),
        (f"POST {NB}/operations/softwareUpgrade", "create"),
        (f"GET {NB}/operations", "progress"),
        (f"GET {NB}/operations/{{operationId}}", "progress"),
        (f"GET {NB}/operations/{{operationId}}/subOperations", "subtasks"),
        ("GET /iocm/app/dm/v1.2.0/devices/ids", "resolve"),
        ("GET /iocm/app/dm/v1.4.0/devices", "resolve"),
        ("POST /iocm/app/sec/v1.1.0/login", "login"),
        ("POST /iocm/app/sec/v1.1.0/refreshToken", "login"),
        ("POST /iodm/app/sub/v1.1.0/subscribe", "subscribe"),
        ("GET /somewhere/else", "other"),
    ],
)
def test_categorize(endpoint: str, category: str) -> None:
    assert categorize(endpoint) == category


def test_by_category_sums_every_category() -> None:
    calls = {f"GET {NB}/operations": 7, f"GET {NB}/operations/{{operationId}}": 2, "GET /x": 1}
    cats = by_category(calls)
    assert set(cats) == set(CATEGORIES)
    assert cats["progress"] == 9 and cats["other"] == 1 and sum(cats.values()) == 10


@pytest.mark.parametrize("waves", ["canary", "single"])
def test_bench_campaign_is_a_valid_spec(waves: str) -> None:
    spec = load_spec_text(bench_spec_text("bench-x", inflight=50, task_size=200, waves=waves))
    assert spec.name == "bench-x"
    assert spec.policy.max_inflight_tasks == 50
    assert spec.policy.max_devices_per_task == 200
    assert len(spec.waves) == (3 if waves == "canary" else 1)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("monitor round 7", "monitor"),
        ("submit wave 2 attempt 1 (20 tasks)", "submit"),
        ("resolve and plan", "resolve"),
        ("verify package", "verify"),
        ("rollback wave 0 (3 tasks)", "rollback"),
        ("wave 1: submit and monitor", "wave"),
        ("roll back to 0.9.8", "roll"),
    ],
)
def test_stage_kinds(name: str, kind: str) -> None:
    assert StageMeter.kind(name) == kind


async def test_stage_meter_counts_calls_and_active_rounds() -> None:
    class FakePlatform:
        def __init__(self) -> None:
            self.counts = {"GET a": 0}

        def call_counts(self) -> dict[str, int]:
            return dict(self.counts)

    plat = FakePlatform()
    meter = StageMeter(plat, active_tasks=lambda: 42)

    async def spend() -> str:
        plat.counts["GET a"] += 3
        return "done"

    async def wave() -> str:
        assert await meter.step("monitor round 1", spend) == "done"
        assert await meter("submit wave 0 attempt 1 (1 tasks)", spend) == "done"
        return "wave done"

    assert await meter("wave 0: submit and monitor", wave) == "wave done"
    assert meter.stages == 2  # the wave and its submission; the round is a step
    assert meter.steps == 1
    assert meter.stages_by_kind == {"wave": 1, "submit": 1}
    assert meter.active_per_round == [42]
    # a wrapping stage's calls are those of the stages and steps inside it
    assert meter.calls_by_stage == {"monitor": 3, "submit": 3}


def test_thingspace_lower_bound() -> None:
    # 94,447 devices: 95 upgrades of 1,000, one read per active upgrade a round, one
    # result read per upgrade
    bound = ts_lower_bound(94_447, [1, 2, 86, 0])
    assert (bound.creates, bound.progress, bound.results) == (95, 89, 95)
    assert bound.total == 95 + 89 + 95
    assert ts_lower_bound(1000, []).creates == 1 and ts_lower_bound(1001, []).creates == 2
    assert ts_lower_bound(0, []).total == 0
    with pytest.raises(ValueError):
        ts_lower_bound(10, [-1])


@pytest.mark.parametrize(
    ("endpoint", "category"),
    [
        ("POST /api/fota/v1/upgrades", "create"),
        ("POST /api/fota/v2/campaigns/files/{account}", "create"),
        # the simulator and the client name path parameters differently
        ("GET /api/fota/v1/upgrades/{account}/upgrade/{upgrade_id}", "progress"),
        ("GET /api/fota/v1/upgrades/{account}/upgrade/{upgradeId}", "progress"),
        ("GET /api/fota/v2/reports/{account}/campaigns/{campaignId}/devices", "progress"),
        ("GET /api/fota/v1/reports/{account}/devices/{deviceId}", "reconcile"),
        ("GET /api/fota/v1/reports/{account}/status/{status}/index/{start}", "reconcile"),
        ("GET /api/fota/v1/firmware/{account}", "verify"),
        ("GET /api/fota/v1/devices/{account}/index/{start}", "resolve"),
        ("POST /api/fota/v1/callbacks/{account}", "subscribe"),
        ("POST /api/ts/v1/oauth2/token", "login"),
        ("POST /api/m2m/v1/session/login", "login"),
        ("GET /api/fota/v3/something", "other"),
    ],
)
def test_categorize_thingspace(endpoint: str, category: str) -> None:
    assert categorize_ts(endpoint) == category


def test_thingspace_bench_campaign_is_a_valid_spec(tmp_path: Path) -> None:
    ids = tmp_path / "imeis.txt"
    ids.write_text("351234560000002\n")
    spec = load_spec_text(bench_ts_spec_text("bench-ts", ids_file=ids))
    assert spec.platform.type == "thingspace"
    assert spec.policy.max_devices_per_task == 1000
