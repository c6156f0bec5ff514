"""Push notifications: the four documented upgrade notifications, POSTed to callback URLs.

When a task is created while a matching subscription exists, every state change and
result of its subtasks becomes an event in a heap ordered by event time. A subscription
made later schedules the events of the tasks that already exist from its own instant on
(each task remembers which types it has scheduled, so nothing is pushed twice). A
background pusher moves due events (time <= simulator now) into a bounded queue; one
sender delivers them in order. With a manual clock, an advance wakes the pusher at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from fleetwave.sim.state import SimState, Task

__all__ = ["NOTIFY_TYPES", "Notifier"]

log = logging.getLogger(__name__)

NOTIFY_TYPES = (
    "swUpgradeStateChangeNotify",
    "swUpgradeResultNotify",
    "fwUpgradeStateChangeNotify",
    "fwUpgradeResultNotify",
)
_FW_STEPS = {"downloading": "1", "downloaded": "2", "updating": "3", "idle": "0"}
QUEUE_SIZE = 1000
POLL_S = 0.05


class Notifier:
    """Schedules and delivers upgrade notifications for one simulator."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._heap: list[tuple[float, int, str, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pushed = 0
        self.failed = 0

    # lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._wake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._pump(), name="sim-notify-pump"),
            asyncio.create_task(self._send_loop(), name="sim-notify-send"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    def wake(self) -> None:
        if self._wake is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def counts(self) -> dict[str, int]:
        with self.state.lock:
            pending = len(self._heap)
        queued = self._queue.qsize() if self._queue is not None else 0
        return {"pushed": self.pushed, "failed": self.failed, "pending": pending + queued}

    # scheduling ---------------------------------------------------------------------

    def schedule(self, task: Task, *, after: float | None = None) -> None:
        """Turn ``task``'s timelines into timed events for the subscribed types it lacks.

        ``after`` keeps only the events later than that instant: a subscription made while
        the task already runs receives what happens from then on, not its past.
        """
        state = self.state
        prefix = "fw" if task.kind == "firmware" else "sw"
        state_type, result_type = (
            f"{prefix}UpgradeStateChangeNotify",
            f"{prefix}UpgradeResultNotify",
        )
        with state.lock:
            new = {
                t
                for t in (state_type, result_type)
                if t in state.subscriptions and t not in task.notify_types
            }
            task.notify_types.update(new)  # under the lock: a type is scheduled once per task
        want_state = state_type in new
        want_result = result_type in new
        if not (want_state or want_result):
            return
        app_id = state.config.app_id
        since = float("-inf") if after is None else after
        events: list[tuple[float, str, dict[str, Any]]] = []
        for pos, tl in enumerate(task.timelines):
            if tl.final_time is not None and tl.final_time <= since:
                continue  # over before the subscription
            base = {
                "deviceId": task.device_ids[pos],
                "appId": app_id,
                "operationId": task.operation_id,
                "subOperationId": task.sub_operation_id(pos),
            }
            if want_state:
                for att in tl.attempts:
                    for when, name in (
                        (att.start, "downloading"),
                        (att.downloaded, "downloaded"),
                        (att.downloaded, "updating"),
                        (att.end, "idle"),
                    ):
                        if when > since:
                            events.append((when, *self._state_body(prefix, base, name)))
            if want_result and tl.final_status is not None and tl.final_time is not None:
                events.append(
                    (tl.final_time, *self._result_body(prefix, base, task, pos, tl.final_status))
                )
        with state.lock:
            for when, ntype, body in events:
                heapq.heappush(self._heap, (when, next(self._seq), ntype, body))
        self.wake()

    def subscribe(self, notify_type: str, url: str) -> None:
        """Record a subscription and schedule the rest of every unfinished task for it.

        Events up to the subscription's instant are history and are not pushed; tasks whose
        every subtask is final by then have nothing left to send. The subscription and the
        snapshot of tasks are taken together: a task created afterwards is scheduled whole,
        at its creation.
        """
        kind = "firmware" if notify_type.startswith("fw") else "software"
        state = self.state
        with state.lock:
            state.subscriptions[notify_type] = url
            now = state.now()
            tasks = [
                t
                for t in state.tasks
                if t.kind == kind and (t.final_at is None or t.final_at > now)
            ]
        for task in tasks:
            self.schedule(task, after=now)

    @staticmethod
    def _state_body(prefix: str, base: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
        if prefix == "sw":
            ntype = "swUpgradeStateChangeNotify"
            return ntype, {"notifyType": ntype, **base, "swUpgradeState": name}
        ntype = "fwUpgradeStateChangeNotify"
        return ntype, {"notifyType": ntype, **base, "step": _FW_STEPS[name], "stepDesc": name}

    @staticmethod
    def _result_body(
        prefix: str, base: dict[str, Any], task: Task, pos: int, final: str
    ) -> tuple[str, dict[str, Any]]:
        from fleetwave.sim.state import fmt_time

        tl = task.timelines[pos]
        ok = final == "success"
        source = task.source_versions[pos]
        target = task.package.version
        duration = (
            0 if not tl.attempts or tl.final_time is None else tl.final_time - tl.attempts[0].start
        )
        result = "SUCCESS" if ok else "FAIL"
        common = {
            **base,
            "curVersion": target if ok else source,
            "targetVersion": target,
            "sourceVersion": source,
        }
        if prefix == "sw":
            ntype = "swUpgradeResultNotify"
            return ntype, {
                "notifyType": ntype,
                **common,
                "swUpgradeResult": result,
                "upgradeTime": fmt_time(tl.final_time),
                "resultDesc": tl.detail,
                "errorCode": "0" if ok else ("stop" if final == "stop" else "1"),
                "description": "" if ok else tl.detail,
            }
        ntype = "fwUpgradeResultNotify"
        return ntype, {
            "notifyType": ntype,
            **common,
            "status": result,
            "statusDesc": result if ok else f"FAIL: {tl.detail}",
            "upgradeTime": str(int(duration)),
        }

    # delivery -----------------------------------------------------------------------

    async def _pump(self) -> None:
        assert self._queue is not None and self._wake is not None
        while True:
            now = self.state.now()
            due: list[tuple[str, dict[str, Any]]] = []
            with self.state.lock:
                while self._heap and self._heap[0][0] <= now and len(due) < QUEUE_SIZE:
                    _, _, ntype, body = heapq.heappop(self._heap)
                    due.append((ntype, body))
            for item in due:
                await self._queue.put(item)  # bounded: waits for the sender
            if len(due) >= QUEUE_SIZE:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _send_loop(self) -> None:
        assert self._queue is not None
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                ntype, body = await self._queue.get()
                with self.state.lock:
                    url = self.state.subscriptions.get(ntype)
                if url is None:
                    continue
                try:
                    resp = await client.post(url, json=body)
                    if resp.status_code >= 400:
                        raise httpx.HTTPStatusError(
                            f"callback answered {resp.status_code}",
                            request=resp.request,
                            response=resp,
                        )
                    self.pushed += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.warning(
                        "notification %s to %s failed: %s", ntype, _origin(url), type(exc).__name__
                    )


def _origin(url: str) -> str:
    """Scheme, host and port of a callback URL: its path may carry a secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
