"""The simulator's mutable state: tokens, throttle, tasks, overrides, call statistics.

One :class:`SimState` per running simulator, guarded by one lock. HTTP handlers
(``fleetwave.sim.app``) translate requests into calls here; everything a request
costs is proportional to what it returns (a page, a task), never to the fleet.
"""

from __future__ import annotations

import bisect
import secrets
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetwave.clock import Clock
from fleetwave.sim.behaviour import (
    DeviceProfile,
    SimPolicy,
    Timeline,
    plan_subtask,
    started_at,
    state_at,
)
from fleetwave.sim.config import SimConfig
from fleetwave.sim.fleet import STATUS_CODES, Connectivity, Fleet, Package, hash64

__all__ = ["TOKEN_TTL_S", "IoDMError", "SimState", "Task", "fmt_time", "parse_time"]

TOKEN_TTL_S = 3600
REFRESH_TTL_S = 30 * 24 * 3600
MAX_TARGETS = 256

OP_TYPES = {"firmware": "firmware_upgrade", "software": "software_upgrade"}


class IoDMError(Exception):
    """An error answered with the platform's body ``{"error_code", "error_desc"}``."""

    def __init__(self, status: int, code: str, desc: str) -> None:
        super().__init__(f"{status} {code} {desc}")
        self.status = status
        self.code = code
        self.desc = desc


def fmt_time(t: float | None) -> str | None:
    """Epoch seconds to the IoDM wire format ``yyyyMMdd'T'HHmmss'Z'``."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_time(value: Any) -> float | None:
    """The IoDM wire format to epoch seconds; None when it does not parse."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass
class Task:
    """One upgrade task (IoDM operation) with a precomputed timeline per device."""

    seq: int
    operation_id: str
    op_type: str
    package: Package
    created: float
    policy: SimPolicy
    policy_json: dict[str, Any] | None
    targets_json: dict[str, Any]
    indices: list[int]
    device_ids: list[str]
    timelines: list[Timeline]
    source_versions: list[str]
    final_at: float | None = None  # when every subtask is final (None: some never finish)
    _final_stats: dict[str, int] | None = field(default=None, repr=False)
    # notification types whose events are scheduled (at creation or by a later subscription)
    notify_types: set[str] = field(default_factory=set, repr=False)

    @property
    def kind(self) -> str:
        return "firmware" if self.op_type == "firmware_upgrade" else "software"

    def sub_operation_id(self, pos: int) -> str:
        return f"{self.operation_id}{pos:08x}"

    def stats(self, now: float) -> dict[str, int]:
        if self._final_stats is not None:
            return self._final_stats
        counts = Counter(state_at(tl, now) for tl in self.timelines)
        out = {
            "total": len(self.timelines),
            "wait": counts["wait"],
            "processing": counts["processing"],
            "success": counts["success"],
            "fail": counts["fail"],
            "stop": counts["stop"],
            "timeout": 0,
        }
        if self.final_at is not None and now >= self.final_at:
            self._final_stats = out
        return out

    def status(self, now: float) -> str:
        return self.status_of(self.stats(now))

    @staticmethod
    def status_of(s: dict[str, int]) -> str:
        """The task status its subtask counts (:meth:`stats`) imply."""
        if s["wait"] == s["total"]:
            return "wait"
        if s["wait"] or s["processing"]:
            return "processing"
        if s["success"] == s["total"]:
            return "success"
        if s["fail"] == 0:
            return "stop"
        return "failed"

    def start_time(self, now: float) -> float | None:
        starts = [s for tl in self.timelines if (s := started_at(tl, now)) is not None]
        return min(starts) if starts else None

    def stop_time(self, now: float) -> float | None:
        if self.final_at is not None and now >= self.final_at:
            return self.final_at
        return None


@dataclass
class _Tokens:
    access: str | None = None
    access_expires: float = 0.0
    refresh: str | None = None
    refresh_expires: float = 0.0


