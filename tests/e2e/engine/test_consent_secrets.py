"""Owners' tokens never reach a log, the event log or the database file in clear: a whole
app-delivered consent campaign, owners imported and tokens issued with the CLI, a seeded
owner population driving every operation of the API over real HTTP, logs captured at
DEBUG, then the raw SQLite file and the event log searched for every token."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from fleetwave import store
from fleetwave.cli import main
from fleetwave.clock import ManualClock
from fleetwave.consent.app import ConsentServer, create_consent_app
from fleetwave.engine.runner import OutcomeKind, advance
from fleetwave.platforms.memory import MemoryConfig, MemoryPlatform
from fleetwave.sim.owners import OwnerPopulation
from tests.e2e.engine.helpers import new_store, spec_of
from tests.e2e.engine.test_consent_campaign import APP


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(["-vv", *args])  # the CLI at its most verbose
    assert done.value.code in (0, None)
    return capsys.readouterr().out


async def test_tokens_never_reach_logs_events_or_the_database_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    def log_everything() -> None:
        # sqlalchemy at INFO logs every statement with its parameters; the capture
        # handler takes the level of the last call, so DEBUG comes last
        caplog.set_level(logging.INFO, logger="sqlalchemy")
        for name in ("fleetwave", "httpx", "httpcore", "uvicorn", None):
            caplog.set_level(logging.DEBUG, logger=name)

    log_everything()  # (the first call records the levels restored after the test)
    clock = ManualClock()
    platform = MemoryPlatform(MemoryConfig(devices=40, seed=3), clock=clock)
    path = tmp_path / "secrets.db"
    url = f"sqlite:///{path}"
    db = new_store(path)
    groups = [g async for g in platform.list_groups(name="meters-vienna")]
    devices = sorted([d async for d in platform.group_members(groups[0].group_id)])
    owners = {d: f"owner-{i % 3}" for i, d in enumerate(devices)}
    csv = tmp_path / "owners.csv"
    csv.write_text("device_id,owner_id\n" + "".join(f"{d},{o}\n" for d, o in owners.items()))
    _cli(["consent", "import-owners", str(csv), "--db", url], capsys)
    replaced = _cli(["consent", "token", "owner-0", "--db", url], capsys).strip()
    tokens = {
        o: _cli(["consent", "token", o, "--db", url], capsys).strip()
        for o in sorted(set(owners.values()))
    }
    log_everything()  # the CLI set its own levels
    secrets = [replaced, *tokens.values()]
    assert all(t.startswith("fwc_") and len(t) > 40 for t in secrets)

    spec = spec_of(APP)
    api_db = store.get_engine(url)
    server = ConsentServer(create_consent_app(engine=api_db, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    population = OwnerPopulation(server.url, owners=owners, tokens=tokens, seed=11)
    try:
        await population.switch_auto_on()
        await advance(spec, db=db, platform=platform, clock=clock, max_rounds=1)
        await population.answer(clock.now())
        last = None
        for _ in range(100):
            await population.run_apps()
            last = await advance(spec, db=db, platform=platform, clock=clock, max_rounds=3)
            if last.kind is OutcomeKind.COMPLETED:
                break
        assert last is not None and last.kind is OutcomeKind.COMPLETED, last
        # the operations the population does not use, and refused tokens
        device = devices[0]
        with httpx.Client(base_url=server.url, timeout=30) as c:
            auth = {"Authorization": f"Bearer {tokens[owners[device]]}"}
            got = c.get(
                "/enduserapi/getAutoUpgradeSwitch", params={"deviceId": device}, headers=auth
            )
            assert got.status_code == 200, got.text
            off = c.post("/enduserapi/deleteDeviceUpgrade", json={"deviceId": device}, headers=auth)
            assert off.status_code == 200, off.text
            for bad in (replaced, tokens["owner-1"] + "x", tokens["owner-2"][:-1]):
                resp = c.get(
                    "/enduserapi/v2/getDeviceUpgradePlan",
                    params={"deviceId": device},
                    headers={"Authorization": f"Bearer {bad}"},
                )
                assert resp.status_code == 401
                assert bad not in resp.text
    finally:
        server.stop()
        api_db.dispose()
    assert population.calls["reportUpgradeStatus"] > 0 and population.calls["getFetchPlan"] > 0

    with store.session_scope(db, read_only=True) as s:  # the whole event log
        events = store.recent_events(s, limit=1_000_000)
    db.dispose()
    logs = caplog.text + capsys.readouterr().err
    assert "consent.app_report" in {e.kind for e in events}
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)  # the capture works
    assert any(r.name.startswith("fleetwave") for r in caplog.records)
    event_text = json.dumps([(e.kind, e.subject, e.actor, e.data) for e in events], default=str)
    files = sorted(tmp_path.glob("secrets.db*"))
    blob = b"".join(f.read_bytes() for f in files)
    assert store.hash_token(tokens["owner-0"]).encode() in blob  # the file holds the hashes
    for token in secrets:
        body = token.removeprefix("fwc_")
        assert body not in logs
        assert body not in event_text
        assert body.encode() not in blob, [f.name for f in files]
