"""``fleetwave db upgrade|current`` and ``fleetwave status [NAME] [--json]`` on real databases."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwave import store
from fleetwave.cli import app, main
from fleetwave.store import CampaignStatus, DeviceResult, DeviceRunStatus, WavePlan, WaveStatus
from tests.integration.store.conftest import NOW, TestDB

runner = CliRunner()


def _pg_url(db: TestDB) -> str:
    # the CLI reaches a test schema through libpq's options in the URL
    return f"{db.url}?options=-csearch_path%3D{db.schema}" if db.schema else db.url


def _seed(db: TestDB) -> None:
    with store.session_scope(db.engine) as s:
        c = store.create_or_get_campaign(s, name="meters-fw", spec={"x": 1}, now=NOW)
        assert c.id is not None
        store.create_waves(
            s, campaign_id=c.id, waves=[WavePlan(0, "canary", 2), WavePlan(1, "rest", 3)], now=NOW
        )
        store.add_device_runs(
            s, campaign_id=c.id, devices=[(f"m{i}", 0 if i < 2 else 1) for i in range(5)], now=NOW
        )
        store.set_campaign_status(s, campaign_id=c.id, status=CampaignStatus.RUNNING, now=NOW)
        store.set_wave_status(s, campaign_id=c.id, index=0, status=WaveStatus.RUNNING, now=NOW)
        store.set_device_status(
            s, campaign_id=c.id, status=DeviceRunStatus.SKIPPED, device_ids=["m0"], now=NOW
        )
        chunk = store.create_chunk_intent(
            s,
            campaign_id=c.id,
            wave_index=0,
            round=0,
            seq=0,
            kind=store.ChunkKind.UPGRADE,
            package_kind="firmware",
            file_id="f",
            policy={},
            device_ids=["m1"],
            now=NOW,
        )
        assert chunk.id is not None
        store.record_operation_id(s, chunk_id=chunk.id, operation_id="op", now=NOW)
        store.record_device_results(
            s,
            campaign_id=c.id,
            results=[DeviceResult("m1", DeviceRunStatus.FAILED, "install_failed")],
            now=NOW,
        )
        store.create_or_get_campaign(s, name="other", spec={}, now=NOW)


def test_status_json_and_tables(db: TestDB) -> None:
    _seed(db)
    url = _pg_url(db)
    res = runner.invoke(app, ["status", "--json", "--db", url])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [c["name"] for c in doc["campaigns"]] == ["meters-fw", "other"]
    res = runner.invoke(app, ["status", "meters-fw", "--json", "--events", "3", "--db", url])
    (c,) = json.loads(res.output)["campaigns"]
    assert c["status"] == "running" and c["counts"] == {"failed": 1, "pending": 3, "skipped": 1}
    assert [(w["name"], w["status"], w["counts"]) for w in c["waves"]] == [
        ("canary", "running", {"failed": 1, "skipped": 1}),
        ("rest", "pending", {"pending": 3}),
    ]
    # the last 3 events, oldest first (as `report` lists them)
    assert len(c["events"]) == 3 and c["events"][-1]["kind"] == "wave_status"
    assert [e["at"] for e in c["events"]] == sorted(e["at"] for e in c["events"])
    assert [w["number"] for w in c["waves"]] == [1, 2]
    res = runner.invoke(app, ["status", "meters-fw", "--db", url])
    assert res.exit_code == 0
    assert "meters-fw: running" in res.output and "canary" in res.output
    assert "failed 1, skipped 1" in res.output
    res = runner.invoke(app, ["status", "--db", url])
    assert "meters-fw" in res.output and "other" in res.output
    # skipped devices were never sent: said apart from the targeted ones
    assert "4 targeted (failed 1, pending 3), 1 skipped" in res.output


def test_status_never_cuts_a_long_campaign_name(db: TestDB) -> None:
    """Other commands take NAME: the table shows it whole even in 80 columns."""
    name = "nightly-water-meters-wm200-firmware-1-5-0-berlin-district-" + "x" * 30
    with store.session_scope(db.engine) as s:
        store.create_or_get_campaign(s, name=name, spec={}, now=NOW)
    res = CliRunner().invoke(app, ["status", "--db", _pg_url(db)], terminal_width=80)
    assert res.exit_code == 0, res.output
    assert name in res.output


def test_db_upgrade_current_and_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(store.DB_URL_ENV, raising=False)
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path / "home"))
    db_file = tmp_path / "home" / "fleetwave.db"
    # no database yet: status and current refuse with a hint and the path, and create nothing
    for argv in (["status"], ["db", "current"], ["report", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "fleetwave db upgrade" in err
        assert f"no fleetwave store at {db_file} (FLEETWAVE_HOME)" in err
    assert list(tmp_path.iterdir()) == []
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0 and "upgraded from empty to schema revision" in res.output
    assert db_file.is_file()
    res = runner.invoke(app, ["db", "upgrade"])
    assert "already at schema revision" in res.output
    res = runner.invoke(app, ["db", "current"])
    assert res.output.startswith(f"sqlite:///{db_file} (FLEETWAVE_HOME): revision ")
    assert "up to date" in res.output
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 0 and "no campaigns" in res.output
    # a campaign name that does not exist
    with pytest.raises(SystemExit) as exit_:
        main(["status", "nope"])
    assert exit_.value.code == 2 and "no campaign named 'nope'" in capsys.readouterr().err


def test_status_refuses_out_of_date_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store.get_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    engine.dispose()
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--db", url])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "schema revision none" in err and "run `fleetwave db upgrade`" in err


# --------------------------------------------------------------------------------------
# database errors: one line each (exit 2), naming the path, never a traceback
# --------------------------------------------------------------------------------------

CAMPAIGN = """
name: db-errors
kind: firmware
package: {version: "2.0", device_type: WaterMeter, model: WM-1, manufacturer_name: Acme}
targets: {devices: [d1, d2]}
waves: [{percent: 100}]
"""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``fleetwave ARGV`` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def _one_error_line(err: str, *expected: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, err


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN)
    return path


@pytest.mark.parametrize(
    "argv",
    [["status"], ["db", "current"], ["db", "upgrade"], ["report", "x"], ["run", "{campaign}"]],
)
def test_a_sqlite_url_with_two_slashes_is_one_line(
    argv: list[str],
    campaign: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(store.DB_URL_ENV, "sqlite://x.db")
    code, _, err = _cli([a.format(campaign=campaign) for a in argv], capsys)
    assert code == 2
    _one_error_line(err, "sqlite://x.db is not a valid SQLite URL", f"sqlite:///{tmp_path}/x.db")
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["run", "{campaign}", "--new-store"]])
def test_a_directory_that_cannot_be_created_is_one_line(
    argv: list[str],
    campaign: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv(store.DB_URL_ENV, f"sqlite:///{tmp_path}/a-file/sub/fw.db")
    code, _, err = _cli([a.format(campaign=campaign) for a in argv], capsys)
    assert code == 2
    _one_error_line(err, f"cannot create the directory {tmp_path}/a-file/sub", "Not a directory")


@pytest.mark.parametrize(
    "argv",
    [["status"], ["db", "current"], ["db", "upgrade"], ["report", "x"], ["run", "{campaign}"]],
)
def test_a_file_that_is_not_a_database_is_one_line(
    argv: list[str],
    campaign: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("these are my notes, not a database\n" * 100)
    monkeypatch.setenv(store.DB_URL_ENV, f"sqlite:///{junk}")
    code, _, err = _cli([a.format(campaign=campaign) for a in argv], capsys)
    assert code == 2
    _one_error_line(err, f"{junk} is not a fleetwave store: file is not a database")
    assert junk.read_text().startswith("these are my notes")


def test_status_refuses_an_in_memory_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(store.DB_URL_ENV, "sqlite://")
    code, _, err = _cli(["status"], capsys)
    assert code == 2
    _one_error_line(err, "sqlite:// (FLEETWAVE_DB_URL) is an in-memory database")


@contextmanager
def _read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` read-only even for root: ``chattr +i`` (root ignores mode bits); as
    another user, mode bits do. Skips where neither is possible."""
    done: list[tuple[Path, int | None]] = []
    try:
        for path in paths:
            if os.geteuid() == 0:
                res = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
                if res.returncode != 0:
                    pytest.skip(f"root cannot make {path} read-only here: {res.stderr.strip()}")
                done.append((path, None))
            else:
                mode = path.stat().st_mode
                path.chmod(0o555 if path.is_dir() else 0o444)
                done.append((path, mode))
        yield
    finally:
        for path, mode in reversed(done):
            if mode is None:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(mode)


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    """A store with one campaign, closed cleanly (no -wal/-shm left) in its own directory."""
    path = tmp_path / "store" / "fw.db"
    url = f"sqlite:///{path}"
    engine = store.get_engine(url)
    store.upgrade_schema(engine)
    _seed(TestDB("sqlite", url, None, engine))
    engine.dispose()
    assert sorted(p.name for p in path.parent.iterdir()) == ["fw.db"]
    return path


@pytest.mark.parametrize("what", ["file", "directory", "both"])
def test_read_only_store_reads_and_refuses_writes_in_one_line(
    what: str,
    seeded: Path,
    campaign: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(store.DB_URL_ENV, f"sqlite:///{seeded}")
    paths = {"file": [seeded], "directory": [seeded.parent], "both": [seeded, seeded.parent]}
    with _read_only(*paths[what]):
        # the read-only commands work on it as it is
        code, out, err = _cli(["status", "--json"], capsys)
        assert code == 0, err
        assert [c["name"] for c in json.loads(out)["campaigns"]] == ["meters-fw", "other"]
        code, out, err = _cli(["report", "meters-fw", "--json"], capsys)
        assert code == 0, err
        assert json.loads(out)["name"] == "meters-fw"
        code, out, err = _cli(["db", "current"], capsys)
        assert code == 0 and "up to date" in out, err
        # a run must write: refused in one line that says read-only and where
        code, _, err = _cli(["run", str(campaign)], capsys)
        assert code == 2
        where = f"the directory {seeded.parent}" if what == "directory" else str(seeded)
        _one_error_line(err, "read-only", where)
        assert "server is running" not in err
