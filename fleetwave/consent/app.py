"""The end-user consent API: a FastAPI app with the operations of the Quectel OTA
end-user flow (plan, confirm/appoint/cancel, details, auto-confirm switch, app-delivered
plans and status reports), over the store.

Every call needs ``Authorization: Bearer <token>`` (an owner's token, stored hashed); an
owner sees and acts on only their devices. A request is all or nothing: a 401, a 403 or
any refused item changes nothing. Every change is written to the event log with the owner
and the time. Access logs stay off and no token is ever logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session

from fleetwave import __version__, store
from fleetwave.consent.rules import (
    RELEASED,
    Answer,
    AppReport,
    ConsentAction,
    ConsentErrorCode,
    Refusal,
    decide_answer,
    decide_report,
    http_status,
    upgrade_status,
)
from fleetwave.serving import ThreadedServer
from fleetwave.store.consent import ActiveConsent
from fleetwave.store.models import ConsentPlan, ConsentState

__all__ = [
    "HEALTH_PATH",
    "MAX_BATCH",
    "SERVICE",
    "ConsentApiError",
    "ConsentServer",
    "create_consent_app",
]

log = logging.getLogger(__name__)

MAX_BATCH = 100
"""Most devices in one batch call."""

HEALTH_PATH = "/health"
"""The one unauthenticated endpoint: which service this is and which store it serves."""

SERVICE = "fleetwave-consent-api"
"""The ``service`` the health endpoint answers (how a flow run recognises a consent API)."""


class ConsentApiError(Exception):
    """A refused request: its stable code, HTTP status, message and the refused items."""

    def __init__(
        self,
        code: ConsentErrorCode,
        message: str,
        *,
        items: Sequence[dict[str, Any]] = (),
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.items = list(items)
        self.status = status if status is not None else http_status(code)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.items:
            error["items"] = self.items
        return {"error": error}


# ---- request bodies ----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ConfirmItem(_Body):
    """One device's answer."""

    device_id: str = Field(alias="deviceId", min_length=1, max_length=128)
    action: ConsentAction
    appoint_start: AwareDatetime | None = Field(default=None, alias="appointStart")
    appoint_end: AwareDatetime | None = Field(default=None, alias="appointEnd")


class BatchConfirmBody(_Body):
    """``userBatchConfirmUpgrade``: answers for up to :data:`MAX_BATCH` devices."""

    items: list[ConfirmItem] = Field(min_length=1, max_length=MAX_BATCH)


class BatchDetailsBody(_Body):
    """``getBatchUpgradeDetails``: up to :data:`MAX_BATCH` devices."""

    device_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        alias="deviceIds", min_length=1, max_length=MAX_BATCH
    )


class AutoSwitchBody(_Body):
    """``setAutoUpgradeSwitch``."""

    device_id: str = Field(alias="deviceId", min_length=1, max_length=128)
    enabled: bool


class DeviceBody(_Body):
    """``deleteDeviceUpgrade``: the device whose auto-confirmation ends."""

    device_id: str = Field(alias="deviceId", min_length=1, max_length=128)


class ReportBody(_Body):
    """``reportUpgradeStatus`` from the app of an app-delivered device."""

    device_id: str = Field(alias="deviceId", min_length=1, max_length=128)
    status: AppReport
    version: str | None = Field(default=None, max_length=100)
    detail: str | None = Field(default=None, max_length=500)


# ---- helpers -----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _windows(plan: ConsentPlan) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in plan.windows]


def _actor(owner: str) -> str:
    return f"owner:{owner}"


def _consent_view(found: ActiveConsent) -> dict[str, Any]:
    c = found.consent
    return {
        "deviceId": c.device_id,
        "campaign": found.campaign_name,
        "state": c.state.value,
        "appointStart": _iso(c.appoint_start),
        "appointEnd": _iso(c.appoint_end),
        "retries": c.retries,
        "answeredAt": _iso(c.answered_at),
        "upgradeStatus": upgrade_status(c.state, found.run_status, c.app_status),
        "appStatus": c.app_status,
    }


def _plan_view(found: ActiveConsent) -> dict[str, Any]:
    plan = found.plan
    return {
        "campaign": found.campaign_name,
        "targetVersion": plan.target_version,
        "description": plan.description,
        "delivery": plan.delivery,
        "period": {"start": _iso(plan.period_start), "end": _iso(plan.period_end)},
        "windows": [{"start": _iso(s), "end": _iso(e)} for s, e in _windows(plan)],
        "minAppointmentSeconds": 3600,
    }


