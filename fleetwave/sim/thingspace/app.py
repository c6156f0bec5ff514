"""The ThingSpace simulator's HTTP surface: OAuth token, M2M session, FOTA v1 and v2, and the
``/sim/`` admin API.

:func:`create_app` builds a FastAPI app over one :class:`TSState`. Bodies are parsed by hand
so that every bad input is the platform's HTTP 400 ``{"errorCode", "errorMessage"}``; a
missing, bad or expired bearer token is the gateway's 401 ``{"fault": {...}}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetwave.clock import Clock, parse_clock
from fleetwave.sim.admin import add_clock_and_fault_routes, admin_body, admin_error
from fleetwave.sim.faults import FaultMiddleware
from fleetwave.sim.thingspace.callbacks import CallbackPusher
from fleetwave.sim.thingspace.config import TSConfig
from fleetwave.sim.thingspace.state import (
    SM,
    UWS,
    V1_DEVICE_PAGE,
    V1_REPORT_PAGE,
    V1_STATUSES,
    V2_CAMPAIGN_PAGE,
    V2_DEVICE_PAGE,
    V2_STATUSES,
    FotaError,
    GatewayError,
    OAuthError,
    TSState,
    failed,
    fmt_time,
    invalid,
    windows_json,
)
from fleetwave.sim.thingspace.state import (
    Request as FotaRequest,
)

__all__ = ["SERVER_ERROR_BODY", "create_app", "make_clock"]

log = logging.getLogger(__name__)

API = "/api"
V1 = f"{API}/fota/v1"
V2 = f"{API}/fota/v2"
SERVER_ERROR_BODY = json.dumps(
    {"errorCode": f"{SM}.INTERNAL_ERROR.Unexpected", "errorMessage": "Internal server error"}
).encode()


def make_clock(config: TSConfig) -> Clock:
    if config.clock.startswith("scaled") or config.clock == "manual":
        return parse_clock(config.clock, config.start_time)
    return parse_clock(config.clock)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise invalid("Body", "the request body must be a JSON object")
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("Body", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("Body", "the request body must be a JSON object")
    return body


def _index(raw: str) -> int:
    if not raw.isdigit():
        raise invalid("StartIndex", f"startIndex must be a number >= 0, not {raw!r}")
    return int(raw)


def create_app(config: TSConfig | None = None, clock: Clock | None = None) -> FastAPI:
    """Build the ThingSpace simulator app for ``config`` on ``clock``."""
    config = config or TSConfig()
    clock = clock or make_clock(config)
    state = TSState(config, clock)
    pusher = CallbackPusher(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pusher.start()
        try:
            yield
        finally:
            await pusher.stop()

    app = FastAPI(
        title="fleetwave ThingSpace simulator", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.sim = state
    app.state.pusher = pusher

    @app.exception_handler(FotaError)
    async def _fota_error(_: Request, exc: FotaError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(OAuthError)
    async def _oauth_error(_: Request, exc: OAuthError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if request.url.path.startswith("/sim/"):
            return admin_error(
                exc.status_code,
                f"no admin endpoint {request.method} {request.url.path}; see /sim/info, "
                "/sim/clock, /sim/faults, /sim/stats, /sim/callbacks",
            )
        body = GatewayError(
            404 if exc.status_code == 404 else exc.status_code,
            "900906",
            "No matching resource found in the API for the given request",
            f"Access failure for API: {request.url.path}. Check the API documentation and add "
            "a proper REST resource path to the invocation URL",
        ).body()
        return JSONResponse(body, status_code=exc.status_code)

    def gateway(request: Request) -> None:
        state.throttle()
        state.check_token(request.headers.get("authorization"), request.url.path)

    def fota(request: Request, account: str | None = None) -> float:
        """Gateway checks, then the M2M session; returns now."""
        gateway(request)
        state.check_session(request.headers.get("vz-m2m-token"))
        if account is not None:
            state.check_account(account)
        return state.now()

    # auth -------------------------------------------------------------------------------

    @app.post(f"{API}/ts/v1/oauth2/token")
    async def token(request: Request) -> JSONResponse:
        state.throttle()
        auth = request.headers.get("authorization") or ""
        scheme, _, encoded = auth.strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key, sep, secret = decoded.partition(":")
        if scheme.lower() != "basic" or not sep:
            raise OAuthError(
                401,
                "invalid_client",
                "Basic authentication with the client key and secret is required",
            )
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        return JSONResponse(state.issue_token(key, secret))

    @app.post(f"{API}/m2m/v1/session/login")
    async def login(request: Request) -> JSONResponse:
        gateway(request)
        try:
            body = await _json(request)
        except FotaError as exc:  # the M2M service's words, not Software Management's
            raise FotaError(f"{UWS}.INPUT_INVALID.Body", exc.message) from None
        return JSONResponse(state.login(body))

    @app.post(f"{API}/m2m/v1/session/logout")
    async def logout(request: Request) -> JSONResponse:
        gateway(request)
        return JSONResponse(state.logout(request.headers.get("vz-m2m-token")))

    # FOTA v1 ------------------------------------------------------------------------------

    def upgrade_json(req: FotaRequest, now: float, *, devices: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": req.id,
            "accountName": config.account,
            "firmwareName": req.package,
            "firmwareTo": req.to_version,
            "startDate": req.start_date.isoformat(),
        }
        if req.end_date is not None:
            out["endDate"] = req.end_date.isoformat()
        out["status"] = state.status(req, now)
        if devices:
            items = []
            for imei in req.devices:
                status, reason = state.device_status(req, imei, now)
                item = {"deviceId": imei, "status": status}
                if reason:
                    item["resultReason"] = reason
                items.append(item)
            out["deviceList"] = items
        return out

    @app.get(f"{V1}/firmware/{{account}}")
    async def v1_firmware(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        return JSONResponse([f.to_json() for f in state.catalog.firmware.values()])

    @app.post(f"{V1}/upgrades")
    async def v1_create(request: Request) -> JSONResponse:
        fota(request)
        req = state.create_upgrade(await _json(request))
        return JSONResponse(upgrade_json(req, state.now()))

    @app.get(f"{V1}/upgrades/{{account}}/upgrade/{{upgrade_id}}")
    async def v1_get(request: Request, account: str, upgrade_id: str) -> JSONResponse:
        now = fota(request, account)
        with state.lock:
            return JSONResponse(upgrade_json(state.get("v1", upgrade_id), now))

    @app.put(f"{V1}/upgrades/{{account}}/upgrade/{{upgrade_id}}")
    async def v1_modify(request: Request, account: str, upgrade_id: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        req = state.get("v1", upgrade_id)
        results = state.change_devices(req, body.get("type"), body.get("deviceList"))
        return JSONResponse(
            {
                "accountName": config.account,
                "id": req.id,
                "deviceList": [
                    {"deviceId": r["deviceId"], "status": r["status"], "Reason": ""}
                    for r in results
                ],
            }
        )

    @app.delete(f"{V1}/upgrades/{{account}}/upgrade/{{upgrade_id}}")
    async def v1_cancel(request: Request, account: str, upgrade_id: str) -> JSONResponse:
        fota(request, account)
        state.cancel(state.get("v1", upgrade_id))
        return JSONResponse({"success": True})

    @app.get(f"{V1}/reports/{{account}}/status/{{status}}/index/{{start}}")
    async def v1_reports(request: Request, account: str, status: str, start: str) -> JSONResponse:
        now = fota(request, account)
        if status not in V1_STATUSES:
            raise invalid("UpgradeStatus", f"upgradeStatus must be one of {', '.join(V1_STATUSES)}")
        first = _index(start)
        with state.lock:
            matching = [
                r
                for r in state.requests.values()
                if r.api == "v1" and r.cancelled_at is None and state.status(r, now) == status
            ]
            page = matching[first : first + V1_REPORT_PAGE]
            more = first + V1_REPORT_PAGE < len(matching)
            return JSONResponse(
                {
                    "hasMoreFlag": more,
                    "lastSeenUpgradeId": first + len(page) if more else 0,
                    "reportList": [upgrade_json(r, now) for r in page],
                }
            )

    @app.get(f"{V1}/reports/{{account}}/devices/{{device_id}}")
    async def v1_history(request: Request, account: str, device_id: str) -> JSONResponse:
        now = fota(request, account)
        index = _device(device_id)
        with state.lock:
            out = []
            for req in state.device_requests.get(index, ()):
                if req.api != "v1" or req.cancelled_at is not None or device_id not in req.index:
                    continue
                status, reason = state.device_status(req, device_id, now)
                plan = state.plan(req, device_id)
                started = plan.started if plan.started is not None and plan.started <= now else None
                out.append(
                    {
                        "deviceId": device_id,
                        "id": req.id,
                        "accountName": config.account,
                        "firmwareFrom": req.from_version,
                        "firmwareTo": req.to_version,
                        "startDate": req.start_date.isoformat(),
                        "upgradeStartTime": fmt_time(started) or "",
                        "status": status,
                        "reason": reason or "",
                    }
                )
            return JSONResponse(out)

    def _device(imei: str) -> int:
        index = state.catalog.index_of(imei)
        if index is None:
            raise invalid("DeviceId", f"device {imei!r} is not a device of this account")
        return index

    @app.get(f"{V1}/devices/{{account}}/index/{{start}}")
    async def v1_devices(request: Request, account: str, start: str) -> JSONResponse:
        now = fota(request, account)
        first = _index(start)
        with state.lock:
            stop = min(config.devices, first + V1_DEVICE_PAGE)
            more = stop < config.devices
            return JSONResponse(
                {
                    "accountName": config.account,
                    "hasMoreData": more,
                    "lastSeenDeviceId": stop if more else 0,
                    "deviceList": [state.devices_json_v1(i, now) for i in range(first, stop)],
                }
            )

    @app.get(f"{V1}/callbacks/{{account}}")
    async def v1_callbacks(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        reg = state.callbacks.get("v1")
        if reg is None:
            return JSONResponse([])
        item = {"aname": config.account, "name": "Fota", "url": reg["url"]}
        if reg.get("username"):
            item["username"] = reg["username"]
        return JSONResponse([item])

    @app.post(f"{V1}/callbacks/{{account}}")
    async def v1_register(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        if body.get("name") != "Fota":
            raise invalid("CallbackName", f"name must be Fota, not {body.get('name')!r}")
        url = pusher.check_url(body.get("url"))
        reg = {"url": url}
        for key in ("username", "password"):
            if isinstance(body.get(key), str):
                reg[key] = body[key]
        state.callbacks["v1"] = reg
        return JSONResponse({"accountName": config.account, "serviceName": "Fota"})

    @app.delete(f"{V1}/callbacks/{{account}}/name/{{service}}")
    async def v1_deregister(request: Request, account: str, service: str) -> JSONResponse:
        fota(request, account)
        if service != "Fota" or "v1" not in state.callbacks:
            raise invalid("CallbackName", f"no callback {service!r} is registered")
        del state.callbacks["v1"]
        return JSONResponse({"success": True})

    @app.post(f"{V1}/licenses/{{account}}/assign")
    async def v1_assign(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        return JSONResponse(_licenses(state.assign_licenses(body.get("deviceList"), assign=True)))

    @app.post(f"{V1}/licenses/{{account}}/remove")
    async def v1_unassign(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        return JSONResponse(_licenses(state.assign_licenses(body.get("deviceList"), assign=False)))

    def _licenses(result: dict[str, Any]) -> dict[str, Any]:
        result["deviceList"] = [
            {"deviceId": d["deviceId"], "status": d["status"], "Reason": d["reason"]}
            for d in result["deviceList"]
        ]
        return result

    @app.get(f"{V1}/subscriptions/{{account}}")
    async def v1_subscription(request: Request, account: str) -> JSONResponse:
        now = fota(request, account)
        return JSONResponse(
            {
                "accountName": config.account,
                "purchaseType": "MRC" if config.license_required else "One-time",
                "licenseCount": state.license_pool() if config.license_required else 0,
                "licenseUsedCount": len(state.licensed),
                "updateTime": fmt_time(now),
            }
        )

    # FOTA v2 ----------------------------------------------------------------------------

    def campaign_json(req: FotaRequest, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": req.id,
            "accountName": config.account,
            "campaignName": req.campaign_name,
            "softwareName": req.package,
            "distributionType": req.distribution_type,
            "make": req.model.manufacturer,
            "model": req.model.model,
            "softwareFrom": req.from_version,
            "softwareTo": req.to_version,
            "startDate": req.start_date.isoformat(),
            "endDate": req.end_date.isoformat() if req.end_date else None,
        }
        if req.download_after is not None:
            out["downloadAfterDate"] = req.download_after.isoformat()
        if req.download_windows:
            out["downloadTimeWindowList"] = windows_json(req.download_windows)
        if req.install_after is not None:
            out["installAfterDate"] = req.install_after.isoformat()
        if req.install_windows:
            out["installTimeWindowList"] = windows_json(req.install_windows)
        if req.kind == "file":
            out["fileName"] = req.package
            out["fileVersion"] = req.to_version
        out["status"] = state.status(req, now)
        return {k: v for k, v in out.items() if v is not None}

    @app.get(f"{V2}/software/{{account}}")
    async def v2_software(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        dist = request.query_params.get("distributionType")
        items = [s.to_json() for s in state.catalog.software.values()]
        return JSONResponse([s for s in items if not dist or s["distributionType"] == dist])

    @app.get(f"{V2}/files/{{account}}")
    async def v2_files(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        dist = request.query_params.get("distributionType")
        items = [f.to_json() for f in state.catalog.files.values()]
        return JSONResponse(
            {
                "AvailableFilesResponse": [
                    f for f in items if not dist or f["distributionType"] == dist
                ]
            }
        )

    @app.get(f"{V2}/devices/{{account}}")
    async def v2_devices(request: Request, account: str) -> JSONResponse:
        now = fota(request, account)
        last = request.query_params.get("lastSeenDeviceId")
        first = 0
        if last:
            first = _device(last) + 1
        with state.lock:
            stop = min(config.devices, first + V2_DEVICE_PAGE)
            more = stop < config.devices
            items = [state.devices_json_v2(i, now) for i in range(first, stop)]
            dist = request.query_params.get("distributionType")
            if dist:
                items = [d for d in items if d["distributionType"] == dist]
            out: dict[str, Any] = {
                "accountName": config.account,
                "hasMoreData": more,
                "maxPageSize": V2_DEVICE_PAGE,
                "deviceList": items,
            }
            if more:
                out["lastSeenDeviceId"] = state.catalog.imei(stop - 1)
            return JSONResponse(out)

    @app.post(f"{V2}/campaigns/files/{{account}}")
    async def v2_create_file(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        req = state.create_campaign(account, await _json(request), files=True)
        out = campaign_json(req, state.now())
        out["deviceList"] = list(req.devices)
        return JSONResponse(out)

    @app.post(f"{V2}/campaigns/{{account}}")
    async def v2_create(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        req = state.create_campaign(account, await _json(request), files=False)
        return JSONResponse(campaign_json(req, state.now()))

    @app.get(f"{V2}/campaigns/{{account}}/{{campaign_id}}")
    async def v2_get(request: Request, account: str, campaign_id: str) -> JSONResponse:
        now = fota(request, account)
        with state.lock:
            return JSONResponse(campaign_json(state.get("v2", campaign_id), now))

    @app.put(f"{V2}/campaigns/{{account}}/{{campaign_id}}")
    async def v2_modify(request: Request, account: str, campaign_id: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        req = state.get("v2", campaign_id)
        op = body.get("Type", body.get("type"))
        state.change_devices(req, op, body.get("deviceList"))
        return JSONResponse(
            {
                "accountName": config.account,
                "campaignId": req.id,
                "requestId": state.next_change_id(),
            }
        )

    @app.delete(f"{V2}/campaigns/{{account}}/{{campaign_id}}")
    async def v2_cancel(request: Request, account: str, campaign_id: str) -> JSONResponse:
        fota(request, account)
        state.cancel(state.get("v2", campaign_id))
        return JSONResponse({"success": True})

    @app.put(f"{V2}/campaigns/{{account}}/{{campaign_id}}/dates")
    async def v2_dates(request: Request, account: str, campaign_id: str) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        req = state.get("v2", campaign_id)
        state.change_dates(req, body)
        return JSONResponse(campaign_json(req, state.now()))

    @app.get(f"{V2}/reports/{{account}}/campaigns")
    async def v2_campaigns(request: Request, account: str) -> JSONResponse:
        now = fota(request, account)
        status = request.query_params.get("campaignStatus")
        if status not in V2_STATUSES:
            raise invalid(
                "CampaignStatus", f"campaignStatus must be one of {', '.join(V2_STATUSES)}"
            )
        last = request.query_params.get("lastSeenCampaignId")
        with state.lock:
            matching = [
                r
                for r in state.requests.values()
                if r.api == "v2" and state.status(r, now) == status
            ]
            first = 0
            if last:
                ids = [r.id for r in matching]
                if last not in ids:
                    raise invalid("LastSeenCampaignId", f"campaign {last} is not in this listing")
                first = ids.index(last) + 1
            page = matching[first : first + V2_CAMPAIGN_PAGE]
            more = first + V2_CAMPAIGN_PAGE < len(matching)
            out: dict[str, Any] = {
                "hasMoreData": more,
                "campaignList": [campaign_json(r, now) for r in page],
            }
            if more:
                out["lastSeenCampaignId"] = page[-1].id
            return JSONResponse(out)

    @app.get(f"{V2}/reports/{{account}}/campaigns/{{campaign_id}}/devices")
    async def v2_campaign_devices(request: Request, account: str, campaign_id: str) -> JSONResponse:
        now = fota(request, account)
        last = request.query_params.get("lastSeenDeviceId")
        with state.lock:
            req = state.get("v2", campaign_id)
            first = 0
            if last:
                pos = req.position.get(last)
                if pos is None:
                    raise invalid("LastSeenDeviceId", f"device {last} is not in campaign {req.id}")
                first = pos + 1
            page = req.devices[first : first + V2_DEVICE_PAGE]
            more = first + V2_DEVICE_PAGE < len(req.devices)
            items = []
            for imei in page:
                status, reason = state.device_status(req, imei, now)
                item = {"deviceId": imei, "status": status}
                if reason:
                    item["resultReason"] = reason
                items.append(item)
            out: dict[str, Any] = {
                "totalDevice": len(req.devices),
                "hasMoreData": more,
                "maxPageSize": V2_DEVICE_PAGE,
                "deviceList": items,
            }
            if more:
                out["lastSeenDeviceId"] = page[-1]
            return JSONResponse(out)

    @app.get(f"{V2}/reports/{{account}}/devices/{{device_id}}")
    async def v2_history(request: Request, account: str, device_id: str) -> JSONResponse:
        now = fota(request, account)
        index = _device(device_id)
        with state.lock:
            out = []
            for req in state.device_requests.get(index, ()):
                if req.api != "v2" or device_id not in req.index:
                    continue
                status, reason = state.device_status(req, device_id, now)
                out.append(
                    {
                        "deviceId": device_id,
                        "id": req.id,
                        "accountName": config.account,
                        "softwareName": req.package,
                        "startDate": req.start_date.isoformat(),
                        "status": status,
                        "reason": reason or "",
                    }
                )
            return JSONResponse(out)

    @app.get(f"{V2}/callbacks/{{account}}")
    async def v2_callbacks(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        reg = state.callbacks.get("v2")
        if reg is None:
            raise failed("CallbackNotRegistered", "no callback URL is registered for this account")
        return JSONResponse({"url": reg["url"]})

    async def _v2_register(request: Request, account: str, *, update: bool) -> JSONResponse:
        fota(request, account)
        body = await _json(request)
        if update and "v2" not in state.callbacks:
            raise failed("CallbackNotRegistered", "no callback URL is registered; POST one first")
        url = pusher.check_url(body.get("url"))
        state.callbacks["v2"] = {"url": url}
        return JSONResponse({"url": url})

    @app.post(f"{V2}/callbacks/{{account}}")
    async def v2_register(request: Request, account: str) -> JSONResponse:
        return await _v2_register(request, account, update=False)

    @app.put(f"{V2}/callbacks/{{account}}")
    async def v2_update(request: Request, account: str) -> JSONResponse:
        return await _v2_register(request, account, update=True)

    @app.delete(f"{V2}/callbacks/{{account}}")
    async def v2_deregister(request: Request, account: str) -> JSONResponse:
        fota(request, account)
        if state.callbacks.pop("v2", None) is None:
            raise failed("CallbackNotRegistered", "no callback URL is registered")
        return JSONResponse({"success": True})

    # admin --------------------------------------------------------------------------------

    faults = FaultMiddleware.install(app, state, error_body=SERVER_ERROR_BODY)
    clock_json = add_clock_and_fault_routes(
        app, clock=clock, clock_option=config.clock, faults=faults, wake=pusher.wake
    )

    @app.get("/sim/stats")
    async def sim_stats(request: Request) -> JSONResponse:
        query = request.query_params
        raw = query.get("requests") or query.get("tasks") or "true"  # ?tasks= as on IoDM
        return JSONResponse(state.stats(with_requests=raw.lower() not in ("false", "0")))

    @app.post("/sim/unlock")
    async def sim_unlock() -> JSONResponse:
        state.unlock()
        return JSONResponse({"locked": False})

    @app.post("/sim/sessions/expire")
    async def sim_expire_sessions() -> JSONResponse:
        return JSONResponse({"expired": state.expire_sessions()})

    @app.post("/sim/failure-rate")
    async def sim_failure_rate(request: Request) -> JSONResponse:
        body = await admin_body(request)
        rate = body.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            return admin_error(400, '"rate" must be a number between 0 and 1, e.g. {"rate": 0.1}')
        with state.lock:
            state.failure_rate = float(rate)
        return JSONResponse({"rate": state.failure_rate})

    @app.post("/sim/devices")
    async def sim_devices(request: Request) -> JSONResponse:
        body = await admin_body(request)
        if body.get("__invalid__"):
            return admin_error(400, "the body must be a JSON object")
        try:
            changed = state.set_devices(body)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"changed": changed})

    @app.get("/sim/callbacks")
    async def sim_callbacks() -> JSONResponse:
        with state.lock:
            return JSONResponse({"counts": dict(state.pushes), "recent": list(state.pushed_bodies)})

    @app.get("/sim/devices/{imei}")
    async def sim_device(imei: str) -> JSONResponse:
        index = state.catalog.index_of(imei)
        if index is None:
            return admin_error(404, f"{imei} is not an IMEI of this fleet")
        now = state.now()
        with state.lock:
            out = state.devices_json_v2(index, now)
            out["requests"] = [
                {"id": r.id, "api": r.api, "status": state.device_status(r, imei, now)[0]}
                for r in state.device_requests.get(index, ())
                if imei in r.index
            ]
            return JSONResponse(out)

    @app.get("/sim/info")
    async def sim_info() -> JSONResponse:
        cat = state.catalog
        return JSONResponse(
            {
                "platform": "thingspace",
                "account": config.account,
                "devices": config.devices,
                "seed": config.seed,
                "rate_limit": config.rate_limit,
                "failure_rate": state.failure_rate,
                "license_required": config.license_required,
                "clock": clock_json(),
                "groups": [
                    {
                        "name": g.name,
                        "make": g.model.manufacturer,
                        "model": g.model.model,
                        "size": g.size,
                        "first_imei": cat.imei(g.start),
                        "last_imei": cat.imei(g.stop - 1),
                    }
                    for g in state.fleet.groups
                ],
                "firmware": [f.to_json() for f in cat.firmware.values()],
                "software": [s.to_json() for s in cat.software.values()],
                "files": [f.to_json() for f in cat.files.values()],
            }
        )

    return app
