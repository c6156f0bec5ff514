"""``fleetwave db upgrade|current`` and ``fleetwave status [NAME] [--json]`` on real databases."""

from __future__ import annotations

import json
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
    assert len(c["events"]) == 3 and c["events"][0]["kind"] == "wave_status"
    res = runner.invoke(app, ["status", "meters-fw", "--db", url])
    assert res.exit_code == 0
    assert "meters-fw: running" in res.output and "canary" in res.output
    assert "failed 1, skipped 1" in res.output
    res = runner.invoke(app, ["status", "--db", url])
    assert "meters-fw" in res.output and "other" in res.output


def test_db_upgrade_current_and_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(store.DB_URL_ENV, raising=False)
    # no database yet: status and current refuse with a hint, and create nothing
    for argv in (["status"], ["db", "current"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "fleetwave db upgrade" in err
    assert not (tmp_path / ".fleetwave").exists()
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0 and "upgraded from empty to schema revision" in res.output
    assert (tmp_path / ".fleetwave" / "fleetwave.db").is_file()
    res = runner.invoke(app, ["db", "upgrade"])
    assert "already at schema revision" in res.output
    res = runner.invoke(app, ["db", "current"])
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
