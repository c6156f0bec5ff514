"""The simulator's HTTP surface: IoDM northbound endpoints and the ``/sim/`` admin API.

:func:`create_app` builds a FastAPI app over one :class:`SimState`. Handlers parse
queries and bodies by hand (tolerating ``?&`` and unknown fields, as the platform
does) and answer errors, unknown paths included, with the platform's
``{"error_code", "error_desc"}`` body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetwave.clock import Clock, parse_clock
from fleetwave.sim.admin import add_clock_and_fault_routes, admin_body, admin_error
from fleetwave.sim.behaviour import SimPolicy, state_at
from fleetwave.sim.config import DEFAULT_START, SimConfig
from fleetwave.sim.faults import FaultMiddleware
from fleetwave.sim.fleet import STATUS_CODES, Connectivity
from fleetwave.sim.notify import NOTIFY_TYPES, Notifier
from fleetwave.sim.state import MAX_TARGETS, IoDMError, SimState, parse_time

__all__ = ["create_app", "make_clock"]

log = logging.getLogger(__name__)

IOCM = "/iocm/app"
IODM = "/iodm/northbound/v1.5.0"
EXECUTE_TYPES = ("now", "device_online", "custom")
SUB_STATUSES = ("wait", "processing", "success", "fail", "stop")
TASK_STATUSES = ("wait", "processing", "success", "failed", "stop")


def make_clock(config: SimConfig) -> Clock:
    """The clock named by ``config.clock`` (manual and scaled start at ``config.start``)."""
    start = config.start or DEFAULT_START
    if config.clock.startswith("scaled") or config.clock == "manual":
        return parse_clock(config.clock, start)
    return parse_clock(config.clock)


def _error(exc: IoDMError) -> JSONResponse:
    return JSONResponse({"error_code": exc.code, "error_desc": exc.desc}, status_code=exc.status)


def _int(
    params: Mapping[str, str],
    name: str,
    default: int | None,
    lo: int,
    hi: int | None,
    *,
    bad: tuple[int, str, str],
    out_of_range: tuple[int, str, str],
) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise IoDMError(*bad) from None
    if value < lo or (hi is not None and value > hi):
        raise IoDMError(*out_of_range)
    return value


_IODM_BAD = (400, "120015", "Bad request error.")
_IODM_RANGE = (400, "123029", "pageNo or pageSize beyond the limit.")
_IOCM_BAD = (400, "100405", "The request parameter is invalid.")
_NO_GROUP = (200, "100603", "The device group is not existed.")  # documented with HTTP 200
_NO_DEVICE = (404, "100403", "The device is not existed.")
_NO_PACKAGE = (404, "123002", "Device or package file not found.")
_NO_TASK = (404, "123009", "The requested task does not exist.")
# the reference's generic 404 (subscriptions: "The resource is not found"); it documents no
# code for an unknown URL, so unknown paths answer this one in the platform's error body
_NO_RESOURCE = (404, "100225", "The resource is not found")

_V = TypeVar("_V")


def _iodm_page(params: Mapping[str, str], default_size: int = 10) -> tuple[int, int]:
    page_no = _int(params, "pageNo", 0, 0, None, bad=_IODM_BAD, out_of_range=_IODM_RANGE)
    size = _int(params, "pageSize", default_size, 1, 100, bad=_IODM_BAD, out_of_range=_IODM_RANGE)
    assert page_no is not None and size is not None
    return page_no, size


def _found(value: _V | None, error: tuple[int, str, str]) -> _V:
    """``value``, or the platform's ``error`` (status, code, description) when it is missing."""
    if value is None:
        raise IoDMError(*error)
    return value


def _iodm_list(items: list[Any], page_no: int, size: int, total: int) -> JSONResponse:
    """An IoDM listing page: ``data``, ``pageNo``, ``pageSize``, ``totalCount``."""
    return JSONResponse({"data": items, "pageNo": page_no, "pageSize": size, "totalCount": total})


def _iocm_list(key: str, items: list[Any], page_no: int, size: int, total: int) -> JSONResponse:
    """An IoCM listing page: ``totalCount``, ``pageNo``, ``pageSize``, then the list at ``key``."""
    return JSONResponse({"totalCount": total, "pageNo": page_no, "pageSize": size, key: items})


