"""Pushing FOTA callbacks: each change of an upgrade's, a campaign's or a device's status on
the simulator clock is POSTed to the URL the account registered (v1 name ``Fota``, v2 url).

A background task wakes every 0.1 s (or at once when the manual clock advances), looks only
at requests with an event in the elapsed interval, and sends what changed since the last
push, at most 1,000 devices a message. Failed deliveries are retried twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from fleetwave.sim.thingspace.state import Request, TSState, invalid

__all__ = ["MAX_DEVICES_PER_MESSAGE", "CallbackPusher"]

log = logging.getLogger(__name__)

MAX_DEVICES_PER_MESSAGE = 1000
_TICK_S = 0.1
_RETRY_DELAYS_S = (0.5, 2.0)
_RECENT = 50


class CallbackPusher:
    """Computes and delivers callback messages for one :class:`TSState`."""

    def __init__(self, state: TSState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._event: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None

    def check_url(self, url: Any) -> str:
        """The registered URL, or a 400: https (http only with --allow-http-callbacks)."""
        if not isinstance(url, str) or not url:
            raise invalid("CallbackUrl", "url is required")
        parts = urlsplit(url)
        allowed = ("https", "http") if self.state.config.allow_http_callbacks else ("https",)
        if parts.scheme not in allowed or not parts.hostname:
            raise invalid(
                "CallbackUrl",
                f"url {url!r} must be an https:// URL with a host (the platform pushes over TLS)",
            )
        return url

    async def start(self) -> None:
        ca = self.state.config.callback_ca
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        self._client = httpx.AsyncClient(timeout=10.0, verify=verify)
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="thingspace-callbacks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def _run(self) -> None:
        assert self._event is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), _TICK_S)
            self._event.clear()
            try:
                for url, body in self.due():
                    await self._deliver(url, body)
            except Exception:  # keep pushing whatever one bad pass did
                log.exception("callback pass failed")

    def due(self) -> list[tuple[str, dict[str, Any]]]:
        """The messages to send now (and remember them as sent)."""
        state = self.state
        out: list[tuple[str, dict[str, Any]]] = []
        with state.lock:
            if not state.callbacks:
                return out
            now = state.now()
            for req in state.requests.values():
                reg = state.callbacks.get(req.api)
                if reg is None:
                    continue
                checked = req.pushed.get("checked", req.created)
                candidates: set[str] | None = None
                if req.pushed.get("events") is not state.event_times(req):
                    req.pushed["events"] = req.events  # plans changed: look at every device
                else:
                    candidates = state.changed_between(req, checked, now)
                    if candidates is not None and not candidates:
                        continue
                req.pushed["checked"] = now
                out.extend((reg["url"], body) for body in self._diff(req, reg, now, candidates))
        return out

    def _diff(
        self, req: Request, reg: dict[str, Any], now: float, candidates: set[str] | None
    ) -> list[dict[str, Any]]:
        """What changed since the last push: the request's status and the devices among
        ``candidates`` (None: every device) whose status moved."""
        state = self.state
        status = state.status(req, now)
        # creation is answered synchronously: the first callback is the first change after it
        first = "RequestPending" if req.api == "v1" else "CampaignRequestPending"
        last_status = req.pushed.get("status", first)
        seen: dict[str, str] = req.pushed.setdefault("devices", {})
        changed: list[dict[str, Any]] = []
        if candidates is None:
            imeis = req.devices
        else:
            imeis = sorted(
                (m for m in candidates if m in req.position), key=req.position.__getitem__
            )
        for imei in imeis:
            dstatus, reason = state.device_status(req, imei, now)
            if seen.get(imei) != dstatus and dstatus not in ("RequestPending", "Accepted"):
                seen[imei] = dstatus
                item = {"deviceId": imei, "status": dstatus}
                if reason:
                    item["resultReason"] = reason
                changed.append(item)
        if status == last_status and not changed:
            return []
        req.pushed["status"] = status
        base: dict[str, Any] = {"accountName": state.config.account}
        if req.api == "v1":
            base["id"] = req.id
            base["eventType"] = "upgradeScheduled" if status == "Queued" else "upgradeStatus"
            base["status"] = status
            for key in ("username", "password"):
                if reg.get(key):
                    base[key] = reg[key]
        else:
            base["campaignId"] = req.id
            if req.campaign_name:
                base["campaignName"] = req.campaign_name
            base["status"] = status
        chunks = [
            changed[i : i + MAX_DEVICES_PER_MESSAGE]
            for i in range(0, len(changed), MAX_DEVICES_PER_MESSAGE)
        ] or [[]]
        return [{**base, "deviceList": chunk} for chunk in chunks]

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        assert self._client is not None
        state = self.state
        shown = {k: v for k, v in body.items() if k != "password"}
        for attempt, delay in enumerate((0.0, *_RETRY_DELAYS_S)):
            if delay:
                await asyncio.sleep(delay)
            try:
                resp = await self._client.post(url, json=body)
                ok = resp.status_code < 300
            except httpx.HTTPError as exc:
                log.info("callback to %s failed: %s", urlsplit(url).netloc, type(exc).__name__)
                ok = False
            if ok:
                with state.lock:
                    state.pushes["delivered"] += 1
                    state.pushed_bodies.append(shown)
                    del state.pushed_bodies[:-_RECENT]
                return
            with state.lock:
                state.pushes["retried" if attempt < len(_RETRY_DELAYS_S) else "failed"] += 1
