"""Everything the ThingSpace simulator remembers: tokens, M2M sessions, FOTA v1 upgrades and
v2 campaigns, licenses, callbacks, call counts; and the rules that validate requests.

Statuses are not stored: they are evaluated at "now" on the simulator clock from each
request's dates, windows and the seeded device plans (:mod:`.timeline`).
"""

from __future__ import annotations

import bisect
import datetime
import math
import re
import secrets
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pendulum

from fleetwave.clock import Clock
from fleetwave.sim.fleet import Connectivity, DeviceModel, Fleet, hash64, hash_u
from fleetwave.sim.thingspace.catalog import FILE_BASE_VERSION, Catalog, distribution_of
from fleetwave.sim.thingspace.config import TSConfig
from fleetwave.sim.thingspace.timeline import (
    DAY_S,
    DevicePlan,
    DeviceTraits,
    Window,
    plan_device,
)

__all__ = [
    "ACCEPT_DELAY_S",
    "MAX_DEVICES",
    "SESSION_IDLE_S",
    "TOKEN_TTL_S",
    "FotaError",
    "GatewayError",
    "OAuthError",
    "Request",
    "Summary",
    "TSState",
    "fmt_time",
]

TOKEN_TTL_S = 3600
SESSION_IDLE_S = 20 * 60
MAX_FAILED_LOGINS = 5
ACCEPT_DELAY_S = 120.0  # RequestPending -> Queued / CampaignRequestPending -> ...Queued
MAX_DEVICES = 10_000  # IMEIs in one request
V1_REPORT_PAGE = 100
V1_DEVICE_PAGE = 1000
V2_DEVICE_PAGE = 1000
V2_CAMPAIGN_PAGE = 100
_SALT_REQUEST_FAIL = 41

SM = "SoftwareManagementService"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}($|T)")  # a date, or the date of a date-time
UWS = "UnifiedWebService"

V1_STATUSES = (
    "RequestPending",
    "Queued",
    "InProgress",
    "Finished",
    "RequestFailed",
    "UpgradeFailed",
)
V2_STATUSES = (
    "CampaignRequestPending",
    "CampaignRequestFailed",
    "CampaignRequestQueued",
    "CampaignScheduled",
    "CampaignEnded",
    "CampaignCancelled",
    "CampaignAborted",
    "CampaignFailed",
)
REASON_CANCELLED = "The campaign was cancelled before the device started"
REASON_REJECTED_MODEL = "The device make/model does not match the campaign"
REASON_REJECTED_VERSION = "The device is not on the campaign's from version"
REASON_REJECTED_TYPE = "The device does not support the campaign's distribution type"