def _authorize(session: Session, owner: str, device_ids: Sequence[str]) -> None:
    """403 if any device belongs to someone else, 404 if any has no owner at all."""
    owners = store.device_owners(session, device_ids=device_ids)
    foreign = [d for d in device_ids if d in owners and owners[d] != owner]
    if foreign:
        raise ConsentApiError(
            ConsentErrorCode.NOT_OWNER,
            f"device {foreign[0]} is not yours; nothing was changed",
            items=[{"deviceId": d, "code": ConsentErrorCode.NOT_OWNER.value} for d in foreign],
        )
    unknown = [d for d in device_ids if d not in owners]
    if unknown:
        raise ConsentApiError(
            ConsentErrorCode.UNKNOWN_DEVICE,
            f"device {unknown[0]} is unknown (no owner imported); check the device ID",
            items=[{"deviceId": d, "code": ConsentErrorCode.UNKNOWN_DEVICE.value} for d in unknown],
        )


def _in_plans(
    session: Session, device_ids: Sequence[str], *, now: datetime, for_update: bool = False
) -> dict[str, ActiveConsent]:
    """The devices' open plans: in a campaign that holds them, or in a completed one whose
    plan period has not ended (retries after the waves). A device whose newest plan is a
    completed campaign's that ended is ``PLAN_ENDED``; one in no plan ``NOT_IN_PLAN``."""
    found = store.active_consents(session, device_ids=device_ids, for_update=for_update, now=now)
    missing = [d for d in device_ids if d not in found]
    ended = store.ended_consent_plans(session, device_ids=missing, now=now) if missing else {}
    if ended:
        first = next(d for d in missing if d in ended)
        name, end = ended[first]
        raise ConsentApiError(
            ConsentErrorCode.PLAN_ENDED,
            f"device {first}: the upgrade plan of campaign {name} ended at {_iso(end)}; "
            "nothing can be confirmed or retried in it any more (a later campaign may "
            "offer the upgrade again)",
            items=[
                {"deviceId": d, "code": ConsentErrorCode.PLAN_ENDED.value}
                for d in missing
                if d in ended
            ],
        )
    if missing:
        raise ConsentApiError(
            ConsentErrorCode.NOT_IN_PLAN,
            f"device {missing[0]} is in no open upgrade plan",
            items=[{"deviceId": d, "code": ConsentErrorCode.NOT_IN_PLAN.value} for d in missing],
        )
    return found


def _refused(refusals: list[tuple[str, Refusal]]) -> ConsentApiError:
    first = refusals[0][1]
    return ConsentApiError(
        first.code,
        first.message + ("" if len(refusals) == 1 else f" (and {len(refusals) - 1} more)"),
        items=[{"deviceId": d, "code": r.code.value, "message": r.message} for d, r in refusals],
    )


def _owner(request: Request) -> str:
    """The owner whose bearer token the request carries (401 otherwise; never logged)."""
    raw = request.headers.get("authorization", "")
    scheme, _, token = raw.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ConsentApiError(
            ConsentErrorCode.UNAUTHENTICATED,
            "send 'Authorization: Bearer <token>' (ask the operator for your token)",
        )
    engine: Engine = request.app.state.engine
    with store.session_scope(engine, read_only=True) as session:
        who = store.owner_for_token(session, token=token.strip())
    if who is None:
        raise ConsentApiError(
            ConsentErrorCode.UNAUTHENTICATED, "the token is unknown or was replaced"
        )
    return who


Owner = Annotated[str, Depends(_owner)]
DeviceId = Annotated[str, Query(alias="deviceId", min_length=1, max_length=128)]


# ---- the app -----------------------------------------------------------------------------


