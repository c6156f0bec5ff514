"""flows/artifacts.py against the real local Prefect server: what the UI will show."""

from __future__ import annotations

import pendulum
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from fleetwave.report import CampaignReport, Totals, WaveReport
from flows.artifacts import (
    ProgressArtifact,
    artifact_key,
    progress_description,
    progress_percent,
    publish_report,
    publish_report_sync,
    wave_table,
)

T0 = pendulum.datetime(2026, 1, 5, 22, 0, 0, 123456, tz="UTC")  # microseconds never shown


def _report(name: str) -> CampaignReport:
    return CampaignReport(
        name=name,
        status="completed",
        kind="firmware",
        totals=Totals(30, 28, 2),
        waves=(
            WaveReport(0, "canary", "succeeded", Totals(10, 10), chunks=1, started_at=T0),
            WaveReport(1, "wave-2", "succeeded", Totals(20, 18, 2), chunks=1),
        ),
    )


def test_artifact_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("Nightly_Meters FW 1.5.0", "summary") == "nightly-meters-fw-1-5-0-summary"
    assert artifact_key("___", "progress") == "campaign-progress"
    assert len(artifact_key("x" * 300, "summary")) <= 100


def test_progress_percent_and_text_count_the_targeted_devices() -> None:
    assert progress_percent(Totals()) == 0.0
    # 25 skipped were never sent: 75 finished of 175 targeted
    assert progress_percent(Totals(devices=200, succeeded=50, failed=25, skipped=25)) == (
        100 * 75 / 175
    )
    assert progress_percent(Totals(devices=5, skipped=5)) == 100.0
    text = progress_description("c", Totals(devices=802, succeeded=700, failed=50, skipped=52))
    assert (
        text == "c (rollout): 700 succeeded, 50 failed, 0 in progress, 0 pending of 750 targeted "
        "(52 skipped)"
    )


def test_wave_table_headers_and_times_are_for_people() -> None:
    rows = wave_table(_report("t"))
    assert list(rows[0]) == [
        "#", "Wave", "Status", "Devices", "Tasks", "Succeeded", "Failed", "In progress",
        "Pending", "Skipped", "Cancelled", "Failure rate", "Started (UTC)", "Finished (UTC)",
    ]  # fmt: skip
    assert rows[0]["#"] == "1" and rows[1]["#"] == "2"
    assert rows[0]["Started (UTC)"] == "2026-01-05 22:00:00"
    assert rows[1]["Started (UTC)"] == ""


def _artifacts(flow_run_id: object) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.type or "": a for a in found}


async def test_async_flow_publishes_summary_table_and_progress(prefect_server: str) -> None:
    @flow
    async def demo_campaign() -> str:
        from prefect.runtime import flow_run

        progress = ProgressArtifact("async-demo")
        first = await progress.update(Totals(devices=30, succeeded=10, in_progress=20))
        same = await progress.update(Totals(devices=30, succeeded=10, in_progress=20))
        assert first is not None and same == first  # unchanged: no API call, same artifact
        await progress.update(Totals(devices=30, succeeded=28, failed=2), phase="rollout")
        await publish_report(_report("async-demo"))
        return str(flow_run.id)

    run_id = await demo_campaign()
    found = _artifacts(run_id)
    assert set(found) == {"markdown", "table", "progress"}
    summary = found["markdown"]
    assert summary.key == "async-demo-summary"  # type: ignore[attr-defined]
    assert "# Campaign `async-demo`: completed" in summary.data  # type: ignore[attr-defined]
    progress = found["progress"]
    assert progress.data == 100.0  # type: ignore[attr-defined]
    assert "28 succeeded, 2 failed" in progress.description  # type: ignore[attr-defined]
    assert '"Wave": "wave-2"' in found["table"].data  # type: ignore[attr-defined]


def test_sync_flow_publishes_the_same(prefect_server: str) -> None:
    @flow
    def sync_campaign() -> str:
        from prefect.runtime import flow_run

        progress = ProgressArtifact("sync-demo", phase="rollback")
        progress.update_sync(Totals(devices=4, succeeded=1, in_progress=3))
        progress.update_sync(Totals(devices=4, succeeded=2, failed=1, in_progress=1))
        publish_report_sync(_report("sync-demo"))
        return str(flow_run.id)

    run_id = sync_campaign()
    found = _artifacts(run_id)
    assert set(found) == {"markdown", "table", "progress"}
    assert found["progress"].data == 75.0  # type: ignore[attr-defined]
    assert "sync-demo (rollback)" in found["progress"].description  # type: ignore[attr-defined]


async def test_engine_progress_events_drive_the_progress_artifact(prefect_server: str) -> None:
    from fleetwave.engine.progress import ProgressEvent, WaveProgress

    def event(kind: str, ok: int, bad: int, flight: int, phase: str = "upgrade") -> ProgressEvent:
        waves = (
            WaveProgress(0, "canary", 10, succeeded=min(ok, 10)),
            WaveProgress(1, "wave-2", 30, succeeded=max(ok - 10, 0), failed=bad, in_flight=flight,
                         pending=30 - max(ok - 10, 0) - bad - flight),
        )  # fmt: skip
        return ProgressEvent(kind, "sink-demo", T0, phase=phase, waves=waves)

    @flow
    async def sink_campaign() -> str:
        from prefect.runtime import flow_run

        progress = ProgressArtifact("sink-demo")
        progress.sink(event("stage", 0, 0, 0))  # not a round: ignored
        assert progress.artifact_id is None
        progress.sink(event("round", 10, 0, 20))
        progress.sink(event("round", 30, 5, 5))
        progress.sink(event("outcome", 35, 5, 0))
        return str(flow_run.id)

    found = _artifacts(await sink_campaign())
    assert found["progress"].data == 100.0  # type: ignore[attr-defined]
    assert (
        "35 succeeded, 5 failed, 0 in progress, 0 pending of 40 targeted"
        in found["progress"].description
    )  # type: ignore[attr-defined]
