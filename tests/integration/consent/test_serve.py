"""The consent API a run serves (:class:`ConsentApiService`) over real sockets and HTTP: it
serves the store, a second run on the same store and port reuses it (and serves it itself
once the first stops), and a port taken by another store's API or by anything else is one
clear error."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from fleetwave import store
from fleetwave.consent.serve import ConsentApiService
from fleetwave.consent.settings import ConsentServeSettings
from fleetwave.errors import UserError
from tests.integration.consent.conftest import NOW, seed

LOG = "tests.consent.serve"


def _service(engine: Engine, port: int, **kw: float) -> ConsentApiService:
    return ConsentApiService(
        engine,
        now=lambda: NOW,
        settings=ConsentServeSettings(port=port),
        logger=logging.getLogger(LOG),
        **kw,
    )


def _auto_switch(url: str, token: str) -> bool:
    """An authenticated call that reads the store: dev-a4's auto-confirm switch."""
    resp = httpx.get(
        f"{url}/enduserapi/getAutoUpgradeSwitch",
        params={"deviceId": "dev-a4"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return bool(resp.json()["data"]["enabled"])


def test_serves_reuses_and_takes_over(db_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    _, tokens = seed(
        db_engine,
        platform_devices=["dev-a4"],
        app_devices=[],
        owners={"dev-a4": "alice"},
        auto=("dev-a4",),
    )
    caplog.set_level(logging.INFO, logger=LOG)
    first = _service(db_engine, 0).start()
    second: ConsentApiService | None = None
    try:
        assert first.serving and not first.reused and first.url
        port = int(first.url.rsplit(":", 1)[1])
        health = httpx.get(f"{first.url}/health", timeout=10).json()
        assert health["service"] == "fleetwave-consent-api"
        assert health["store"] == store.store_fingerprint(db_engine)
        assert str(db_engine.url.database) not in str(health)  # a hash, never the URL
        assert _auto_switch(first.url, tokens["alice"]) is True

        second = _service(db_engine, port, recheck=0.2).start()
        assert second.reused and not second.serving and second.url == first.url
        reuse_lines = [r.getMessage() for r in caplog.records if "reusing" in r.getMessage()]
        assert reuse_lines == [
            f"end-user consent API: reusing the one already serving this store on "
            f"{first.url} (fleetwave 0.1.0, another run or `fleetwave consent serve`)"
        ]
        # the first run ends: the second serves the store on the same address itself
        first.stop()
        deadline = time.monotonic() + 20
        while not second.serving and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.serving and not second.reused
        assert _auto_switch(second.url or "", tokens["alice"]) is True
        assert any("this run serves it now" in r.getMessage() for r in caplog.records)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    with pytest.raises(httpx.ConnectError):  # nothing left listening
        httpx.get(f"{first.url}/health", timeout=5)


def test_another_stores_api_on_the_port_is_refused(db_engine: Engine, tmp_path: Path) -> None:
    other = store.get_engine(f"sqlite:///{tmp_path / 'other.db'}")
    store.upgrade_schema(other)
    with _service(other, 0) as theirs:
        port = int((theirs.url or "").rsplit(":", 1)[1])
        with pytest.raises(UserError) as refused:
            _service(db_engine, port).start()
        assert theirs.serving  # left alone
    other.dispose()
    message = str(refused.value)
    assert f"cannot listen on 127.0.0.1:{port}" in message
    assert "a fleetwave consent API there serves another store" in message
    assert "FLEETWAVE_CONSENT_PORT" in message and "\n" not in message


class _OtherService(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_http_server() -> Iterator[int]:
    """Another HTTP service (its own /health) on a free port of 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_taken_by_something_else_is_refused(
    db_engine: Engine, other_http_server: int
) -> None:
    with pytest.raises(UserError) as refused:
        _service(db_engine, other_http_server).start()
    message = str(refused.value)
    assert message.startswith(f"the consent API cannot listen on 127.0.0.1:{other_http_server}")
    assert "what listens there is not a fleetwave consent API" in message
    assert "\n" not in message
