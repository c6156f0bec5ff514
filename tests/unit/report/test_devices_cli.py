"""``fleetwave devices`` and ``fleetwave tasks`` through the real CLI against a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwave import store
from fleetwave.cli import app
from fleetwave.errors import UserError
from fleetwave.store import DeviceRunStatus
from tests.unit.report.test_report import _fill


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'fw.db'}"
    engine = store.get_engine(url)
    try:
        store.upgrade_schema(engine)
        with store.session_scope(engine) as session:
            _fill(session)
            cid = store.get_campaign(session, name="flaky").id
            upgrade = store.list_chunks(session, campaign_id=cid, kind=store.ChunkKind.UPGRADE)[0]
            for device in ("d3", "d4", "d5"):  # the failed ones point at their task
                row = store.get_device_run(session, campaign_id=cid, device_id=device)
                assert row is not None
                row.chunk_id = upgrade.id
                row.attempt = 2
                session.add(row)
    finally:
        engine.dispose()
    return url


def _run(*args: str) -> tuple[int, str]:
    """The exit code and output, a UserError as ``fleetwave.cli.main`` prints it."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, UserError):
        return result.exception.exit_code, result.output + f"error: {result.exception}\n"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_devices_lists_every_device_with_wave_from_1(db_url: str) -> None:
    code, out = _run("devices", "flaky", "--db", db_url)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["DEVICE", "WAVE", "STATUS", "ATTEMPTS", "OPERATION", "RESULT"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert sorted(rows) == [f"d{i}" for i in range(10)]
    assert rows["d3"][:5] == ["d3", "1", "failed", "2", "op-1"]
    assert rows["d3"][5:] == ["fail"]
    assert rows["d7"][:3] == ["d7", "2", "cancelled"]
    assert lines[-1] == "(10 devices)"


def test_devices_filters_by_status_and_wave_as_json(db_url: str) -> None:
    code, out = _run(
        "devices", "flaky", "--db", db_url, "--json", "--status", "failed,timed-out", "--wave", "1"
    )
    assert code == 0, out
    data = json.loads(out)
    assert [d["device"] for d in data] == ["d3", "d4", "d5"]
    assert {d["wave"] for d in data} == {1}
    assert data[0]["operation_id"] == "op-1"
    assert data[0]["attempts"] == 2
    assert data[2]["status"] == "timed_out"

    code, out = _run("devices", "flaky", "--db", db_url, "--json", "--wave", "2")
    assert [d["status"] for d in json.loads(out)] == ["cancelled"] * 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wave", "3"], "--wave 3: there is no wave 3"),
        (["--wave", "0"], "waves count from 1"),
        (["--status", "broken"], "--status 'broken' is not a device status"),
    ],
)
def test_devices_bad_options_are_one_line(db_url: str, args: list[str], message: str) -> None:
    code, out = _run("devices", "flaky", "--db", db_url, *args)
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_devices_unknown_campaign_names_the_known_ones(db_url: str) -> None:
    code, out = _run("devices", "nope", "--db", db_url)
    assert code == 2
    assert "no campaign named 'nope'" in out and "flaky" in out


def test_tasks_lists_chunks_oldest_first(db_url: str) -> None:
    code, out = _run("tasks", "flaky", "--db", db_url)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1].split()[:6] == ["1", "upgrade", "0", "6", "finished", "op-1"]
    assert lines[2].split()[:6] == ["1", "rollback", "0", "3", "finished", "op-2"]
    assert lines[-1] == "(2 tasks)"
    code, out = _run("tasks", "flaky", "--db", db_url, "--json")
    data = json.loads(out)
    assert [(t["kind"], t["operation_id"], t["devices"]) for t in data] == [
        ("upgrade", "op-1", 6),
        ("rollback", "op-2", 3),
    ]
    assert data[0]["finished_at"] == "2026-01-05T22:20:00+00:00"


def test_device_listing_streams_in_batches(db_url: str) -> None:
    """Keyset batches smaller than the campaign still give every device once, in order."""
    engine = store.get_engine(db_url)
    try:
        with store.session_scope(engine, read_only=True) as session:
            cid = store.get_campaign(session, name="flaky").id
            assert cid is not None
            rows = list(store.iter_device_listing(session, campaign_id=cid, batch_size=3))
            failed = list(
                store.iter_device_listing(
                    session,
                    campaign_id=cid,
                    statuses=[DeviceRunStatus.FAILED],
                    batch_size=1,
                )
            )
            tasks = list(store.iter_task_listing(session, campaign_id=cid, batch_size=1))
    finally:
        engine.dispose()
    assert [r.device_id for r in rows] == [f"d{i}" for i in range(10)]
    assert [r.device_id for r in failed] == ["d3", "d4"]
    assert [t.operation_id for t in tasks] == ["op-1", "op-2"]
