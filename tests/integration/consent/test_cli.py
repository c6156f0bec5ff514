"""``fleetwave consent import-owners | token | status`` on a real SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fleetwave import store
from fleetwave.cli import main
from fleetwave.serving import stop_process_group
from tests.integration.consent.conftest import seed


def test_import_token_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'fw.db'}"
    engine = store.get_engine(url)
    store.upgrade_schema(engine)
    seed(engine, platform_devices=["d1", "d2"], app_devices=[], owners={"d1": "x"})
    owners = tmp_path / "owners.csv"
    owners.write_text("device_id,owner_id\nd1,alice\nd2,bob\n")
    with pytest.raises(SystemExit) as done:
        main(["consent", "import-owners", str(owners), "--db", url])
    assert done.value.code in (0, None)
    assert "2 devices of 2 owners imported" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["consent", "token", "alice", "--db", url])
    token = capsys.readouterr().out.strip()
    with store.session_scope(engine, read_only=True) as s:
        assert store.owner_for_token(s, token=token) == "alice"
        assert store.device_owners(s, device_ids=["d1", "d2"]) == {"d1": "alice", "d2": "bob"}
    with pytest.raises(SystemExit):
        main(["consent", "status", "c-platform", "--db", url, "--json"])
    out = capsys.readouterr().out
    assert '"awaiting": 2' in out
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,owner_id\nd1,\n")
    with pytest.raises(SystemExit) as failed:
        main(["consent", "import-owners", str(bad), "--db", url])
    assert failed.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: owner_id of device d1 is missing" in err and "Traceback" not in err
    engine.dispose()


def test_serve_answers_over_http_and_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fw.db'}"
    engine = store.get_engine(url)
    store.upgrade_schema(engine)
    engine.dispose()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetwave", "consent", "serve", "--port", "0", "--db", url],
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("consent API on http://127.0.0.1:"), line
        base = line.split()[3]
        assert httpx.get(f"{base}/openapi.json", timeout=30).status_code == 200
        resp = httpx.get(f"{base}/enduserapi/getAutoUpgradeSwitch?deviceId=x", timeout=30)
        assert resp.status_code == 401
    finally:
        stop_process_group(proc)
    assert proc.returncode is not None
