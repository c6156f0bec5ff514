"""The admin routes both simulators share (``/sim/clock``, ``/sim/clock/advance``,
``/sim/faults``) and the admin API's body and error helpers; each simulator adds its own
admin routes beside them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fleetwave.clock import Clock, ManualClock
from fleetwave.sim.faults import FaultController

__all__ = ["add_clock_and_fault_routes", "admin_body", "admin_error"]


def admin_error(status: int, message: str) -> JSONResponse:
    """An admin API refusal: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status)


async def admin_body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} when empty; ``{"__invalid__": True}`` when not one)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {"__invalid__": True}
    return body if isinstance(body, dict) else {"__invalid__": True}


def add_clock_and_fault_routes(
    app: FastAPI,
    *,
    clock: Clock,
    clock_option: str,
    faults: FaultController,
    wake: Callable[[], None],
) -> Callable[[], dict[str, Any]]:
    """Add the shared admin routes; ``clock_option`` is the simulator's clock setting,
    ``wake`` tells its pusher that time moved. Returns the clock's JSON view (for
    ``/sim/info``)."""

    def clock_json() -> dict[str, Any]:
        mode = (
            "manual"
            if isinstance(clock, ManualClock)
            else ("real" if clock_option == "real" else clock_option)
        )
        return {"now": clock.now().in_tz("UTC").isoformat(), "mode": mode}

    @app.get("/sim/clock")
    async def sim_clock() -> JSONResponse:
        return JSONResponse(clock_json())

    @app.post("/sim/clock/advance")
    async def sim_advance(request: Request) -> JSONResponse:
        body = await admin_body(request)
        seconds = body.get("seconds")
        if not isinstance(clock, ManualClock):
            return admin_error(409, f"the clock is {clock_option!r}; only a manual clock advances")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return admin_error(400, '"seconds" must be a number >= 0, e.g. {"seconds": 60}')
        clock.advance(float(seconds))
        wake()
        return JSONResponse(clock_json())

    @app.get("/sim/faults")
    async def sim_get_faults() -> JSONResponse:
        return JSONResponse(faults.describe())

    @app.post("/sim/faults")
    async def sim_faults(request: Request) -> JSONResponse:
        body = await admin_body(request)
        try:
            faults.configure(body)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(faults.describe())

    return clock_json
