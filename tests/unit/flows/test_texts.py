"""What a person reads in Prefect: flow and parameter names, the approval form, the run log.

Plain functions, no Prefect server: the flow's parameter schema, ``describe_approval``,
``describe_decision``, ``RunLog`` and the clock refusal against a real platform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
import yaml

from fleetwave.engine.context import ApprovalReply, ApprovalRequest
from fleetwave.engine.decide import Counts, Decision, Verdict, evaluate_failure_threshold
from fleetwave.engine.progress import ProgressEvent
from fleetwave.errors import UserError
from fleetwave.platforms import PlatformRef
from fleetwave.sim.linked_clock import clock_from_option
from flows.approval import describe_approval, describe_counts, describe_decision
from flows.campaign import run_campaign
from flows.runlog import RunLog

ROOT = Path(__file__).resolve().parents[3]
T0 = pendulum.datetime(2026, 1, 5, 22, tz="UTC")


def test_the_flow_is_not_named_like_a_deployment() -> None:
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert run_campaign.name == "advance-campaign"
    assert run_campaign.name not in {d["name"] for d in deployments}


def test_every_flow_parameter_has_a_description_and_clock_is_a_choice() -> None:
    props = run_campaign.parameters.model_dump()["properties"]
    missing = [name for name, p in props.items() if not p.get("description")]
    assert not missing, f"parameters without a description in the UI: {missing}"
    assert props["clock"]["enum"][0] == "real" and "sim" in props["clock"]["enum"]
    assert "refused against a real platform" in " ".join(props["clock"]["description"].split())


def _req(**kw: Any) -> ApprovalRequest:
    base: dict[str, Any] = {
        "campaign": "meters",
        "wave": 1,
        "wave_name": "wave-2",
        "devices": 55,
        "reason": "wave requires approval",
        "summary": Counts(total=802, succeeded=5, skipped=52).as_dict(),
    }
    return ApprovalRequest(**{**base, **kw})


def test_the_approval_form_names_the_wave_once_and_counts_for_people() -> None:
    text = describe_approval(_req(), waves=4, windows="Mon-Fri 22:00-05:00 (Europe/Berlin)")
    assert text.startswith("Campaign **meters**: approve wave 2 of 4 (wave-2, 55 devices)?")
    assert text.count("wave-2") == 1
    assert "{" not in text and "'total'" not in text  # no dict repr
    assert "So far: 750 targeted: 5 succeeded, 0 failed, 0 timed out, 745 not finished; " in text
    assert "52 skipped (never sent)" in text
    assert "inside one of the campaign's windows, Mon-Fri 22:00-05:00 (Europe/Berlin)" in text


def test_the_approval_form_says_nothing_of_windows_a_campaign_lacks() -> None:
    text = describe_approval(_req(devices=1), waves=2, windows=None)
    assert "window" not in text
    assert "(wave-2, 1 device)?" in text
    assert "at least one hour" in text


def test_counts_text() -> None:
    assert describe_counts({"total": 3, "succeeded": 2, "failed": 1}) == (
        "3 targeted: 2 succeeded, 1 failed, 0 timed out"
    )


def test_the_decision_is_written_as_one_line() -> None:
    start = pendulum.datetime(2026, 1, 6, 22, tz="Europe/Berlin")
    reply = ApprovalReply(True, "prefect", "canary fine", start, start.add(hours=2))
    assert describe_decision(_req(), reply) == (
        "wave 2 (wave-2): the Prefect UI answered approve for 2026-01-06T21:00:00+00:00 .. "
        "2026-01-06T23:00:00+00:00: canary fine"
    )
    assert describe_decision(_req(), ApprovalReply(False, "prefect")) == (
        "wave 2 (wave-2): the Prefect UI answered reject"
    )


def _decision(counts: Counts) -> ProgressEvent:
    d = evaluate_failure_threshold(counts, max_failure_rate=0.05, min_finished=5, scope="wave 1")
    return ProgressEvent("decision", "c", T0, message=d.reason, detail=d.as_event())


def test_the_run_log_says_a_repeated_decision_once_and_a_change_again() -> None:
    lines: list[str] = []
    log = RunLog(lines.append)
    for finished in (10, 20, 30):  # 0.0% each round
        log(_decision(Counts(total=100, succeeded=finished)))
    log(_decision(Counts(total=100, succeeded=39, failed=1)))  # 2.5%: moved a point or more
    log(_decision(Counts(total=100, succeeded=44, failed=1)))  # 2.2%: less than a point
    log(ProgressEvent("submitted", "c", T0, message="wave 1 attempt 1: 1 task"))
    soak = "wave 1 soaking until 2026-01-06T00:00:00Z"
    for _ in range(3):
        log(ProgressEvent("round", "c", T0, message=soak))
    log(ProgressEvent("round", "c", T0))  # a plain monitoring round: the artifact shows it
    log(ProgressEvent("outcome", "c", T0, message="c: completed"))
    log(ProgressEvent("outcome", "c", T0, message="c: completed"))
    assert lines == [
        "failure rate 0.0% within 5.0% in wave 1",
        "failure rate 2.5% within 5.0% in wave 1",
        "wave 1 attempt 1: 1 task",
        soak,
        "campaign c: completed",
    ]
    assert log.outcome_logged


def test_other_decisions_are_not_swallowed_by_the_threshold_dedup() -> None:
    lines: list[str] = []
    log = RunLog(lines.append)
    for name in ("wave_gate", "after_gate"):
        d = Decision(name, Verdict.PROCEED, "wave 1 may start", {})
        log(ProgressEvent("decision", "c", T0, message=d.reason, detail=d.as_event()))
    assert lines == ["wave 1 may start", "wave 1 may start"]


@pytest.mark.parametrize("option", ["sim", "scaled:60", "manual"])
def test_simulated_clocks_are_refused_against_a_real_platform(
    option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IODM_PROD_BASE_URL", "https://iodm.example.com:8743")
    with pytest.raises(UserError) as exc:
        clock_from_option(option, platform=PlatformRef("iodm", "prod"))
    assert "is a real platform, not a simulator" in str(exc.value)
    assert "--clock real" in str(exc.value)
    clock_from_option("real", platform=PlatformRef("iodm", "prod"))  # real is fine


def test_a_scaled_clock_is_fine_against_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IODM_LAB_BASE_URL", "http://127.0.0.1:8743")
    clock = clock_from_option("scaled:60", platform=PlatformRef("iodm", "lab"))
    assert clock.now() > T0


def test_run_refuses_a_simulated_clock_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line (and JSON on stdout with --json), before a store is opened or a flow runs."""
    import json

    from typer.testing import CliRunner

    from fleetwave.cli import app

    monkeypatch.setenv("IODM_BASE_URL", "https://iodm.example.com:8743")
    monkeypatch.setenv("IODM_SECRET", "not-used")
    monkeypatch.setenv("FLEETWAVE_DB_URL", f"sqlite:///{tmp_path / 'none.db'}")
    campaign = tmp_path / "c.yaml"
    campaign.write_text(
        "name: c\nkind: firmware\n"
        'package: {version: "1.0", device_type: M, model: M, manufacturer_name: X}\n'
        "targets: {devices: [a]}\nwaves: [{percent: 100}]\n"
    )
    result = CliRunner().invoke(
        app, ["run", str(campaign), "--clock", "scaled:60", "--json", "--no-prefect"]
    )
    assert isinstance(result.exception, UserError)
    assert "is a real platform, not a simulator" in str(result.exception)
    assert json.loads(result.output)["kind"] == "user_error"
    assert not (tmp_path / "none.db").exists()  # nothing was opened or created