def _callback_url(body: Mapping[str, Any]) -> Any:
    """The subscribe body's callback URL: the HTTP reference spells it ``callbackUrl``, the
    official Java, PHP and Python SDKs send ``callbackurl``; both are accepted."""
    for key in ("callbackUrl", "callbackurl"):
        if key in body:
            return body[key]
    return None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise IoDMError(400, "120015", "Bad request error.") from None
    if not isinstance(body, dict):
        raise IoDMError(400, "120015", "Bad request error.")
    return body


def create_app(config: SimConfig | None = None, clock: Clock | None = None) -> FastAPI:
    """Build the simulator app for ``config`` on ``clock`` (default: the config's clock)."""
    config = config or SimConfig()
    clock = clock or make_clock(config)
    state = SimState(config, clock)
    notifier = Notifier(state)
    state.notifier = notifier

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()

    app = FastAPI(
        title="fleetwave IoDM simulator", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.sim = state

    @app.exception_handler(IoDMError)
    async def _iodm_error(_: Request, exc: IoDMError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths (404) and methods (405): the platform's body, not FastAPI's."""
        if request.url.path.startswith("/sim/"):
            return admin_error(
                exc.status_code,
                f"no admin endpoint {request.method} {request.url.path}; "
                "see /sim/info, /sim/clock, /sim/faults, /sim/devices, /sim/stats",
            )
        body = {"error_code": _NO_RESOURCE[1], "error_desc": _NO_RESOURCE[2]}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    def northbound(request: Request) -> None:
        """Throttle, then authenticate: every northbound call except login/refresh."""
        app_key = request.headers.get("app_key")
        state.throttle(app_key)
        state.check_auth(app_key, request.headers.get("authorization"))

    # auth -----------------------------------------------------------------------------

    @app.post(f"{IOCM}/sec/v1.1.0/login")
    async def login(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            body: Mapping[str, Any] = await _json_body(request)
        else:
            from urllib.parse import parse_qsl

            body = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        app_id, secret = body.get("appId"), body.get("secret")
        state.throttle(app_id if isinstance(app_id, str) else None)
        return JSONResponse(
            state.login(
                app_id if isinstance(app_id, str) else None,
                secret if isinstance(secret, str) else None,
            )
        )

    @app.post(f"{IOCM}/sec/v1.1.0/refreshToken")
    async def refresh_token(request: Request) -> JSONResponse:
        body = await _json_body(request)
        app_id = body.get("appId")
        state.throttle(app_id if isinstance(app_id, str) else None)
        return JSONResponse(state.refresh(app_id, body.get("secret"), body.get("refreshToken")))

    # groups ---------------------------------------------------------------------------

    def group_json(g: Any) -> dict[str, Any]:
        return {
            "name": g.name,
            "description": f"{g.model.device_type} {g.model.model} by {g.model.manufacturer}",
            "id": g.group_id,
            "appId": config.app_id,
            "maxDevNum": 0,
            "curDevNum": g.size,
            "creator": "fleetwave-sim",
        }

    @app.get(f"{IOCM}/devgroup/v1.3.0/devGroups")
    async def dev_groups(request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        name = q.get("name") or None
        groups = [g for g in state.fleet.groups if name is None or g.name == name]
        page_no = _int(q, "pageNo", None, 0, None, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        size = _int(q, "pageSize", 1, 1, None, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        assert size is not None
        if page_no is None:  # documented: no pageNo, no pagination
            page, page_no, size = groups, 0, len(groups)
        else:
            page = groups[page_no * size : (page_no + 1) * size]
        return _iocm_list("list", [group_json(g) for g in page], page_no, size, len(groups))

    @app.get(f"{IOCM}/devgroup/v1.3.0/devGroups/{{devGroupId}}")
    async def dev_group(devGroupId: str, request: Request) -> JSONResponse:
        northbound(request)
        return JSONResponse(group_json(_found(state.fleet.groups_by_id.get(devGroupId), _NO_GROUP)))

    @app.get(f"{IOCM}/dm/v1.2.0/devices/ids")
    async def group_members(request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        g = state.fleet.groups_by_id.get(q.get("devGroupId") or "")
        if g is None:
            if not q.get("devGroupId"):
                raise IoDMError(400, "100405", "The request parameter is invalid.")
            raise IoDMError(*_NO_GROUP)
        page_no = _int(q, "pageNo", 0, 0, None, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        size = _int(q, "pageSize", 10, 1, 1000, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        assert page_no is not None and size is not None
        lo = min(g.stop, g.start + page_no * size)
        hi = min(g.stop, lo + size)
        fleet = state.fleet
        ids = [fleet.device_id(i) for i in range(lo, hi)]
        return _iocm_list("deviceIds", ids, page_no, size, g.size)

    # devices --------------------------------------------------------------------------

    @app.get(f"{IOCM}/dm/v1.4.0/devices")
    async def devices(request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        if not q.get("gatewayId") and (q.get("pageNo") is None or q.get("pageNo") == ""):
            raise IoDMError(400, "100218", "The gatewayId and pageNo cannot be both null.")
        page_no = _int(q, "pageNo", 0, 0, None, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        size = _int(q, "pageSize", 25, 1, 250, bad=_IOCM_BAD, out_of_range=_IOCM_BAD)
        assert page_no is not None and size is not None
        sort = (q.get("sort") or "DESC").upper()
        if sort not in ("ASC", "DESC"):
            raise IoDMError(400, "100405", "The request parameter is invalid.")
        status = q.get("status") or None
        if status is not None and status not in STATUS_CODES:
            raise IoDMError(400, "100405", "The request parameter is invalid.")
        dtype = q.get("deviceType") or None
        fleet = state.fleet
        gateway = q.get("gatewayId") or None
        now = state.now()
        # candidate index ranges (groups are contiguous ranges of one model)
        ranges = [
            (g.start, g.stop) for g in fleet.groups if dtype is None or g.model.device_type == dtype
        ]
        if gateway is not None:
            gi = fleet.index_of(gateway)
            ranges = (
                [(gi, gi + 1)] if gi is not None and any(a <= gi < b for a, b in ranges) else []
            )
        if status is None:
            total = sum(b - a for a, b in ranges)

            def nth(k: int) -> int:
                for a, b in ranges:
                    if k < b - a:
                        return a + k
                    k -= b - a
                raise IndexError(k)

            order = range(total) if sort == "ASC" else range(total - 1, -1, -1)
            picked = [nth(k) for k in order[page_no * size : (page_no + 1) * size]]
        else:
            codes = state.status_codes()
            code = STATUS_CODES.index(status)
            parts = [a + np.flatnonzero(codes[a:b] == code) for a, b in ranges]
            matches = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
            if sort == "DESC":
                matches = matches[::-1]
            total = int(matches.size)
            picked = [int(i) for i in matches[page_no * size : (page_no + 1) * size]]
        return _iocm_list(
            "devices", [state.device_json(i, now) for i in picked], page_no, size, total
        )

    @app.get(f"{IOCM}/dm/v1.4.0/devices/{{deviceId}}")
    async def device(deviceId: str, request: Request) -> JSONResponse:
        northbound(request)
        index = _found(state.fleet.index_of(deviceId), _NO_DEVICE)
        return JSONResponse(state.device_json(index, state.now()))

    # packages -------------------------------------------------------------------------

    @app.get(f"{IODM}/category")
    async def categories(request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        page_no, size = _iodm_page(q)
        file_type = q.get("fileType") or None
        if file_type is not None and file_type not in ("firmwarePackage", "softwarePackage"):
            raise IoDMError(400, "120015", "Bad request error.")
        filters = {
            "deviceType": q.get("deviceType") or None,
            "model": q.get("model") or None,
            # the documented URL spells it manufactureName, the table manufacturerName
            "manufacturerName": q.get("manufacturerName") or q.get("manufactureName") or None,
            "version": q.get("version") or None,
        }
        rows = []
        with state.lock:
            pkgs = list(state.packages.values())
        for p in pkgs:
            j = p.to_json()
            if file_type is not None and j["fileType"] != file_type:
                continue
            if any(v is not None and j[k] != v for k, v in filters.items()):
                continue
            rows.append(j)
        return _iodm_list(rows[page_no * size : (page_no + 1) * size], page_no, size, len(rows))

    @app.get(f"{IODM}/category/{{fileId}}")
    async def category(fileId: str, request: Request) -> JSONResponse:
        northbound(request)
        return JSONResponse(_found(state.packages.get(fileId), _NO_PACKAGE).to_json())

    @app.delete(f"{IODM}/category/{{fileId}}")
    async def delete_category(fileId: str, request: Request) -> Response:
        northbound(request)
        with state.lock:
            if state.packages.pop(fileId, None) is None:
                raise IoDMError(404, "123002", "Device or package file not found.")
        return Response(status_code=200)

    # tasks ----------------------------------------------------------------------------

    async def create(kind: str, request: Request) -> JSONResponse:
        northbound(request)
        body = await _json_body(request)
        targets = body.get("targets")
        if isinstance(targets, dict) and targets.get("deviceGroups"):
            # group mode may name huge groups: plan them off the event loop
            task = await asyncio.to_thread(_create_task, state, kind, body)
        else:
            task = _create_task(state, kind, body)
        return JSONResponse({"operationId": task.operation_id})

    @app.post(f"{IODM}/operations/firmwareUpgrade")
    async def firmware_upgrade(request: Request) -> JSONResponse:
        return await create("firmware", request)

    @app.post(f"{IODM}/operations/softwareUpgrade")
    async def software_upgrade(request: Request) -> JSONResponse:
        return await create("software", request)

    @app.get(f"{IODM}/operations/{{operationId}}")
    async def operation(operationId: str, request: Request) -> JSONResponse:
        northbound(request)
        task = _found(state.tasks_by_id.get(operationId), _NO_TASK)
        return JSONResponse(state.task_json(task, state.now()))

    @app.get(f"{IODM}/operations/{{operationId}}/subOperations")
    async def sub_operations(operationId: str, request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        page_no, size = _iodm_page(q)
        status = q.get("subOperationStatus") or None
        if status is not None and status not in SUB_STATUSES:
            raise IoDMError(400, "120015", "Bad request error.")
        task = _found(state.tasks_by_id.get(operationId), _NO_TASK)
        now = state.now()
        if status is None:
            positions: list[int] | range = range(len(task.timelines))
        else:
            positions = [i for i, tl in enumerate(task.timelines) if state_at(tl, now) == status]
        page = positions[page_no * size : (page_no + 1) * size]
        data = [state.subtask_json(task, i, now) for i in page]
        return _iodm_list(data, page_no, size, len(positions))

    @app.get(f"{IODM}/operations")
    async def operations(request: Request) -> JSONResponse:
        northbound(request)
        q = request.query_params
        page_no, size = _iodm_page(q)
        op_type = q.get("operationType") or None
        if op_type is not None and op_type not in ("firmware_upgrade", "software_upgrade"):
            raise IoDMError(400, "120015", "Bad request error.")
        op_status = q.get("operationStatus") or None
        if op_status == "fail":
            op_status = "failed"
        if op_status is not None and op_status not in TASK_STATUSES:
            raise IoDMError(400, "120015", "Bad request error.")
        device_id = q.get("deviceId") or None
        dtype, model = q.get("deviceType") or None, q.get("model") or None
        manu = q.get("manufacturerName") or None
        now = state.now()
        with state.lock:
            if device_id is not None:
                index = state.fleet.index_of(device_id)
                seen: dict[str, Any] = {}
                for t, _ in state.device_tasks.get(index, []) if index is not None else []:
                    seen.setdefault(t.operation_id, t)
                tasks = list(seen.values())
            else:
                tasks = list(state.tasks)
        rows = []
        for t in tasks:
            m = t.package.model
            if op_type is not None and t.op_type != op_type:
                continue
            if dtype is not None and m.device_type != dtype:
                continue
            if model is not None and m.model != model:
                continue
            if manu is not None and m.manufacturer != manu:
                continue
            if op_status is not None and t.status(now) != op_status:
                continue
            rows.append(t)
        page = rows[page_no * size : (page_no + 1) * size]
        return _iodm_list([state.task_json(t, now) for t in page], page_no, size, len(rows))

    # notifications --------------------------------------------------------------------

    @app.post("/iodm/app/sub/v1.1.0/subscribe")
    async def subscribe(request: Request) -> Response:
        northbound(request)
        body = await _json_body(request)
        notify_type, url = body.get("notifyType"), _callback_url(body)
        if notify_type not in NOTIFY_TYPES:
            raise IoDMError(400, "100228", "The application input is invalid.")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise IoDMError(400, "100222", "Internal server error.")
        # tasks that already exist push what happens to them from now on
        await asyncio.to_thread(notifier.subscribe, notify_type, url)
        return Response(status_code=200)

    # admin ----------------------------------------------------------------------------

    faults = FaultMiddleware.install(app, state)
    clock_json = add_clock_and_fault_routes(
        app, clock=clock, clock_option=config.clock, faults=faults, wake=notifier.wake
    )

    @app.post("/sim/devices")
    async def sim_devices(request: Request) -> JSONResponse:
        body = await admin_body(request)
        try:
            changed = _set_devices(state, body)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"changed": changed})

    @app.get("/sim/stats")
    async def sim_stats(request: Request) -> JSONResponse:
        with_tasks = (request.query_params.get("tasks") or "true").lower() not in ("false", "0")
        return JSONResponse(state.stats(with_tasks=with_tasks))

    @app.get("/sim/info")
    async def sim_info() -> JSONResponse:
        return JSONResponse(
            {
                "devices": config.devices,
                "groups": [group_json(g) for g in state.fleet.groups],
                "packages": [p.to_json() for p in state.fleet.packages],
                "seed": config.seed,
                "rate_limit": config.rate_limit,
                "failure_rate": state.failure_rate,
                "clock": clock_json(),
                "app_id": config.app_id,
            }
        )

    return app


def _create_task(state: SimState, kind: str, body: dict[str, Any]) -> Any:
    """Validate a create-task body in the platform's order and create the task."""
    bad = IoDMError(400, "120015", "Bad request error.")
    file_id = body.get("fileId")
    if not isinstance(file_id, str) or not file_id:
        raise bad
    targets = body.get("targets")
    if targets is None:
        targets = {}
    if not isinstance(targets, dict):
        raise bad
    devices = targets.get("devices") or None
    groups = targets.get("deviceGroups") or None
    if devices is None and groups is None:
        raise IoDMError(400, "123022", "deviceGroups and devices cannot be null together")
    if devices is not None and groups is not None:
        raise IoDMError(400, "123023", "deviceGroups and devices cannot be exist together")
    listed = devices if devices is not None else groups
    if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
        raise bad
    if len(listed) > MAX_TARGETS:
        raise IoDMError(400, "123024", "The number of deviceGroups or devices reached upper limit")
    if groups is not None:
        if not targets.get("manufacturerName"):
            raise IoDMError(400, "123019", "manufacturerName is null.")
        if not targets.get("deviceType"):
            raise IoDMError(400, "123020", "deviceType is null")
        if not targets.get("model"):
            raise IoDMError(400, "123021", "model is null.")
    policy, policy_json = _policy(state, body.get("policy"))
    package = state.packages.get(file_id)
    if package is None:
        raise IoDMError(404, "123002", "Device or package file not found.")
    mismatch = IoDMError(
        400, "123016", "The parameter is error, targetversion not match with device."
    )
    wanted = "firmwarePackage" if kind == "firmware" else "softwarePackage"
    if package.file_type != wanted:
        raise mismatch
    m = package.model
    fleet = state.fleet
    indices: list[int] = []
    if devices is not None:
        seen: set[int] = set()
        for did in devices:
            index = fleet.index_of(did)
            if index is None:
                raise IoDMError(404, "123002", "Device or package file not found.")
            if fleet.model_of(index) != m:
                raise mismatch
            if index not in seen:
                seen.add(index)
                indices.append(index)
        targets_json: dict[str, Any] = {
            "deviceGroups": None,
            "deviceType": m.device_type,
            "model": m.model,
            "manufacturerName": m.manufacturer,
            "devices": [fleet.device_id(i) for i in indices],
        }
    else:
        if (targets["deviceType"], targets["model"], targets["manufacturerName"]) != (
            m.device_type,
            m.model,
            m.manufacturer,
        ):
            raise mismatch
        for name in dict.fromkeys(groups or []):
            g = fleet.groups_by_name.get(name)
            if g is None:
                raise IoDMError(404, "123002", "Device or package file not found.")
            if g.model == m:  # the platform upgrades the group members that match
                indices.extend(range(g.start, g.stop))
        if not indices:  # no member of the named groups fits the package
            raise mismatch
        targets_json = {
            "deviceGroups": list(dict.fromkeys(groups or [])),
            "deviceType": m.device_type,
            "model": m.model,
            "manufacturerName": m.manufacturer,
            "devices": None,
        }
    return state.create_task(
        kind=kind,
        package=package,
        indices=indices,
        policy=policy,
        policy_json=policy_json,
        targets_json=targets_json,
    )


def _policy(state: SimState, raw: Any) -> tuple[SimPolicy, dict[str, Any] | None]:
    if raw is None:
        return SimPolicy(), None
    if not isinstance(raw, dict):
        raise IoDMError(400, "120015", "Bad request error.")
    execute_type = raw.get("executeType")
    if execute_type not in EXECUTE_TYPES:
        raise IoDMError(400, "123025", "executeType is error or can not to be null.")
    start = end = None
    if execute_type == "custom":
        start, end = parse_time(raw.get("startTime")), parse_time(raw.get("endTime"))
        if start is None or end is None:
            raise IoDMError(400, "123026", "startTime or endTime is null or error.")
        if start > end:
            raise IoDMError(400, "123032", "startTime can not be later than the endTime.")
        if start < state.now() - 1:  # a second of grace for the wire format's truncation
            raise IoDMError(400, "123033", "startTime can not be earlier than the now.")
        if end - start < 300:
            raise IoDMError(400, "123034", "endtime must be greater than 5 minutes.")
    retry_type = raw.get("retryType", False)
    if retry_type is None:
        retry_type = False
    if not isinstance(retry_type, bool):
        raise IoDMError(400, "120015", "Bad request error.")
    retry_times = raw.get("retryTimes")
    if retry_type and retry_times is None:
        raise IoDMError(400, "123028", "retryTimes is null or beyond the limit.")
    if retry_times is not None and (
        isinstance(retry_times, bool)
        or not isinstance(retry_times, int)
        or not 1 <= retry_times <= 5
    ):
        raise IoDMError(400, "123028", "retryTimes is null or beyond the limit.")
    policy = SimPolicy(
        execute_type=execute_type,
        start=start,
        end=end,
        retry_times=retry_times if retry_type and retry_times else 0,
    )
    policy_json = {
        "executeType": execute_type,
        "startTime": raw.get("startTime") if execute_type == "custom" else None,
        "endTime": raw.get("endTime") if execute_type == "custom" else None,
        "retryType": retry_type,
        "retryTimes": retry_times,
    }
    return policy, policy_json


_CONNECTIVITY = {
    "online": (Connectivity.ALWAYS, 0),
    "always": (Connectivity.ALWAYS, 0),
    "offline": (Connectivity.OFFLINE, 0),
    "sleeper": (Connectivity.SLEEPER, 30),
}


def _set_devices(state: SimState, body: dict[str, Any]) -> int:
    """Apply ``POST /sim/devices``; returns how many devices/models/globals changed."""
    if body.get("__invalid__"):
        raise ValueError("the body must be a JSON object")
    known = {"device_ids", "models", "failure_rate", "connectivity", "wake_minutes"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; use {sorted(known)}")
    device_ids = body.get("device_ids")
    models = body.get("models")
    rate = body.get("failure_rate", ...)
    conn_name = body.get("connectivity")
    if (
        rate is not ...
        and rate is not None
        and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1)
    ):
        raise ValueError(f"failure_rate must be a number between 0 and 1 or null, not {rate!r}")
    conn: tuple[Connectivity, int] | None = None
    if conn_name is not None:
        if conn_name not in _CONNECTIVITY:
            raise ValueError(
                f"connectivity must be one of {sorted(_CONNECTIVITY)}, not {conn_name!r}"
            )
        conn = _CONNECTIVITY[conn_name]
        if conn[0] is Connectivity.SLEEPER:
            wake = body.get("wake_minutes", 30)
            if isinstance(wake, bool) or not isinstance(wake, int) or wake < 1:
                raise ValueError(f"wake_minutes must be a whole number >= 1, not {wake!r}")
            conn = (Connectivity.SLEEPER, wake)
    fleet = state.fleet
    changed = 0
    with state.lock:
        if device_ids is not None:
            if not isinstance(device_ids, list):
                raise ValueError("device_ids must be a list of device IDs")
            indices = []
            for did in device_ids:
                index = fleet.index_of(did) if isinstance(did, str) else None
                if index is None:
                    raise ValueError(f"unknown device ID {did!r}")
                indices.append(index)
            for index in indices:
                if rate is not ...:
                    if rate is None:
                        state.device_fail.pop(index, None)
                    else:
                        state.device_fail[index] = float(rate)
                if conn is not None:
                    state.device_conn[index] = conn
                changed += 1
        if models is not None:
            if not isinstance(models, list):
                raise ValueError("models must be a list of model names")
            names = {g.model.model for g in fleet.groups} | {p.model.model for p in fleet.packages}
            for name in models:
                if name not in names:
                    raise ValueError(f"unknown model {name!r}; models: {sorted(names)}")
            for name in models:
                if rate is not ...:
                    if rate is None:
                        state.model_fail.pop(name, None)
                    else:
                        state.model_fail[name] = float(rate)
                if conn is not None:
                    state.model_conn[name] = conn
                changed += 1
        if device_ids is None and models is None:
            if conn is not None:
                raise ValueError("connectivity needs device_ids or models")
            if rate is ... or rate is None:
                raise ValueError("give failure_rate, with device_ids or models, or alone (global)")
            state.failure_rate = float(rate)
            changed = 1
        state._status_cache = None
    return changed
