"""OAuth token, M2M session, gateway errors and the per-contract rate limit, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator
from tests.integration.sim_thingspace.conftest import LOGIN, TOKEN, V1, Client

pytestmark = pytest.mark.timeout(120)


def test_token_needs_basic_auth_and_client_credentials(ts: TSHandle) -> None:
    with httpx.Client(base_url=ts.base_url) as http:
        missing = http.post(TOKEN, data={"grant_type": "client_credentials"})
        assert missing.status_code == 401 and missing.json()["error"] == "invalid_client"
        wrong = http.post(
            TOKEN, auth=(ts.client_key, "nope"), data={"grant_type": "client_credentials"}
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        grant = http.post(TOKEN, auth=(ts.client_key, ts.client_secret), data={"grant_type": "x"})
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_gateway_401_for_missing_bad_and_expired_tokens(ts: TSHandle, client: Client) -> None:
    path = f"{V1}/firmware/{ts.account}"
    with httpx.Client(base_url=ts.base_url) as http:
        missing = http.get(path)
        assert missing.status_code == 401 and missing.json()["fault"]["code"] == "900902"
        bad = http.get(path, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert bad.json()["fault"]["code"] == "900901"
        assert bad.json()["fault"]["message"] == "Invalid Credentials"
    assert client.call("GET", path).status_code == 200
    for step in (900, 900, 900, 899):  # the session is used every 15 minutes, so it lives
        ts.advance(step)
        assert client.call("GET", path).status_code == 200
    ts.advance(1)  # the token is one hour old
    expired = client.call("GET", path)
    assert expired.status_code == 401 and expired.json()["fault"]["code"] == "900901"


def test_session_is_required_and_expires_after_20_idle_minutes(
    ts: TSHandle, client: Client
) -> None:
    path = f"{V1}/firmware/{ts.account}"
    no_session = client.http.get(path, headers={"Authorization": client.headers["Authorization"]})
    assert no_session.status_code == 400
    assert no_session.json()["errorCode"] == "UnifiedWebService.SECURITY.SessionToken.Missing"
    for _ in range(2):  # used every 15 minutes: stays alive
        ts.advance(15 * 60)
        assert client.call("GET", path).status_code == 200
    ts.advance(20 * 60)
    expired = client.call("GET", path)
    assert expired.status_code == 400
    assert expired.json()["errorCode"] == "UnifiedWebService.SECURITY.SessionToken.Expired"


def test_login_needs_a_token_and_five_failures_lock(ts: TSHandle, client: Client) -> None:
    bearer = {"Authorization": client.headers["Authorization"]}
    good = {"username": ts.username, "password": ts.password}
    bad = {"username": ts.username, "password": "wrong"}
    assert client.http.post(LOGIN, json=good).status_code == 401  # no bearer token
    for _ in range(4):
        assert client.http.post(LOGIN, headers=bearer, json=bad).status_code == 400
    assert client.http.post(LOGIN, headers=bearer, json=good).status_code == 200  # resets
    messages = []
    for _ in range(5):
        resp = client.http.post(LOGIN, headers=bearer, json=bad)
        assert resp.json()["errorCode"] == "UnifiedWebService.SECURITY.InvalidCredentials"
        messages.append(resp.json()["errorMessage"])
    assert "4 attempts left" in messages[0] and "0 attempts left" in messages[-1]
    locked = client.http.post(LOGIN, headers=bearer, json=good)
    assert locked.status_code == 400
    assert locked.json()["errorCode"] == "UnifiedWebService.SECURITY.UserLocked"
    ts.unlock()
    assert client.http.post(LOGIN, headers=bearer, json=good).status_code == 200


def test_rate_limit_is_the_contract_budget() -> None:
    with run_thingspace_simulator(devices=50, clock="manual", rate_limit=5) as ts:
        c = Client(ts)  # token + login: 2 calls
        path = f"{V1}/firmware/{ts.account}"
        statuses = [c.call("GET", path).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        throttled = c.call("GET", path)
        assert throttled.json()["fault"]["code"] == "900800"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        ts.advance(60)
        assert c.call("GET", path).status_code == 200
        calls = ts.stats(requests=False)["calls"][f"GET {V1}/firmware/{{account}}"]
        assert calls == {"200": 4, "429": 2}
        c.close()


def test_stats_and_errors_never_show_credentials(ts: TSHandle, client: Client) -> None:
    client.http.post(
        LOGIN,
        headers={"Authorization": client.headers["Authorization"]},
        json={"username": ts.username, "password": "hunter2-wrong"},
    )
    text = str(ts.stats()) + str(ts.info()) + str(ts.callbacks())
    for secret in (
        ts.client_secret,
        ts.password,
        "hunter2-wrong",
        client.headers["VZ-M2M-Token"],
        client.headers["Authorization"].split()[1],
    ):
        assert secret not in text
