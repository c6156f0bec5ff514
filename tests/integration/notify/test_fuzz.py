"""Hypothesis-generated bodies, headers and paths against the running receiver: it answers
each with a 2xx/4xx, never an internal error, and keeps working afterwards."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from fleetwave.platforms.iodm.push import NOTIFY_TYPES
from fleetwave.store import DeviceRunStatus
from tests.integration.notify.conftest import Receiver, seed_campaign, statuses


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    """The fuzz runs on SQLite only: it tests HTTP handling, not the backends."""
    return sqlite_engine


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=6,
)
notification_like = st.fixed_dictionaries(
    {"notifyType": st.sampled_from([*NOTIFY_TYPES, "other"])},
    optional={
        "deviceId": st.one_of(st.sampled_from(["dev-a", "dev-b"]), json_values),
        "operationId": st.one_of(st.just("op-f"), json_values),
        "step": st.one_of(st.sampled_from(["0", "1", "2", "3"]), json_values),
        "stepDesc": json_values,
        "status": st.one_of(st.sampled_from(["SUCCESS", "FAIL", "success"]), json_values),
        "swUpgradeState": json_values,
        "swUpgradeResult": st.one_of(st.sampled_from(["SUCCESS", "FAIL"]), json_values),
        "curVersion": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    notification_like.map(lambda v: json.dumps(v).encode()),
)
header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz-ABCXYZ", min_size=1, max_size=20
).filter(lambda n: n.lower() not in {"content-length", "transfer-encoding", "host", "connection"})
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)
headers = st.dictionaries(
    st.one_of(header_names, st.just("content-type")),
    # bytes: any octet h11 lets a client send (no surrounding whitespace)
    header_values.map(lambda v: v.strip(" \t").encode("latin-1")),
    max_size=4,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    hdrs=headers,
    token_ok=st.booleans(),
    suffix=st.text(alphabet="abc%/.-_~", max_size=6),
)
def test_fuzzed_requests_never_break_the_receiver(
    receiver: Receiver, body: bytes, hdrs: dict[str, Any], token_ok: bool, suffix: str
) -> None:
    base = receiver.channel.local_url
    url = receiver.url if token_ok else f"{base}/notify/{suffix or 'x'}"
    r = receiver.http.post(url, content=body, headers=hdrs)
    assert r.status_code in (200, 400, 401, 413), (r.status_code, r.text[:200])
    if not token_ok:
        assert r.status_code == 401
    assert receiver.channel.stats().errors == 0


def test_raw_garbage_then_a_valid_notification(receiver: Receiver, engine: Any) -> None:
    """Broken HTTP, truncated requests and dropped connections; then it still works."""
    camp, _ = seed_campaign(engine, name="garbage", devices=["dev-a"], operation_id="op-f")
    host, port = receiver.channel.local_url.removeprefix("http://").split(":")
    path = "/notify/" + receiver.url.rsplit("/", 1)[1]
    garbage = [
        b"\x00\x01\x02 not http at all\r\n\r\n",
        f'POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{{"a"'.encode(),
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode(),
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode(),
        b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 100_000 + b"\r\n\r\n",
    ]
    for raw in garbage:
        with (
            socket.create_connection((host, int(port)), timeout=5) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(2)
            sock.recv(4096)
    ok = {
        "notifyType": "fwUpgradeResultNotify",
        "deviceId": "dev-a",
        "operationId": "op-f",
        "status": "SUCCESS",
    }
    assert receiver.post(ok).status_code == 200
    assert receiver.channel.drain()
    assert statuses(engine, camp)["dev-a"] is DeviceRunStatus.SUCCEEDED
    assert receiver.channel.stats().errors == 0
