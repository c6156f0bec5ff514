"""``fleetwave plan`` against a real simulator over HTTP: the three example campaigns plan,
and the platform sees nothing but reads (checked with /sim/stats)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwave.cli import main
from fleetwave.sim.testing import SimHandle, run_simulator, run_thingspace_simulator

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (ROOT / "campaigns").glob("*.yaml") if "thingspace" not in p.name)
TS_EXAMPLES = sorted((ROOT / "campaigns").glob("thingspace-*.yaml"))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_simulator(rate_limit=0) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _env(sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IODM_BASE_URL", sim.base_url)
    monkeypatch.setenv("IODM_APP_ID", sim.app_id)
    monkeypatch.setenv("IODM_SECRET", sim.secret)
    monkeypatch.setenv("IODM_RATE_LIMIT", "0")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, out, err


def _writes(stats: dict) -> dict[str, dict[str, int]]:
    """Calls that are not reads; the login POST only fetches a token."""
    return {
        endpoint: codes
        for endpoint, codes in stats["calls"].items()
        if not endpoint.startswith("GET ") and "/sec/" not in endpoint
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_plans_read_only(
    path: Path, sim: SimHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sim.stats()
    code, out, err = _run(capsys, "plan", str(path), "--json", "--at", "2026-03-27T12:00:00Z")
    assert code == 0, err
    data = json.loads(out)
    t = data["targets"]
    assert t["eligible"] > 0
    assert sum(w["devices"] for w in data["waves"]) == t["eligible"]
    assert sum(g["eligible"] for g in t["groups"]) == t["eligible"]
    assert data["chunks"] == sum(w["chunks"] for w in data["waves"])
    assert data["chunks"] >= -(-t["eligible"] // data["max_devices_per_task"])
    assert data["package"]["file_id"]
    assert data["platform"] == {"type": "iodm", "profile": "default"}
    assert data["estimate"]["create_calls"] == data["chunks"]
    assert data["estimate"]["total_calls"] > data["chunks"]
    if not data["windows"]["always_open"]:
        assert data["windows"]["next"], "an example with windows must show the next ones"
        first = data["windows"]["next"][0]
        assert first["opens_utc"].endswith("Z")
    after = sim.stats()
    assert _writes(after) == _writes(before) == {}
    assert after["tasks"] == [] and after["device_task_counts"] == {}


def test_plan_is_deterministic(sim: SimHandle, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for _ in range(2):
        code, out, _ = _run(
            capsys, "plan", str(EXAMPLES[0]), "--json", "--at", "2026-03-27T12:00:00Z"
        )
        assert code == 0
        data = json.loads(out)
        data.pop("calls_made")
        runs.append(data)
    assert runs[0] == runs[1]


def test_nightly_example_details(sim: SimHandle, capsys: pytest.CaptureFixture[str]) -> None:
    nightly = ROOT / "campaigns" / "nightly-meters-firmware.yaml"
    code, out, _ = _run(capsys, "plan", str(nightly), "--json", "--at", "2026-03-27T12:00:00Z")
    assert code == 0
    data = json.loads(out)
    assert data["package"]["version"] == "1.5.0"
    assert data["waves"][0]["devices"] == 20
    # the default fleet has devices already on 1.5.0 and some not ONLINE
    assert data["targets"]["skipped"].get("up_to_date", 0) > 0
    assert data["targets"]["skipped"].get("connectivity", 0) > 0
    nxt = data["windows"]["next"][0]
    # Friday 22:00 in Berlin (CET) is 21:00 UTC; the night crosses into Saturday
    assert nxt["opens_local"] == "2026-03-27T22:00:00+01:00"
    assert nxt["opens_utc"] == "2026-03-27T21:00:00Z"
    assert nxt["closes_utc"] == "2026-03-28T04:00:00Z"


def test_plan_table_output(sim: SimHandle, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "campaigns" / "trackers-group-rollback.yaml"
    code, out, _ = _run(capsys, "plan", str(path), "--at", "2026-03-28T06:00:00Z")
    assert code == 0
    for text in (
        "rollback TRK-9-fw-0.9.8",
        "Waves",
        "Next windows (America/New_York)",
        "estimate",
        "read-only API calls",
        "open",
    ):
        assert text in out


def test_plan_errors_are_one_line(
    sim: SimHandle, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: t\nkind: firmware\npackage: {version: '1.5.0', model: WM-200}\n"
        "targets: {groups: [{name: meters-berln}]}\nwaves: [{percent: 100}]\n"
    )
    code, _out, err = _run(capsys, "plan", str(camp))
    assert code == 2
    assert err.strip().splitlines() == [
        "error: targets.groups[0].name: no device group named 'meters-berln' on platform "
        "iodm (did you mean 'meters-berlin'?)"
    ]

    camp.write_text(camp.read_text().replace("1.5.0", "9.9.9"))
    code, _, err = _run(capsys, "plan", str(camp))
    assert code == 2 and "no firmware package matches version 9.9.9" in err

    camp.write_text("name: t\nkind: firmware\n")
    code, _, err = _run(capsys, "plan", str(camp))
    assert code == 2
    assert f"{camp}:1:1: missing required key 'package'" in err
    assert "Traceback" not in err


def test_plan_checks_the_platform_limits_first(
    sim: SimHandle, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Limits the platform cannot meet: every one at its FILE:LINE:COL, exit 2, before
    any call to the platform."""
    camp = tmp_path / "c.yaml"
    camp.write_text(
        "name: t\n"
        "kind: firmware\n"
        "platform: {type: iodm, profile: default}\n"
        "package: {version: '1.5.0', model: WM-200}\n"
        "targets: {groups: [{name: meters-berlin}]}\n"
        "waves: [{percent: 100}]\n"
        "policy: {max_devices_per_task: 300}\n"
        "windows:\n"
        "  allowed: [{start: '22:00', end: '22:04'}]\n"
    )
    before = sim.stats()["calls"]
    code, _out, err = _run(capsys, "plan", str(camp))
    assert code == 2
    assert err.strip().splitlines() == [
        f"{camp}:7:32: policy.max_devices_per_task: 300 is above the largest task of platform "
        "iodm (256 devices); use 256 or less, or leave it out",
        f"{camp}:9:35: windows.allowed[0].end: the window 22:00-22:04 lasts 4m; platform iodm "
        "rejects windows under 5m",
    ]
    assert sim.stats()["calls"] == before

    camp.write_text(
        camp.read_text()
        .replace("policy: {max_devices_per_task: 300}\n", "")
        .replace("22:04", "23:00")
    )
    code, out, _ = _run(capsys, "plan", str(camp), "--json", "--at", "2026-03-27T12:00:00Z")
    assert code == 0
    assert json.loads(out)["max_devices_per_task"] == 256  # the platform's largest task