class FotaError(Exception):
    """An API error: HTTP ``status`` with ``{"errorCode", "errorMessage"}``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"errorCode": self.code, "errorMessage": self.message}


class GatewayError(Exception):
    """The API gateway's answer: ``{"fault": {"code", "message", "description"}}``."""

    def __init__(self, status: int, code: str, message: str, description: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.description = description
        self.retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        return {
            "fault": {"code": self.code, "message": self.message, "description": self.description}
        }


def invalid(what: str, message: str) -> FotaError:
    return FotaError(f"{SM}.INPUT_INVALID.{what}", message)


def failed(what: str, message: str) -> FotaError:
    return FotaError(f"{SM}.REQUEST_FAILED.{what}", message)


def parse_date(value: Any, name: str, *, required: bool = True) -> pendulum.Date | None:
    """A ``YYYY-MM-DD`` date of the request body, or a 400 naming the field."""
    if value is None or value == "":
        if required:
            raise invalid(_cap(name), f"{name} is required (YYYY-MM-DD)")
        return None
    if not isinstance(value, str):
        raise invalid(_cap(name), f"{name} must be a date string YYYY-MM-DD, not {value!r}")
    try:
        if not _DATE.match(value):
            raise ValueError(value)
        parsed = datetime.date.fromisoformat(value[:10])
    except ValueError:
        raise invalid(_cap(name), f"{name} {value!r} is not a date YYYY-MM-DD") from None
    return pendulum.Date(parsed.year, parsed.month, parsed.day)


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def day_start(d: pendulum.Date) -> float:
    return pendulum.datetime(d.year, d.month, d.day, tz="UTC").timestamp()


def parse_windows(value: Any, name: str) -> list[Window]:
    """``[{startTime 0-23, endTime 1-24}]`` with startTime < endTime, or a 400 naming the field."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("TimeWindow", f"{name} must be a list of {{startTime, endTime}}")
    out: list[Window] = []
    for i, w in enumerate(value):
        if not isinstance(w, Mapping):
            raise invalid("TimeWindow", f"{name}[{i}] must be an object {{startTime, endTime}}")
        s, e = w.get("startTime"), w.get("endTime")
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 23:
            raise invalid("TimeWindow", f"{name}[{i}].startTime must be an hour 0-23, not {s!r}")
        if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= 24:
            raise invalid("TimeWindow", f"{name}[{i}].endTime must be an hour 1-24, not {e!r}")
        if s >= e:
            raise invalid(
                "TimeWindow",
                f"{name}[{i}]: startTime {s} must be before endTime {e} "
                "(a window cannot cross midnight; send two windows)",
            )
        out.append((s, e))
    return out


def windows_json(windows: Sequence[Window]) -> list[dict[str, int]]:
    return [{"startTime": s, "endTime": e} for s, e in windows]


@dataclass(frozen=True, slots=True)
class Summary:
    """What a request's status needs of its devices, computed once per change of its plans."""

    first_start: float  # when the first device started (inf: none will)
    last_done: float  # when every device is done (inf: some never will)
    any_success: bool


@dataclass
class Request:
    """One FOTA v1 upgrade or v2 campaign."""

    id: str
    api: str  # "v1" | "v2"
    seq: int
    kind: str  # "firmware" | "software" | "file"
    package: str  # firmwareName | softwareName | fileName
    from_version: str
    to_version: str
    model: DeviceModel
    created: float
    accept_at: float
    request_failed: bool
    start_date: pendulum.Date
    end_date: pendulum.Date | None
    campaign_name: str | None = None
    distribution_type: str | None = None
    download_after: pendulum.Date | None = None
    install_after: pendulum.Date | None = None
    download_windows: list[Window] = field(default_factory=list)
    install_windows: list[Window] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # IMEIs in request order
    index: dict[str, int] = field(default_factory=dict)  # IMEI -> fleet index
    position: dict[str, int] = field(default_factory=dict)  # IMEI -> position in devices
    rejected: dict[str, str] = field(default_factory=dict)  # IMEI -> reason (v2)
    cancelled_at: float | None = None
    cancel_status: str | None = None
    plans: dict[int, DevicePlan] = field(default_factory=dict)
    events: list[float] | None = None  # sorted instants when something changes
    event_devices: list[str] = field(default_factory=list)  # IMEI of each event ("": request)
    summary: Summary | None = None
    pushed: dict[str, Any] = field(default_factory=dict)  # callbacks: last pushed snapshot

    @property
    def start_at(self) -> float:
        return day_start(self.start_date)

    @property
    def end_at(self) -> float | None:
        return None if self.end_date is None else day_start(self.end_date) + DAY_S

    @property
    def ready_at(self) -> float:
        after = day_start(self.download_after) if self.download_after else 0.0
        return max(self.accept_at, self.start_at, after)

    def set_devices(self, imeis: Iterable[tuple[str, int]]) -> None:
        self.devices = []
        self.index = {}
        for imei, i in imeis:
            self.devices.append(imei)
            self.index[imei] = i
        self.position = {imei: p for p, imei in enumerate(self.devices)}
        self.invalidate()

    def invalidate(self) -> None:
        self.plans = {}
        self.events = None
        self.summary = None


class TSState:
    """The simulator's memory, behind one lock."""

    def __init__(self, config: TSConfig, clock: Clock) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.fleet = Fleet(config.devices, config.groups, config.seed)
        self.catalog = Catalog(self.fleet)
        self.lock = threading.RLock()
        self.failure_rate = config.failure_rate
        self.tokens: dict[str, float] = {}  # access token -> expiry
        self.sessions: dict[str, float] = {}  # session token -> last use
        self.failed_logins = 0
        self.locked = False
        self.token_requests = 0
        self.logins = 0
        self.requests: dict[str, Request] = {}
        self._seq = 0
        self._change_seq = 0
        self.device_requests: dict[int, list[Request]] = defaultdict(list)
        self.licensed: set[int] = set()
        self.device_fail: dict[int, float] = {}
        self.model_fail: dict[str, float] = {}
        self.device_conn: dict[int, tuple[Connectivity, int]] = {}
        self.model_conn: dict[str, tuple[Connectivity, int]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {}  # "v1" | "v2" -> registration
        self.calls: dict[str, Counter[str]] = defaultdict(Counter)
        self._throttle_window = -1
        self._throttle_count = 0
        self.pushes: Counter[str] = Counter()
        self.pushed_bodies: list[dict[str, Any]] = []  # the last bodies, for /sim/callbacks

    # time -----------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now().timestamp()

    def today(self) -> pendulum.Date:
        return self.clock.now().in_tz("UTC").date()

    # gateway: OAuth token, rate limit ---------------------------------------------------

    def issue_token(self, client_key: str, client_secret: str) -> dict[str, Any]:
        if client_key != self.config.client_key or not secrets.compare_digest(
            client_secret, self.config.client_secret
        ):
            raise _oauth_error(401, "invalid_client", "Client authentication failed")
        with self.lock:
            self.token_requests += 1
            now = self.now()
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
            token = secrets.token_hex(16)
            self.tokens[token] = now + TOKEN_TTL_S
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_S,
            "scope": "default",
        }

    def check_token(self, authorization: str | None, api: str) -> None:
        if not authorization:
            raise GatewayError(
                401,
                "900902",
                "Missing Credentials",
                "Required OAuth credentials not provided. Make sure your API invocation call "
                'has a header: "Authorization: Bearer ACCESS_TOKEN"',
            )
        scheme, _, token = authorization.strip().partition(" ")
        with self.lock:
            expiry = self.tokens.get(token.strip())
            if scheme.lower() != "bearer" or expiry is None or self.now() >= expiry:
                raise GatewayError(
                    401,
                    "900901",
                    "Invalid Credentials",
                    f"Access failure for API: {'/'.join(api.split('/')[:4])}, version: v1. "
                    "Make sure you have given the correct access token",
                )

    def throttle(self) -> None:
        limit = self.config.rate_limit
        if limit <= 0:
            return
        with self.lock:
            now = self.now()
            window = int(now // 60)
            if window != self._throttle_window:
                self._throttle_window = window
                self._throttle_count = 0
            self._throttle_count += 1
            if self._throttle_count > limit:
                err = GatewayError(
                    429,
                    "900800",
                    "Message throttled out",
                    f"You have exceeded your quota of {limit} calls a minute",
                )
                err.retry_after = max(1, int(60 - now % 60))
                raise err

    def revoke_token(self) -> None:
        """Fault injection: every access token and session stops working."""
        with self.lock:
            self.tokens.clear()
            self.sessions.clear()

    def expire_sessions(self) -> int:
        with self.lock:
            n = len(self.sessions)
            self.sessions.clear()
            return n

    # M2M session -----------------------------------------------------------------------

    def login(self, body: Mapping[str, Any]) -> dict[str, str]:
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, str):
            raise FotaError(
                f"{UWS}.INPUT_INVALID.Credentials", "username and password are required"
            )
        with self.lock:
            if self.locked:
                raise FotaError(
                    f"{UWS}.SECURITY.UserLocked",
                    f"user {username} is locked after {MAX_FAILED_LOGINS} failed logins; "
                    "reset the password in the ThingSpace portal",
                )
            if username != self.config.username or not secrets.compare_digest(
                password, self.config.password
            ):
                self.failed_logins += 1
                if self.failed_logins >= MAX_FAILED_LOGINS:
                    self.locked = True
                left = MAX_FAILED_LOGINS - self.failed_logins
                raise FotaError(
                    f"{UWS}.SECURITY.InvalidCredentials",
                    f"invalid username or password ({max(0, left)} attempts left before the "
                    "user is locked)",
                )
            self.failed_logins = 0
            self.logins += 1
            now = self.now()
            self.sessions = {
                t: last for t, last in self.sessions.items() if now - last < SESSION_IDLE_S
            }
            token = secrets.token_hex(16)
            self.sessions[token] = now
            return {"sessionToken": token}

    def logout(self, session: str | None) -> dict[str, str]:
        with self.lock:
            self.check_session(session)
            assert session is not None
            del self.sessions[session]
            return {"sessionToken": session}

    def unlock(self) -> None:
        with self.lock:
            self.locked = False
            self.failed_logins = 0

    def check_session(self, session: str | None) -> None:
        if not session:
            raise FotaError(
                f"{UWS}.SECURITY.SessionToken.Missing",
                "the VZ-M2M-Token header is required (POST /api/m2m/v1/session/login)",
            )
        with self.lock:
            last = self.sessions.get(session)
            now = self.now()
            if last is None or now - last >= SESSION_IDLE_S:
                self.sessions.pop(session, None)
                raise FotaError(
                    f"{UWS}.SECURITY.SessionToken.Expired",
                    "the M2M session token is invalid or expired (20 minutes unused); log in again",
                )
            self.sessions[session] = now

    # accounts and devices ---------------------------------------------------------------

    def check_account(self, account: str) -> None:
        if account != self.config.account:
            raise invalid("AccountName", f"account {account!r} is not an account of this client")

    def traits(self, index: int) -> DeviceTraits:
        model = self.fleet.model_of(index)
        conn, wake = self.device_conn.get(index) or self.model_conn.get(
            model.model, self.fleet.base_connectivity(index)
        )
        rate = self.device_fail.get(index, self.model_fail.get(model.model))
        if rate is None:
            rate = model.failure_rate if model.failure_rate is not None else self.failure_rate
        return DeviceTraits(index, conn, wake, self.fleet.wake_phase(index), model.duration_s, rate)

    def set_devices(self, body: Mapping[str, Any]) -> int:
        """``POST /sim/devices``: failure rate and connectivity overrides by IMEI or model, for
        plans computed afterwards (requests created or re-dated later). Raises ValueError."""
        known = {"device_ids", "models", "failure_rate", "connectivity", "wake_minutes"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; use {sorted(known)}")
        rate = body.get("failure_rate", ...)
        if (
            rate is not ...
            and rate is not None
            and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1)
        ):
            raise ValueError(f"failure_rate must be a number between 0 and 1 or null, not {rate!r}")
        conn: tuple[Connectivity, int] | None = None
        name = body.get("connectivity")
        if name is not None:
            choices = {"online": Connectivity.ALWAYS, "offline": Connectivity.OFFLINE}
            choices["sleeper"] = Connectivity.SLEEPER
            if name not in choices:
                raise ValueError(f"connectivity must be one of {sorted(choices)}, not {name!r}")
            wake = body.get("wake_minutes", 30) if name == "sleeper" else 0
            if isinstance(wake, bool) or not isinstance(wake, int) or wake < 0:
                raise ValueError(f"wake_minutes must be a whole number >= 1, not {wake!r}")
            conn = (choices[name], wake)
        targets: list[tuple[dict[Any, Any], dict[Any, Any], Any]] = []
        ids, models = body.get("device_ids"), body.get("models")
        if ids is not None:
            if not isinstance(ids, list):
                raise ValueError("device_ids must be a list of IMEIs")
            for imei in ids:
                index = self.catalog.index_of(imei) if isinstance(imei, str) else None
                if index is None:
                    raise ValueError(f"{imei!r} is not an IMEI of this fleet")
                targets.append((self.device_fail, self.device_conn, index))
        if models is not None:
            names = {g.model.model for g in self.fleet.groups}
            if not isinstance(models, list) or not set(models) <= names:
                raise ValueError(f"models must be a list of {sorted(names)}")
            targets += [(self.model_fail, self.model_conn, m) for m in models]
        with self.lock:
            if not targets and rate is not ...:  # neither: the global rate
                self.failure_rate = self.config.failure_rate if rate is None else float(rate)
                return 1
            for fail, connectivity, key in targets:
                if rate is None:
                    fail.pop(key, None)
                elif rate is not ...:
                    fail[key] = float(rate)
                if conn is not None:
                    connectivity[key] = conn
            return len(targets)

    def plan(self, req: Request, imei: str) -> DevicePlan:
        i = req.index[imei]
        plan = req.plans.get(i)
        if plan is None:
            plan = plan_device(
                self.traits(i),
                seed=self.config.seed,
                seq=req.seq,
                ready=req.ready_at,
                end=req.end_at,
                download_windows=req.download_windows,
                install_after=day_start(req.install_after) if req.install_after else None,
                install_windows=req.install_windows,
            )
            req.plans[i] = plan
        return plan

    def versions(self, index: int, now: float) -> dict[str, tuple[str, float | None]]:
        """Current ``firmware``/``software``/``file`` versions of a device and when they came."""
        out: dict[str, tuple[str, float | None]] = {
            "firmware": (self.catalog.base_firmware(index), None),
            "software": (self.catalog.base_software(index), None),
            "file": (FILE_BASE_VERSION, None),
        }
        best: dict[str, float] = {}
        for req in self.device_requests.get(index, ()):
            imei = self.catalog.imei(index)
            if imei not in req.index or imei in req.rejected or req.request_failed:
                continue
            plan = self.plan(req, imei)
            if not plan.success or plan.done is None or plan.done > now:
                continue
            if req.cancelled_at is not None and (
                plan.started is None or plan.started >= req.cancelled_at
            ):
                continue
            if plan.done >= best.get(req.kind, -1.0):
                best[req.kind] = plan.done
                out[req.kind] = (req.to_version, plan.done)
        return out

    def active_request(self, index: int, now: float, kind: str) -> Request | None:
        """A request of ``kind`` still running or waiting for this device, if any."""
        imei = self.catalog.imei(index)
        for req in self.device_requests.get(index, ()):
            if req.kind != kind or imei not in req.index or imei in req.rejected:
                continue
            if req.request_failed and now >= req.accept_at:
                continue
            if req.cancelled_at is not None:
                continue
            plan = self.plan(req, imei)
            if plan.done is None or plan.done > now:
                return req
        return None

    def devices_json_v1(self, index: int, now: float) -> dict[str, Any]:
        m = self.catalog.model_of(index)
        v = self.versions(index, now)
        fw, when = v["firmware"]
        return {
            "deviceId": self.catalog.imei(index),
            "mdn": self.catalog.mdn(index),
            "model": m.model,
            "make": m.manufacturer,
            "firmware": fw,
            "fotaEligible": self.catalog.fota_eligible(index),
            "licenseAssigned": self.licensed_device(index),
            "upgradeTime": fmt_time(when) if when is not None else "",
        }

    def devices_json_v2(self, index: int, now: float) -> dict[str, Any]:
        m = self.catalog.model_of(index)
        v = self.versions(index, now)
        sw, sw_when = v["software"]
        fv, f_when = v["file"]
        fw, fw_when = v["firmware"]
        times = [t for t in (sw_when, f_when, fw_when) if t is not None]
        return {
            "deviceId": self.catalog.imei(index),
            "mdn": self.catalog.mdn(index),
            "model": m.model,
            "make": m.manufacturer,
            "fotaEligible": self.catalog.fota_eligible(index),
            "appFotaEligible": self.catalog.fota_eligible(index) and distribution_of(m) == "HTTP",
            "licenseAssigned": self.licensed_device(index),
            "distributionType": distribution_of(m),
            "softwareList": [
                {"name": f"{m.model}-firmware", "version": fw, "upgradeTime": fmt_time(fw_when)},
                {"name": f"{m.model}-software", "version": sw, "upgradeTime": fmt_time(sw_when)},
                {"name": f"{m.model}-config", "version": fv, "upgradeTime": fmt_time(f_when)},
            ],
            "createTime": fmt_time(pendulum.datetime(2024, 1, 1, tz="UTC").timestamp() + index),
            "upgradeTime": fmt_time(max(times)) if times else None,
            "updateTime": fmt_time(max(times)) if times else None,
            "refreshTime": fmt_time(now),
        }

    def licensed_device(self, index: int) -> bool:
        return index in self.licensed

    def license_pool(self) -> int:
        return self.config.licenses or self.config.devices

    # requests: creation -----------------------------------------------------------------

    def _device_indices(self, raw: Any, *, name: str = "deviceList") -> list[tuple[str, int]]:
        if not isinstance(raw, list) or not raw:
            raise invalid("DeviceList", f"{name} must be a non-empty list of IMEIs")
        if len(raw) > MAX_DEVICES:
            raise invalid(
                "DeviceList", f"{name} has {len(raw)} IMEIs; at most {MAX_DEVICES} in one request"
            )
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        for pos, imei in enumerate(raw):
            if not isinstance(imei, str):
                raise invalid("DeviceId", f"{name}[{pos}] must be an IMEI string, not {imei!r}")
            i = self.catalog.index_of(imei)
            if i is None:
                raise invalid("DeviceId", f"{name}[{pos}] {imei!r} is not a device of this account")
            if imei in seen:
                raise invalid("DeviceId", f"{name}[{pos}] {imei} is listed twice")
            seen.add(imei)
            out.append((imei, i))
        return out

    def _check_dates(self, start: pendulum.Date, end: pendulum.Date | None) -> None:
        today = self.today()
        if start < today:
            raise invalid("StartDate", f"startDate {start} is in the past (today is {today})")
        if end is not None and end < start:
            raise invalid("EndDate", f"endDate {end} is before startDate {start}")
        if end is not None and end < today:
            raise invalid("EndDate", f"endDate {end} is in the past (today is {today})")

    def _eligible(self, devices: Sequence[tuple[str, int]], now: float, kind: str) -> None:
        for imei, i in devices:
            if not self.catalog.fota_eligible(i):
                raise failed("DeviceNotEligible", f"device {imei} is not FOTA eligible")
            if self.config.license_required and i not in self.licensed:
                raise failed(
                    "LicenseNotAssigned",
                    f"device {imei} has no license; assign one (POST /licenses/{{acc}}/assign)",
                )
            busy = self.active_request(i, now, kind)
            if busy is not None:
                raise failed(
                    "DeviceInActiveUpgrade",
                    f"device {imei} is already in {kind} request {busy.id} ({busy.api})",
                )

    def _new_request(self, **kw: Any) -> Request:
        now = self.now()
        self._seq += 1
        seq = self._seq
        rid = self.seeded_uuid(seq)
        fails = hash_u(self.config.seed, seq, _SALT_REQUEST_FAIL) < self.config.request_failure_rate
        return Request(
            id=rid, seq=seq, created=now, accept_at=now + ACCEPT_DELAY_S, request_failed=fails, **kw
        )

    def seeded_uuid(self, seq: int, salt: int = 0x75) -> str:
        """A UUID drawn from ``(seed, salt, seq)``: the same requests get the same ids."""
        raw = (hash64(self.config.seed, salt, seq) << 64) | hash64(self.config.seed, salt + 1, seq)
        return str(uuid.UUID(int=raw, version=4))

    def next_change_id(self) -> str:
        """The ``requestId`` of a v2 device change (seeded, like every id)."""
        with self.lock:
            self._change_seq += 1
            return self.seeded_uuid(self._change_seq, salt=0x77)

    def _register(self, req: Request, devices: Sequence[tuple[str, int]]) -> None:
        req.set_devices(devices)
        self.requests[req.id] = req
        for _imei, i in devices:
            self.device_requests[i].append(req)

    def create_upgrade(self, body: Mapping[str, Any]) -> Request:
        """FOTA v1 ``POST /upgrades``: all devices share the firmware's make, model, version."""
        account = body.get("accountName")
        if not isinstance(account, str) or not account:
            raise invalid("AccountName", "accountName is required")
        self.check_account(account)
        name = body.get("firmwareName")
        if not isinstance(name, str) or not name:
            raise invalid("FirmwareName", "firmwareName is required (GET /firmware/{account})")
        image = self.catalog.firmware.get(name)
        if image is None:
            raise invalid(
                "FirmwareName", f"firmware {name!r} is not available to account {account}"
            )
        to = body.get("firmwareTo")
        if to is not None and to != image.to_version:
            raise invalid(
                "FirmwareTo", f"firmwareTo {to!r} does not match {name} (to {image.to_version})"
            )
        start = parse_date(body.get("startDate"), "startDate")
        end = parse_date(body.get("endDate"), "endDate", required=False)
        assert start is not None
        raw = body.get("deviceList", body.get("devicelist"))
        with self.lock:
            self._check_dates(start, end)
            devices = self._device_indices(raw)
            now = self.now()
            for imei, i in devices:
                m = self.catalog.model_of(i)
                if m.key != image.model.key:
                    raise failed(
                        "DeviceMismatch",
                        f"device {imei} is a {m.manufacturer} {m.model}; {name} is for "
                        f"{image.model.manufacturer} {image.model.model}",
                    )
                fw = self.versions(i, now)["firmware"][0]
                if fw != image.from_version:
                    raise failed(
                        "DeviceMismatch",
                        f"device {imei} has firmware {fw}; {name} upgrades from "
                        f"{image.from_version} (all devices must be on the same firmware)",
                    )
            self._eligible(devices, now, "firmware")
            req = self._new_request(
                api="v1",
                kind="firmware",
                package=name,
                from_version=image.from_version,
                to_version=image.to_version,
                model=image.model,
                start_date=start,
                end_date=end,
            )
            self._register(req, devices)
            return req

    def create_campaign(self, account: str, body: Mapping[str, Any], *, files: bool) -> Request:
        """FOTA v2 ``POST /campaigns/{acc}`` (software) or ``/campaigns/files/{acc}`` (files)."""
        self.check_account(account)
        dist = body.get("distributionType")
        if dist not in ("HTTP", "OMA", "LWM2M"):
            raise invalid(
                "DistributionType", f"distributionType must be HTTP, OMA or LWM2M, not {dist!r}"
            )
        name_raw = body.get("campaignName")
        if name_raw is not None and not isinstance(name_raw, str):
            raise invalid("CampaignName", "campaignName must be a string")
        model: DeviceModel
        if files:
            fname, fversion = body.get("fileName"), body.get("fileVersion")
            if not isinstance(fname, str) or not fname:
                raise invalid("FileName", "fileName is required (GET /files/{acc})")
            if not isinstance(fversion, str) or not fversion:
                raise invalid("FileVersion", "fileVersion is required")
            image = self.catalog.files.get((fname, fversion))
            if image is None:
                raise invalid("FileName", f"file {fname} version {fversion} is not available")
            model, package, from_v, to_v, kind = (
                image.model,
                fname,
                FILE_BASE_VERSION,
                fversion,
                "file",
            )
        else:
            sname = body.get("softwareName")
            if not isinstance(sname, str) or not sname:
                raise invalid("SoftwareName", "softwareName is required (GET /software/{acc})")
            sw = self.catalog.software.get(sname)
            if sw is None:
                raise invalid("SoftwareName", f"software {sname!r} is not available")
            if body.get("softwareFrom") != sw.from_version:
                raise invalid(
                    "SoftwareFrom",
                    f"softwareFrom {body.get('softwareFrom')!r} does not match {sname} "
                    f"(from {sw.from_version})",
                )
            if body.get("softwareTo") != sw.to_version:
                raise invalid(
                    "SoftwareTo",
                    f"softwareTo {body.get('softwareTo')!r} does not match {sname} "
                    f"(to {sw.to_version})",
                )
            model, package, from_v, to_v, kind = (
                sw.model,
                sname,
                sw.from_version,
                sw.to_version,
                "software",
            )
        start = parse_date(body.get("startDate"), "startDate")
        end = parse_date(body.get("endDate"), "endDate")
        assert start is not None and end is not None
        dl_after = parse_date(body.get("downloadAfterDate"), "downloadAfterDate", required=False)
        in_after = parse_date(body.get("installAfterDate"), "installAfterDate", required=False)
        dl_w = parse_windows(body.get("downloadTimeWindowList"), "downloadTimeWindowList")
        in_w = parse_windows(body.get("installTimeWindowList"), "installTimeWindowList")
        with self.lock:
            self._check_dates(start, end)
            self._check_after(start, end, dl_after, in_after)
            devices = self._device_indices(body.get("deviceList"))
            now = self.now()
            self._eligible(devices, now, kind)
            req = self._new_request(
                api="v2",
                kind=kind,
                package=package,
                from_version=from_v,
                to_version=to_v,
                model=model,
                start_date=start,
                end_date=end,
                campaign_name=name_raw,
                distribution_type=dist,
                download_after=dl_after,
                install_after=in_after,
                download_windows=dl_w,
                install_windows=in_w,
            )
            self._register(req, devices)
            self._reject(req, devices, now)
            return req

    @staticmethod
    def _check_after(
        start: pendulum.Date,
        end: pendulum.Date,
        dl_after: pendulum.Date | None,
        in_after: pendulum.Date | None,
    ) -> None:
        for name, d in (("downloadAfterDate", dl_after), ("installAfterDate", in_after)):
            if d is not None and not start <= d <= end:
                raise invalid(_cap(name), f"{name} {d} must be between startDate and endDate")
        if dl_after is not None and in_after is not None and in_after < dl_after:
            raise invalid(
                "InstallAfterDate", f"installAfterDate {in_after} is before downloadAfterDate"
            )

    def _reject(self, req: Request, devices: Sequence[tuple[str, int]], now: float) -> None:
        """v2 campaigns accept every IMEI and reject ineligible devices per device."""
        for imei, i in devices:
            m = self.catalog.model_of(i)
            if m.key != req.model.key:
                req.rejected[imei] = REASON_REJECTED_MODEL
            elif distribution_of(m) != ("HTTP" if req.distribution_type == "HTTP" else "LWM2M"):
                req.rejected[imei] = REASON_REJECTED_TYPE
            elif self.versions(i, now)[req.kind][0] != req.from_version:
                req.rejected[imei] = REASON_REJECTED_VERSION

    # requests: status -------------------------------------------------------------------

    def get(self, api: str, rid: str) -> Request:
        req = self.requests.get(rid)
        if req is None or req.api != api or (api == "v1" and req.cancelled_at is not None):
            what = "UpgradeId" if api == "v1" else "CampaignId"
            raise invalid(what, f"{'upgrade' if api == 'v1' else 'campaign'} {rid} not found")
        return req

    def device_status(self, req: Request, imei: str, now: float) -> tuple[str, str | None]:
        """(status, reason) of one device of ``req`` at ``now``."""
        if req.api == "v2" and imei in req.rejected:
            return "DeviceRejected", req.rejected[imei]
        if req.request_failed and now >= req.accept_at:
            return ("RequestFailed" if req.api == "v1" else "DeviceRejected"), (
                "The request could not be scheduled"
            )
        plan = self.plan(req, imei)
        cancelled = req.cancelled_at
        if (
            cancelled is not None
            and now >= cancelled
            and (plan.started is None or plan.started >= cancelled)
        ):
            return "DeviceRejected", REASON_CANCELLED
        if plan.done is not None and now >= plan.done:
            return ("UpgradeSuccess", None) if plan.success else ("UpgradeFailed", plan.reason)
        if req.api == "v2":
            return "Accepted", None
        if now < req.accept_at:
            return "RequestPending", None
        if plan.started is None or now < plan.started:
            return "Queued", None
        return "InProgress", None

    def summary(self, req: Request) -> Summary:
        """First start, last end and any success over the request's devices (cached)."""
        if req.summary is None:
            first, last, good = math.inf, req.created, False
            cancelled = req.cancelled_at
            for imei in req.devices:
                if imei in req.rejected:
                    continue
                p = self.plan(req, imei)
                if cancelled is not None and (p.started is None or p.started >= cancelled):
                    last = max(last, cancelled)
                    continue
                if p.started is not None:
                    first = min(first, p.started)
                last = max(last, math.inf if p.done is None else p.done)
                good = good or p.success
            req.summary = Summary(first, last, good)
        return req.summary

    def _all_done(self, req: Request, now: float) -> tuple[bool, bool]:
        """(every device terminal, any device succeeded or is still running)."""
        s = self.summary(req)
        done = now >= s.last_done
        return done, s.any_success or not done

    def status(self, req: Request, now: float) -> str:
        if req.api == "v1":
            if now < req.accept_at:
                return "RequestPending"
            if req.request_failed:
                return "RequestFailed"
            started = now >= self.summary(req).first_start
            done, _ = self._all_done(req, now)
            if done:
                return "Finished" if started else "UpgradeFailed"
            return "InProgress" if started else "Queued"
        if req.cancelled_at is not None and now >= req.cancelled_at:
            assert req.cancel_status is not None
            return req.cancel_status
        if now < req.accept_at:
            return "CampaignRequestPending"
        if req.request_failed:
            return "CampaignRequestFailed"
        if now < req.start_at:
            return "CampaignRequestQueued"
        done, good = self._all_done(req, now)
        end = req.end_at
        if done or (end is not None and now >= end):
            return "CampaignEnded" if good or not done else "CampaignFailed"
        return "CampaignScheduled"

    def modifiable(self, req: Request, now: float) -> bool:
        """Devices and dates change only before the request is scheduled to run: while it
        is pending, or accepted with its startDate still ahead."""
        if req.cancelled_at is not None or (req.request_failed and now >= req.accept_at):
            return False
        return now < max(req.accept_at, req.start_at)

    # requests: changes ------------------------------------------------------------------

    def change_devices(self, req: Request, op: Any, raw: Any) -> list[dict[str, Any]]:
        if op not in ("append", "remove"):
            raise invalid("Type", f"type must be append or remove, not {op!r}")
        with self.lock:
            now = self.now()
            if not self.modifiable(req, now):
                raise failed(
                    "RequestStarted",
                    f"request {req.id} is {self.status(req, now)}: devices can only change "
                    "before it is scheduled",
                )
            devices = self._device_indices(raw)
            results: list[dict[str, Any]] = []
            if op == "append":
                fresh = [(imei, i) for imei, i in devices if imei not in req.index]
                if req.api == "v1":
                    for imei, i in fresh:
                        m = self.catalog.model_of(i)
                        fw = self.versions(i, now)["firmware"][0]
                        if m.key != req.model.key or fw != req.from_version:
                            raise failed(
                                "DeviceMismatch",
                                f"device {imei} ({m.manufacturer} {m.model}, firmware {fw}) "
                                f"does not match upgrade {req.id}",
                            )
                self._eligible(fresh, now, req.kind)
                req.set_devices([*req.index.items(), *fresh])
                for _imei, i in fresh:
                    self.device_requests[i].append(req)
                if req.api == "v2":
                    self._reject(req, fresh, now)
                for imei, _ in devices:
                    results.append({"deviceId": imei, "status": "Added"})
            else:
                gone = {imei for imei, _ in devices}
                missing = [imei for imei in gone if imei not in req.index]
                if missing:
                    raise invalid("DeviceId", f"device {missing[0]} is not in request {req.id}")
                if len(gone) >= len(req.devices):
                    raise invalid(
                        "DeviceList", "a request cannot lose all its devices; cancel it instead"
                    )
                for imei, i in devices:
                    self.device_requests[i] = [r for r in self.device_requests[i] if r is not req]
                    req.rejected.pop(imei, None)
                    results.append({"deviceId": imei, "status": "Removed"})
                req.set_devices([(m, i) for m, i in req.index.items() if m not in gone])
            return results

    def change_dates(self, req: Request, body: Mapping[str, Any]) -> None:
        start = parse_date(body.get("startDate"), "startDate")
        end = parse_date(body.get("endDate"), "endDate")
        assert start is not None and end is not None
        dl_after = parse_date(body.get("downloadAfterDate"), "downloadAfterDate", required=False)
        in_after = parse_date(body.get("installAfterDate"), "installAfterDate", required=False)
        dl_w = parse_windows(body.get("downloadTimeWindowList"), "downloadTimeWindowList")
        in_w = parse_windows(body.get("installTimeWindowList"), "installTimeWindowList")
        with self.lock:
            now = self.now()
            if not self.modifiable(req, now):
                raise failed(
                    "RequestStarted",
                    f"campaign {req.id} is {self.status(req, now)}: dates can only change "
                    "before it is scheduled",
                )
            self._check_dates(start, end)
            self._check_after(start, end, dl_after, in_after)
            for name, old, new in (
                ("downloadTimeWindowList", req.download_windows, dl_w),
                ("installTimeWindowList", req.install_windows, in_w),
            ):
                lost = [w for w in old if w not in new]
                if lost:
                    raise invalid(
                        "TimeWindow",
                        f"{name}: existing window {lost[0][0]}-{lost[0][1]} cannot be removed",
                    )
            req.start_date, req.end_date = start, end
            req.download_after, req.install_after = dl_after, in_after
            req.download_windows, req.install_windows = dl_w, in_w
            req.invalidate()

    def cancel(self, req: Request) -> None:
        with self.lock:
            now = self.now()
            status = self.status(req, now)
            if req.api == "v1":
                if status not in ("RequestPending", "Queued"):
                    raise failed(
                        "RequestStarted",
                        f"upgrade {req.id} is {status}; it can no longer be cancelled",
                    )
                req.cancelled_at = now
                req.cancel_status = "Cancelled"
                req.invalidate()
                return
            if status not in (
                "CampaignRequestPending",
                "CampaignRequestQueued",
                "CampaignScheduled",
            ):
                raise failed(
                    "RequestStarted", f"campaign {req.id} is {status}; it cannot be cancelled"
                )
            req.cancel_status = (
                "CampaignAborted" if status == "CampaignScheduled" else "CampaignCancelled"
            )
            req.cancelled_at = now
            req.events = None
            req.summary = None

    # licenses ---------------------------------------------------------------------------

    def assign_licenses(self, raw: Any, *, assign: bool) -> dict[str, Any]:
        with self.lock:
            devices = self._device_indices(raw)
            results = []
            for imei, i in devices:
                if assign:
                    if i not in self.licensed and len(self.licensed) >= self.license_pool():
                        results.append(
                            {"deviceId": imei, "status": "Failure", "reason": "No license left"}
                        )
                        continue
                    self.licensed.add(i)
                else:
                    self.licensed.discard(i)
                results.append({"deviceId": imei, "status": "Success", "reason": ""})
            return {
                "accountName": self.config.account,
                "licCount": self.license_pool(),
                "licUsedCount": len(self.licensed),
                "deviceList": results,
            }

    # event times (callbacks) ------------------------------------------------------------

    def event_times(self, req: Request) -> list[float]:
        """Sorted instants when the request or one of its devices changes status (cached);
        :attr:`Request.event_devices` names the device of each ("" for the request itself)."""
        if req.events is None:
            pairs = {(req.accept_at, ""), (req.start_at, "")}
            if req.end_at is not None:
                pairs.add((req.end_at, ""))
            if req.cancelled_at is not None:
                pairs.add((req.cancelled_at, ""))
            for imei in req.devices:
                p = self.plan(req, imei)
                for t in (p.started, p.done):
                    if t is not None:
                        pairs.add((t, imei))
            ordered = sorted(pairs)
            req.events = [t for t, _ in ordered]
            req.event_devices = [d for _, d in ordered]
        return req.events

    def changed_between(self, req: Request, lo: float, hi: float) -> set[str] | None:
        """IMEIs with an event in ``[lo, hi]``; None when the request itself has one (then
        any device may have changed)."""
        times = self.event_times(req)
        out: set[str] = set()
        for k in range(bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)):
            imei = req.event_devices[k]
            if not imei:
                return None
            out.add(imei)
        return out

    # statistics -------------------------------------------------------------------------

    def record_call(self, endpoint: str, status: str) -> None:
        with self.lock:
            self.calls[endpoint][status] += 1

    def uncount_drop(self, endpoint: str) -> None:
        with self.lock:
            self.calls[endpoint]["dropped"] -= 1
            if not self.calls[endpoint]["dropped"]:
                del self.calls[endpoint]["dropped"]

    def stats(self, *, with_requests: bool = True) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "calls": {k: dict(v) for k, v in self.calls.items()},
                "calls_total": sum(sum(v.values()) for v in self.calls.values()),
                "token_requests": self.token_requests,
                "logins": self.logins,
                "failed_logins": self.failed_logins,
                "locked": self.locked,
                "requests_total": len(self.requests),
                "callbacks": dict(self.pushes),
                "now": self.clock.now().isoformat(),
            }
            if with_requests:
                out["requests"] = [
                    {
                        "id": r.id,
                        "api": r.api,
                        "kind": r.kind,
                        "package": r.package,
                        "campaignName": r.campaign_name,
                        "devices": list(r.devices),
                        "created": fmt_time(r.created),
                        "cancelled": r.cancelled_at is not None,
                        "downloadTimeWindowList": windows_json(r.download_windows),
                        "installTimeWindowList": windows_json(r.install_windows),
                    }
                    for r in self.requests.values()
                ]
                counts: Counter[str] = Counter()
                for r in self.requests.values():
                    counts.update(r.devices)
                out["device_request_counts"] = dict(counts)
            return out


class OAuthError(Exception):
    """The token endpoint's RFC 6749 error: ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _oauth_error(status: int, error: str, description: str) -> OAuthError:
    return OAuthError(status, error, description)


def fmt_time(t: float | None) -> str | None:
    if t is None:
        return None
    return pendulum.from_timestamp(t, tz="UTC").format("YYYY-MM-DD[T]HH:mm:ss.SSS[Z]")