def create_consent_app(*, engine: Engine, now: Callable[[], datetime]) -> FastAPI:
    """The end-user API over the store at ``engine``; ``now`` is the campaign clock (UTC)."""
    app = FastAPI(
        title="fleetwave end-user consent API",
        version="1",
        description="Confirm, appoint or cancel firmware upgrades of your devices "
        "(see docs/consent-api.md).",
    )
    app.state.engine = engine
    fingerprint = store.store_fingerprint(engine)

    def clock() -> datetime:
        return now().astimezone(UTC)

    @app.exception_handler(ConsentApiError)
    async def _api_error(request: Request, exc: ConsentApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI parses a JSON body before it runs the token dependency: a caller without
        # a valid token gets the 401, never a validation error
        try:
            await run_in_threadpool(_owner, request)
        except ConsentApiError as refused:
            return JSONResponse(refused.body(), status_code=refused.status)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        err = ConsentApiError(ConsentErrorCode.INVALID_REQUEST, msg)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(store.StoreError)
    async def _store_error(request: Request, exc: store.StoreError) -> JSONResponse:
        log.warning("consent API: %s on %s", exc.code, request.url.path)
        return JSONResponse(
            {
                "error": {
                    "code": "UNAVAILABLE",
                    "message": "the store is busy or unreachable; nothing was changed, retry later",
                }
            },
            status_code=503,
        )

    @app.get(HEALTH_PATH)
    def health() -> dict[str, Any]:
        """Unauthenticated: this service's name, fleetwave's version and a hash naming the
        store it serves (never its URL), so a flow run can tell whether to reuse it."""
        return {"service": SERVICE, "version": __version__, "store": fingerprint}

    @app.get("/enduserapi/v2/getDeviceUpgradePlan")
    def get_device_upgrade_plan(who: Owner, device_id: DeviceId) -> dict[str, Any]:
        """The device's open upgrade plan and its consent (404 NOT_IN_PLAN when none)."""
        with store.session_scope(engine, read_only=True) as session:
            _authorize(session, who, [device_id])
            found = _in_plans(session, [device_id], now=clock())[device_id]
            consent = _consent_view(found)
            actions = [a.value for a in ConsentAction]
            if found.consent.state is ConsentState.EXPIRED:
                actions = []
            return {"data": {**_plan_view(found), "consent": consent, "actions": actions}}

    @app.post("/enduserapi/v2/userBatchConfirmUpgrade")
    def user_batch_confirm_upgrade(who: Owner, body: BatchConfirmBody) -> dict[str, Any]:
        """Confirm, appoint or cancel for each device (also the retry after a failure);
        all or nothing."""
        ids = [item.device_id for item in body.items]
        if len(set(ids)) != len(ids):
            raise ConsentApiError(
                ConsentErrorCode.INVALID_REQUEST, "a device appears twice in items; send it once"
            )
        at = clock()
        with store.session_scope(engine) as session:
            _authorize(session, who, ids)
            found = _in_plans(session, ids, now=at, for_update=True)
            answers: list[tuple[ConfirmItem, Answer]] = []
            refusals: list[tuple[str, Refusal]] = []
            for item in body.items:
                f = found[item.device_id]
                c = f.consent
                plan = f.plan
                decided = decide_answer(
                    device_id=item.device_id,
                    action=item.action,
                    current=c.state,
                    run_status=f.run_status,
                    run_finished_at=f.run_finished_at,
                    answered_at=c.answered_at,
                    now=at,
                    period=(plan.period_start, plan.period_end),
                    windows=_windows(plan),
                    appoint_start=_utc(item.appoint_start),
                    appoint_end=_utc(item.appoint_end),
                    app_status=c.app_status,
                    current_appointment=(c.appoint_start, c.appoint_end),
                )
                if isinstance(decided, Refusal):
                    refusals.append((item.device_id, decided))
                else:
                    answers.append((item, decided))
            if refusals:
                raise _refused(refusals)
            results = []
            for item, answer in answers:
                f = found[item.device_id]
                before = f.consent.state
                if answer.changed:
                    store.set_consent(
                        session,
                        consent=f.consent,
                        state=answer.state,
                        actor=_actor(who),
                        now=at,
                        appoint_start=answer.appoint_start,
                        appoint_end=answer.appoint_end,
                        retry=answer.retry,
                    )
                    store.append_event(
                        session,
                        campaign_id=f.consent.campaign_id,
                        kind="consent.retry" if answer.retry else f"consent.{answer.state.value}",
                        subject=item.device_id,
                        actor=_actor(who),
                        now=at,
                        data={
                            "action": item.action.value,
                            "from": before.value,
                            "to": answer.state.value,
                            "appoint_start": _iso(answer.appoint_start),
                            "appoint_end": _iso(answer.appoint_end),
                            "retries": f.consent.retries,
                        },
                    )
                results.append({**_consent_view(f), "changed": answer.changed})
            return {"data": {"results": results}}

    @app.post("/enduserapi/v2/getBatchUpgradeDetails")
    def get_batch_upgrade_details(who: Owner, body: BatchDetailsBody) -> dict[str, Any]:
        """Consent and upgrade status of each device (those in no plan say so)."""
        ids = list(dict.fromkeys(body.device_ids))
        with store.session_scope(engine, read_only=True) as session:
            _authorize(session, who, ids)
            found = store.active_consents(session, device_ids=ids, now=clock())
            details = []
            for d in ids:
                if d in found:
                    details.append(_consent_view(found[d]))
                else:
                    details.append({"deviceId": d, "state": None, "upgradeStatus": "no_plan"})
            return {"data": {"details": details}}

    def _switch(who: str, device_id: str, enabled: bool) -> dict[str, Any]:
        at = clock()
        with store.session_scope(engine) as session:
            _authorize(session, who, [device_id])
            changed = store.set_auto_upgrade(
                session, device_id=device_id, enabled=enabled, actor=_actor(who), now=at
            )
            if changed:
                store.append_event(
                    session,
                    campaign_id=None,
                    kind="consent.auto_switch",
                    subject=device_id,
                    actor=_actor(who),
                    now=at,
                    data={"enabled": enabled},
                )
            return {"data": {"deviceId": device_id, "enabled": enabled, "changed": changed}}

    @app.post("/enduserapi/setAutoUpgradeSwitch")
    def set_auto_upgrade_switch(who: Owner, body: AutoSwitchBody) -> dict[str, Any]:
        """Switch the device's auto-confirmation on or off (it outlives campaigns)."""
        return _switch(who, body.device_id, body.enabled)

    @app.post("/enduserapi/deleteDeviceUpgrade")
    def delete_device_upgrade(who: Owner, body: DeviceBody) -> dict[str, Any]:
        """End the device's auto-confirmation (the same as switching it off)."""
        return _switch(who, body.device_id, False)

    @app.get("/enduserapi/getAutoUpgradeSwitch")
    def get_auto_upgrade_switch(who: Owner, device_id: DeviceId) -> dict[str, Any]:
        """Whether the device's auto-confirmation is on."""
        with store.session_scope(engine, read_only=True) as session:
            _authorize(session, who, [device_id])
            enabled = store.auto_upgrade_states(session, device_ids=[device_id]).get(
                device_id, False
            )
        return {"data": {"deviceId": device_id, "enabled": enabled}}

    @app.get("/enduserapi/getFetchPlan")
    def get_fetch_plan(who: Owner, device_id: DeviceId) -> dict[str, Any]:
        """For an app-delivered device: the plan with the package's location and checksum."""
        with store.session_scope(engine, read_only=True) as session:
            _authorize(session, who, [device_id])
            found = _in_plans(session, [device_id], now=clock())[device_id]
            if found.plan.delivery != "app":
                raise ConsentApiError(
                    ConsentErrorCode.NOT_APP_DELIVERED,
                    f"device {device_id}: this plan is delivered by the platform; "
                    "use getDeviceUpgradePlan",
                )
            plan = found.plan
            released = found.run_status in RELEASED
            package = {
                "url": plan.package_url,
                "sha256": plan.package_sha256,
                "size": plan.package_size,
                "version": plan.target_version,
            }
            return {
                "data": {
                    **_plan_view(found),
                    "consent": _consent_view(found),
                    "released": released,
                    "package": package if released else None,
                }
            }

    @app.post("/enduserapi/reportUpgradeStatus")
    def report_upgrade_status(who: Owner, body: ReportBody) -> dict[str, Any]:
        """The app reports consent (``confirmed``), progress or the final result."""
        at = clock()
        with store.session_scope(engine) as session:
            _authorize(session, who, [body.device_id])
            f = _in_plans(session, [body.device_id], now=at, for_update=True)[body.device_id]
            c = f.consent
            decided = decide_report(
                device_id=body.device_id,
                report=body.status,
                delivery=f.plan.delivery,
                current=c.state,
                app_status=c.app_status,
                released=f.run_status in RELEASED,
            )
            if isinstance(decided, Refusal):
                raise _refused([(body.device_id, decided)])
            if decided.changed:
                before = c.state
                if decided.state is not c.state:
                    store.set_consent(
                        session, consent=c, state=decided.state, actor=_actor(who), now=at
                    )
                store.record_app_report(
                    session,
                    consent=c,
                    status=body.status.value,
                    version=body.version,
                    detail=body.detail,
                    now=at,
                )
                store.append_event(
                    session,
                    campaign_id=c.campaign_id,
                    kind="consent.app_report",
                    subject=body.device_id,
                    actor=_actor(who),
                    now=at,
                    data={
                        "status": body.status.value,
                        "from": before.value,
                        "to": decided.state.value,
                        "version": body.version,
                        "detail": body.detail,
                    },
                )
            return {"data": {**_consent_view(f), "changed": decided.changed}}

    return app


class ConsentServer(ThreadedServer):
    """uvicorn serving the consent app on a socket bound at construction (port known)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__(app, host, port, name="consent API", lifespan="off")