class SimState:
    """Everything the simulator remembers, behind one lock."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.fleet = Fleet(config.devices, config.groups, config.seed)
        self.lock = threading.RLock()
        self.failure_rate = config.failure_rate
        self.packages: dict[str, Package] = {p.file_id: p for p in self.fleet.packages}
        self.tasks: list[Task] = []
        self._task_seq = 0
        self.tasks_by_id: dict[str, Task] = {}
        self.device_tasks: dict[int, list[tuple[Task, int]]] = defaultdict(list)
        self.device_fail: dict[int, float] = {}
        self.model_fail: dict[str, float] = {}
        self.device_conn: dict[int, tuple[Connectivity, int]] = {}
        self.model_conn: dict[str, tuple[Connectivity, int]] = {}
        self._status_cache: npt.NDArray[np.uint8] | None = None
        self._base_status: npt.NDArray[np.uint8] | None = None
        self._tokens = _Tokens()
        self._throttle_window = -1
        self._throttle_count = 0
        self.throttled = 0  # calls answered 403 1010009 (over the app's budget)
        self.throttle_peak = 0  # the most calls of the app counted in one minute
        self.calls: dict[str, Counter[str]] = defaultdict(Counter)
        self.logins = 0
        self.subscriptions: dict[str, str] = {}  # notifyType -> callbackUrl
        self.notifier: Any = None  # set by the app: has .schedule(task)

    # time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now().timestamp()

    # auth ---------------------------------------------------------------------------

    def login(self, app_id: str | None, secret: str | None) -> dict[str, Any]:
        if not app_id or not secret:
            raise IoDMError(400, "102202", "Required Parameter is null or empty.")
        if app_id != self.config.app_id or not secrets.compare_digest(secret, self.config.secret):
            raise IoDMError(401, "100208", "AppId or secret is not right.")
        with self.lock:
            self.logins += 1
            return self._issue()

    def refresh(self, app_id: Any, secret: Any, refresh_token: Any) -> dict[str, Any]:
        if not app_id or not secret or not refresh_token:
            raise IoDMError(400, "102202", "Required Parameter is null or empty.")
        if (
            not isinstance(app_id, str)
            or not isinstance(secret, str)
            or app_id != self.config.app_id
            or not secrets.compare_digest(secret, self.config.secret)
        ):
            raise IoDMError(401, "100208", "AppId or secret is not right.")
        with self.lock:
            tok = self._tokens
            if (
                not isinstance(refresh_token, str)
                or tok.refresh is None
                or not secrets.compare_digest(refresh_token, tok.refresh)
                or self.now() >= tok.refresh_expires
            ):
                raise IoDMError(400, "50400", "The input is invalid.")
            return self._issue()

    def _issue(self) -> dict[str, Any]:
        now = self.now()
        self._tokens = _Tokens(
            access=secrets.token_hex(16),
            access_expires=now + TOKEN_TTL_S,
            refresh=secrets.token_hex(16),
            refresh_expires=now + REFRESH_TTL_S,
        )
        return {
            "scope": "default",
            "tokenType": "Bearer",
            "expiresIn": TOKEN_TTL_S,
            "accessToken": self._tokens.access,
            "refreshToken": self._tokens.refresh,
        }

    def check_auth(self, app_key: str | None, authorization: str | None) -> None:
        invalid = IoDMError(403, "1010005", "App_key or access_token is invalid.")
        if app_key != self.config.app_id or not authorization:
            raise invalid
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        with self.lock:
            current = self._tokens.access
            if (
                scheme.lower() != "bearer"
                or current is None
                or not secrets.compare_digest(token, current)
                or self.now() >= self._tokens.access_expires
            ):
                raise invalid

    def revoke_token(self) -> None:
        with self.lock:
            self._tokens.access = None

    def throttle(self, app_id: str | None) -> None:
        """Count one call of ``app_id``; 403 1010009 beyond the per-minute budget."""
        if app_id != self.config.app_id or self.config.rate_limit <= 0:
            return
        with self.lock:
            window = int(self.now() // 60)
            if window != self._throttle_window:
                self._throttle_window = window
                self._throttle_count = 0
            self._throttle_count += 1
            self.throttle_peak = max(self.throttle_peak, self._throttle_count)
            if self._throttle_count > self.config.rate_limit:
                self.throttled += 1
                raise IoDMError(403, "1010009", "app throttle exceed.")

    # devices ------------------------------------------------------------------------

    def connectivity(self, index: int) -> tuple[Connectivity, int]:
        if index in self.device_conn:
            return self.device_conn[index]
        model = self.fleet.model_of(index).model
        if model in self.model_conn:
            return self.model_conn[model]
        return self.fleet.base_connectivity(index)

    def status(self, index: int) -> str:
        if index in self.device_conn or self.fleet.model_of(index).model in self.model_conn:
            conn, _ = self.connectivity(index)
            return "OFFLINE" if conn is Connectivity.OFFLINE else "ONLINE"
        return self.fleet.base_status(index)

    def status_codes(self) -> npt.NDArray[np.uint8]:
        """Effective status code per device (cached until an override changes)."""
        with self.lock:
            if self._status_cache is None:
                if self._base_status is None:
                    self._base_status = self.fleet.status_array()
                codes = self._base_status.copy()
                for g in self.fleet.groups:
                    if g.model.model in self.model_conn:
                        conn, _ = self.model_conn[g.model.model]
                        codes[g.start : g.stop] = 1 if conn is Connectivity.OFFLINE else 0
                for i, (conn, _) in self.device_conn.items():
                    codes[i] = 1 if conn is Connectivity.OFFLINE else 0
                self._status_cache = codes
            return self._status_cache

    def failure_rate_of(self, index: int) -> float:
        if index in self.device_fail:
            return self.device_fail[index]
        m = self.fleet.model_of(index)
        if m.model in self.model_fail:
            return self.model_fail[m.model]
        if m.failure_rate is not None:
            return m.failure_rate
        return self.failure_rate

    def profile(self, index: int) -> DeviceProfile:
        conn, wake = self.connectivity(index)
        return DeviceProfile(
            index=index,
            connectivity=conn,
            wake_minutes=wake,
            wake_phase=self.fleet.wake_phase(index),
            failure_rate=self.failure_rate_of(index),
            duration_s=self.fleet.model_of(index).duration_s,
        )

    def versions(self, index: int, now: float) -> tuple[str, str]:
        """(fwVersion, swVersion) at ``now``: the base, then the latest successful upgrades."""
        fw, sw = self.fleet.base_versions(index)
        best = {"firmware": -1.0, "software": -1.0}
        for task, pos in self.device_tasks.get(index, ()):
            tl = task.timelines[pos]
            if (
                tl.final_status == "success"
                and tl.final_time is not None
                and tl.final_time <= now
                and tl.final_time > best[task.kind]
            ):
                best[task.kind] = tl.final_time
                if task.kind == "firmware":
                    fw = task.package.version
                else:
                    sw = task.package.version
        return fw, sw

    def device_json(self, index: int, now: float) -> dict[str, Any]:
        m = self.fleet.model_of(index)
        fw, sw = self.versions(index, now)
        did = self.fleet.device_id(index)
        status = self.status(index)
        created = self.fleet.create_time(index)
        return {
            "deviceId": did,
            "gatewayId": did,
            "nodeType": "ENDPOINT",
            "createTime": created,
            "lastModifiedTime": created,
            "deviceInfo": {
                "nodeId": f"{hash64(self.fleet.seed, index, 99) % 10**15:015d}",
                "name": f"{m.model}-{index}",
                "description": f"simulated {m.device_type}",
                "manufacturerId": m.manufacturer.lower(),
                "manufacturerName": m.manufacturer,
                "deviceType": m.device_type,
                "model": m.model,
                "swVersion": sw,
                "fwVersion": fw,
                "hwVersion": "1.0",
                "protocolType": m.protocol,
                "status": status,
                "statusDetail": "NONE",
                "mute": "FALSE",
            },
            "services": [],
        }

    # tasks --------------------------------------------------------------------------

    def create_task(
        self,
        *,
        kind: str,
        package: Package,
        indices: list[int],
        policy: SimPolicy,
        policy_json: dict[str, Any] | None,
        targets_json: dict[str, Any],
    ) -> Task:
        # Reserve the sequence number (an input of every draw) under the lock, plan outside it
        # (a group-mode task may hold many devices), then publish under the lock again.
        with self.lock:
            now = self.now()
            self._task_seq += 1
            seq = self._task_seq
        op_id = f"{hash64(self.config.seed, 0x0FE7, seq):016x}{seq:08x}"
        timelines: list[Timeline] = []
        sources: list[str] = []
        for index in indices:
            timelines.append(
                plan_subtask(
                    seed=self.config.seed,
                    op_seq=seq,
                    profile=self.profile(index),
                    policy=policy,
                    created=now,
                )
            )
            fw, sw = self.versions(index, now)
            sources.append(fw if kind == "firmware" else sw)
        finals = [tl.final_time for tl in timelines]
        final_at: float | None = None
        if all(f is not None for f in finals):
            final_at = max((f for f in finals if f is not None), default=now)
        task = Task(
            seq=seq,
            operation_id=op_id,
            op_type=OP_TYPES[kind],
            package=package,
            created=now,
            policy=policy,
            policy_json=policy_json,
            targets_json=targets_json,
            indices=indices,
            device_ids=[self.fleet.device_id(i) for i in indices],
            timelines=timelines,
            source_versions=sources,
            final_at=final_at,
        )
        with self.lock:
            bisect.insort(self.tasks, task, key=lambda t: t.seq)
            self.tasks_by_id[op_id] = task
            for pos, index in enumerate(indices):
                self.device_tasks[index].append((task, pos))
        if self.notifier is not None:
            self.notifier.schedule(task)
        return task

    def task_json(self, task: Task, now: float) -> dict[str, Any]:
        stats = task.stats(now)  # once: a running task's counts walk every subtask
        return {
            "operationId": task.operation_id,
            "createTime": fmt_time(task.created),
            "startTime": fmt_time(task.start_time(now)),
            "stopTime": fmt_time(task.stop_time(now)),
            "operateType": task.op_type,
            "targets": task.targets_json,
            "policy": task.policy_json,
            "status": task.status_of(stats),
            "staResult": stats,
            "extendPara": {"fileVersion": task.package.version, "fileId": task.package.file_id},
        }

    def subtask_json(self, task: Task, pos: int, now: float) -> dict[str, Any]:
        tl = task.timelines[pos]
        status = state_at(tl, now)
        final = status in ("success", "fail", "stop")
        cur = self.versions(task.indices[pos], now)[0 if task.kind == "firmware" else 1]
        if status == "wait":
            detail = "waiting"
        elif status == "processing":
            detail = "upgrading"
        else:
            detail = tl.detail
        upgrade_time = None
        if final and tl.attempts:
            upgrade_time = str(int((tl.final_time or 0) - tl.attempts[0].start))
        download_time = None
        if tl.attempts and tl.attempts[0].downloaded <= now:
            download_time = fmt_time(tl.attempts[0].downloaded)
        extend = {
            "upgradeTime": upgrade_time,
            "sourceVersion": task.source_versions[pos],
            "curVersion": cur,
            "downloadTime": download_time,
            "targetVersion": task.package.version,
        }
        return {
            "subOperationId": task.sub_operation_id(pos),
            "createTime": fmt_time(task.created),
            "startTime": fmt_time(started_at(tl, now)),
            "stopTime": fmt_time(tl.final_time if final else None),
            "operateType": task.op_type,
            "deviceId": task.device_ids[pos],
            "status": status,
            "detailInfo": detail,
            # the reference's table names it extendPara, its example and the SDKs extendInfo
            "extendPara": extend,
            "extendInfo": extend,
        }

    # statistics ---------------------------------------------------------------------

    def record_call(self, endpoint: str, status: str) -> None:
        with self.lock:
            self.calls[endpoint][status] += 1

    def uncount_drop(self, endpoint: str) -> None:
        """Take back a ``dropped`` count when the connection could not be dropped after all."""
        with self.lock:
            self.calls[endpoint]["dropped"] -= 1
            if not self.calls[endpoint]["dropped"]:
                del self.calls[endpoint]["dropped"]

    def stats(self, *, with_tasks: bool = True) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "calls": {k: dict(v) for k, v in self.calls.items()},
                "calls_total": sum(sum(v.values()) for v in self.calls.values()),
                "logins": self.logins,
                "tasks_total": len(self.tasks),
                "throttled": self.throttled,
                "throttle_peak": self.throttle_peak,
                "now": self.clock.now().isoformat(),
            }
            if self.notifier is not None:
                out["notifications"] = self.notifier.counts()
            if with_tasks:
                out["tasks"] = [
                    {
                        "operationId": t.operation_id,
                        "operationType": t.op_type,
                        "fileId": t.package.file_id,
                        "devices": list(t.device_ids),
                        "createTime": fmt_time(t.created),
                    }
                    for t in self.tasks
                ]
                out["device_task_counts"] = {
                    self.fleet.device_id(i): len(v) for i, v in self.device_tasks.items() if v
                }
            return out

    def status_name(self, code: int) -> str:
        return STATUS_CODES[code]
