"""Login, refresh, token supersession and expiry, and the per-app throttle."""

from __future__ import annotations

import httpx

from fleetwave.sim.testing import run_simulator
from tests.integration.sim.conftest import CATEGORY, GROUPS, LOGIN, REFRESH, Api, error_of


def test_login_returns_documented_fields(api: Api) -> None:
    body = api.login()
    assert body["scope"] == "default"
    assert body["tokenType"].strip() == "Bearer"
    assert body["expiresIn"] == 3600
    assert body["accessToken"] and body["refreshToken"]


def test_login_errors(api: Api) -> None:
    http = api.http
    r = http.post(LOGIN, data={"appId": api.sim.app_id, "secret": "wrong"})
    assert error_of(r) == (401, "100208")
    r = http.post(LOGIN, data={"appId": "nobody", "secret": api.sim.secret})
    assert error_of(r) == (401, "100208")
    r = http.post(LOGIN, data={"appId": api.sim.app_id})
    assert error_of(r) == (400, "102202")
    r = http.post(LOGIN, data={})
    assert error_of(r) == (400, "102202")


def test_missing_or_wrong_auth_is_1010005(api: Api) -> None:
    api.login()
    http = api.http
    assert error_of(http.get(GROUPS)) == (403, "1010005")
    assert error_of(http.get(GROUPS, headers={"app_key": api.sim.app_id})) == (403, "1010005")
    bad = {"app_key": api.sim.app_id, "Authorization": "Bearer nope"}
    assert error_of(http.get(GROUPS, headers=bad)) == (403, "1010005")
    wrong_app = {"app_key": "other", "Authorization": f"Bearer {api.token}"}
    assert error_of(http.get(GROUPS, headers=wrong_app)) == (403, "1010005")
    assert api.get(GROUPS).status_code == 200


def test_only_latest_token_is_valid(api: Api) -> None:
    api.login()
    old = api.headers()
    api.login()
    assert error_of(api.http.get(GROUPS, headers=old)) == (403, "1010005")
    assert api.get(GROUPS).status_code == 200


def test_refresh_supersedes_and_rotates(api: Api) -> None:
    api.login()
    old_headers, old_refresh = api.headers(), api.refresh_token
    body = {"appId": api.sim.app_id, "secret": api.sim.secret, "refreshToken": old_refresh}
    r = api.http.post(REFRESH, json={**body, "unknownField": 1})
    assert r.status_code == 200, r.text
    api.token = r.json()["accessToken"]
    assert r.json()["expiresIn"] == 3600
    assert error_of(api.http.get(GROUPS, headers=old_headers)) == (403, "1010005")
    assert api.get(GROUPS).status_code == 200
    # the old refresh token was rotated away
    assert error_of(api.http.post(REFRESH, json=body)) == (400, "50400")
    assert error_of(api.http.post(REFRESH, json={"appId": api.sim.app_id})) == (400, "102202")
    wrong = {**body, "secret": "x"}
    assert error_of(api.http.post(REFRESH, json=wrong)) == (401, "100208")


def test_token_expires_after_3600_sim_seconds() -> None:
    with run_simulator(devices=50, groups=2, clock="manual", rate_limit=0) as sim:
        api = Api(sim)
        api.login()
        sim.advance(3599)
        assert api.get(GROUPS).status_code == 200
        sim.advance(1)
        assert error_of(api.get(GROUPS)) == (403, "1010005")
        r = api.http.post(
            REFRESH,
            json={"appId": sim.app_id, "secret": sim.secret, "refreshToken": api.refresh_token},
        )
        assert r.status_code == 200
        api.token = r.json()["accessToken"]
        assert api.get(GROUPS).status_code == 200
        api.close()


def test_throttle_per_minute_on_the_sim_clock() -> None:
    with run_simulator(devices=50, groups=2, clock="manual", rate_limit=5) as sim:
        api = Api(sim)
        api.login()  # 1 call
        codes = [api.get(CATEGORY).status_code for _ in range(6)]
        assert codes == [200, 200, 200, 200, 403, 403]
        assert error_of(api.get(CATEGORY)) == (403, "1010009")
        # login counts too
        r = api.http.post(LOGIN, data={"appId": sim.app_id, "secret": sim.secret})
        assert error_of(r) == (403, "1010009")
        sim.advance(60)  # the next minute of the manual clock
        assert api.get(CATEGORY).status_code == 200
        stats = sim.stats(tasks=False)
        assert stats["calls"][f"GET {CATEGORY}"] == {"200": 5, "403": 3}
        assert stats["throttled"] == 4  # the login's 403 too
        assert stats["throttle_peak"] == 9  # the calls counted in the first minute
        assert "tasks" not in stats
        api.close()


def test_query_string_starting_with_ampersand(api: Api) -> None:
    r = api.http.get(f"{GROUPS}?&pageNo=0&pageSize=2", headers=api.headers())
    assert r.status_code == 200
    assert len(r.json()["list"]) == 2


def test_login_accepts_json_too(api: Api) -> None:
    r = httpx.post(
        api.sim.base_url + LOGIN, json={"appId": api.sim.app_id, "secret": api.sim.secret}
    )
    assert r.status_code == 200
