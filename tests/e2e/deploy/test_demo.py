"""``python -m fleetwave.demo`` (what ``make demo`` runs), on a smaller fleet: both campaigns
end as the demo promises, the reports and charts are there, and nothing lands on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_demo_runs_both_campaigns_without_noise(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IODM_"))}
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
    for name in ("demo-meters-firmware", "demo-flaky-rollback"):
        chart = workdir / f"{name}.png"
        assert f"chart: {chart}" in out
        assert chart.read_bytes()[:4] == b"\x89PNG"