@pytest.mark.parametrize("path", TS_EXAMPLES, ids=[p.stem for p in TS_EXAMPLES])
def test_thingspace_example_plans_read_only(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_thingspace_simulator(rate_limit=0) as ts:  # the fleet of the IMEI list
        for name, value in {
            "BASE_URL": ts.base_url,
            "KEY": ts.client_key,
            "SECRET": ts.client_secret,
            "USERNAME": ts.username,
            "PASSWORD": ts.password,
            "ACCOUNT_NAME": ts.account,
            "RATE_LIMIT": "0",
        }.items():
            monkeypatch.setenv(f"THINGSPACE_{name}", value)
        code, out, err = _run(capsys, "plan", str(path), "--json", "--at", "2026-03-27T02:00:00Z")
        assert code == 0, err
        data = json.loads(out)
        assert data["platform"] == {"type": "thingspace", "profile": "default"}
        assert data["targets"]["eligible"] > 150
        assert data["estimate"]["create_calls"] == data["chunks"]
        windows = [] if data["windows"]["always_open"] else data["windows"]["next"]
        assert bool(windows) == ("config" in path.name)
        for w in windows:  # the file campaign's nightly 01:00-04:00 UTC, installing 02-05
            assert w["sent_as"] == (
                f"on {w['opens_utc'][:10]}, download 01:00-04:00 UTC, install 02:00-05:00 UTC"
            ), w
        stats = ts.stats()
        writes = {
            e: c
            for e, c in stats["calls"].items()
            if not e.startswith("GET ") and "/oauth2/" not in e and "/session/" not in e
        }
        assert writes == {} and stats["requests_total"] == 0
