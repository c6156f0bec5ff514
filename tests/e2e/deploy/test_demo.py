"""``python -m fleetwave.demo`` (what ``make demo`` runs), on a smaller fleet: the four
campaigns (IoDM completed and rolled back, consent, ThingSpace) end as the demo promises, the
reports and charts are there, and nothing lands on stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_demo_runs_its_campaigns_without_noise(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    ours = ("PREFECT_", "IODM_", "THINGSPACE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.pop("FLEETWAVE_DB_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "fleetwave.demo", "--devices", "1000", "--workdir", str(workdir)],
        cwd=tmp_path,  # the demo must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr
    out = proc.stdout
    assert "Traceback" not in out and "ERROR" not in out
    assert "# Campaign `demo-meters-firmware`: completed" in out
    assert "# Campaign `demo-flaky-rollback`: rolled_back" in out
    assert "- threshold tripped: failure rate" in out
    assert "canary (rollback)" in out
    # the consent campaign: owners answered over HTTP; consent is reported apart from failures
    assert "# Campaign `demo-consent-trackers`: completed" in out
    answers = re.search(
        r"owners answered over HTTP: (\d+) appoint, (\d+) cancel, (\d+) confirm; "
        r"(\d+) had auto-confirm on; (\d+) silent",
        out,
    )
    assert answers is not None, out
    appoint, cancel, confirm, auto, silent = map(int, answers.groups())
    assert min(appoint, cancel, confirm, auto, silent) > 0, answers.group(0)
    consent = re.search(
        r"- consent \(apart from outcomes\): awaiting 0, confirmed (\d+), appointed (\d+), "
        r"declined (\d+), expired (\d+), auto (\d+)",
        out,
    )
    assert consent is not None, out
    confirmed, appointed, declined, expired, auto_state = map(int, consent.groups())
    # answers are given for devices in the plan; a device skipped at planning is in none
    assert (confirmed, appointed, declined) == (confirm, appoint, cancel)
    assert 0 < expired <= silent and 0 < auto_state <= auto
    assert "consent_expired" in out and "on_timeout=skip" in out
    # the ThingSpace campaign, on its own simulator
    assert "ThingSpace simulator: https://" in out or "ThingSpace simulator: http://" in out
    assert "# Campaign `demo-thingspace-meters`: completed" in out
    for name, status in (
        ("demo-meters-firmware", "completed"),
        ("demo-flaky-rollback", "rolled_back"),
        ("demo-consent-trackers", "completed"),
        ("demo-thingspace-meters", "completed"),
    ):
        assert f"  {name}: {status}\n" in out
    for name in (
        "demo-meters-firmware",
        "demo-flaky-rollback",
        "demo-consent-trackers",
        "demo-thingspace-meters",
    ):
        chart = workdir / f"{name}.png"
        assert f"chart: {chart}" in out
        assert chart.read_bytes()[:4] == b"\x89PNG"
