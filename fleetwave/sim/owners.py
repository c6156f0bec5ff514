"""Simulated device owners and their apps: a seeded population that answers consent
campaigns through fleetwave's end-user API over real HTTP (confirm, appoint, cancel, stay
silent, switch auto-confirm on, or run an app-delivered upgrade and report it).

Each device's behaviour is a pure function of the seed and the device ID, so a demo, a
test or a benchmark sees the same answers every time. Calls are batched by owner (up to
100 devices a call), never one per device where a batch exists.
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

__all__ = ["Behaviour", "OwnerMix", "OwnerPopulation", "behaviour_of"]

_BATCH = 100


class Behaviour(enum.StrEnum):
    """What an owner does with a device's upgrade plan."""

    CONFIRM = "confirm"
    APPOINT = "appoint"
    """Appoints the first hour of the first window (or of the period) that starts later."""
    CANCEL = "cancel"
    SILENT = "silent"
    """Never answers."""
    AUTO = "auto"
    """Switched auto-confirm on beforehand; answers nothing."""


@dataclass(frozen=True, slots=True)
class OwnerMix:
    """Shares of each behaviour (they are normalised); ``app_failure`` is the share of
    app-delivered upgrades whose app reports a failure."""

    confirm: float = 0.45
    appoint: float = 0.15
    cancel: float = 0.10
    silent: float = 0.15
    auto: float = 0.15
    app_failure: float = 0.1

    def pick(self, u: float) -> Behaviour:
        shares = [
            (Behaviour.CONFIRM, self.confirm),
            (Behaviour.APPOINT, self.appoint),
            (Behaviour.CANCEL, self.cancel),
            (Behaviour.SILENT, self.silent),
            (Behaviour.AUTO, self.auto),
        ]
        total = sum(s for _, s in shares)
        acc = 0.0
        for behaviour, share in shares:
            acc += share / total
            if u < acc:
                return behaviour
        return shares[-1][0]


def _u(seed: int, device_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def behaviour_of(device_id: str, *, seed: int, mix: OwnerMix) -> Behaviour:
    """The device's owner's behaviour (a pure function of seed and device ID)."""
    return mix.pick(_u(seed, device_id, "behaviour"))


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class OwnerPopulation:
    """The owners of ``owners`` (device -> owner) with their ``tokens``, driving the API at
    ``base_url``. ``now`` is the campaign clock (appointments start after it)."""

    def __init__(
        self,
        base_url: str,
        *,
        owners: Mapping[str, str],
        tokens: Mapping[str, str],
        seed: int = 1,
        mix: OwnerMix | None = None,
    ) -> None:
        self.base_url = base_url
        self.owners = dict(owners)
        self.tokens = dict(tokens)
        self.seed = seed
        self.mix = mix or OwnerMix()
        self.behaviours = {d: behaviour_of(d, seed=seed, mix=self.mix) for d in sorted(self.owners)}
        self.calls: Counter[str] = Counter()
        self._answered: set[str] = set()
        self._reported: dict[str, str] = {}

    def _by_owner(self, devices: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for d in devices:
            out.setdefault(self.owners[d], []).append(d)
        return out

    def _client(self, owner: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=60,
            headers={"Authorization": f"Bearer {self.tokens[owner]}"},
        )

    async def switch_auto_on(self) -> int:
        """Owners with the AUTO behaviour switch auto-confirm on (before plans are offered)."""
        devices = [d for d, b in self.behaviours.items() if b is Behaviour.AUTO]
        for owner, ids in self._by_owner(devices).items():
            async with self._client(owner) as client:
                for d in ids:
                    self.calls["setAutoUpgradeSwitch"] += 1
                    resp = await client.post(
                        "/enduserapi/setAutoUpgradeSwitch", json={"deviceId": d, "enabled": True}
                    )
                    resp.raise_for_status()
        return len(devices)

    async def answer(self, now: datetime) -> Counter[str]:
        """Each owner reads the plan once and answers for their devices in a plan, in
        batches; devices already answered are left alone. Returns answers by action."""
        done: Counter[str] = Counter()
        todo = [
            d
            for d, b in self.behaviours.items()
            if b in (Behaviour.CONFIRM, Behaviour.APPOINT, Behaviour.CANCEL)
            and d not in self._answered
        ]
        for owner, ids in self._by_owner(todo).items():
            async with self._client(owner) as client:
                details: dict[str, dict[str, object]] = {}
                for i in range(0, len(ids), _BATCH):
                    self.calls["getBatchUpgradeDetails"] += 1
                    resp = await client.post(
                        "/enduserapi/v2/getBatchUpgradeDetails",
                        json={"deviceIds": ids[i : i + _BATCH]},
                    )
                    resp.raise_for_status()
                    details.update({x["deviceId"]: x for x in resp.json()["data"]["details"]})
                in_plan = [d for d in ids if details[d].get("state") == "awaiting"]
                if not in_plan:
                    continue
                self.calls["getDeviceUpgradePlan"] += 1
                resp = await client.get(
                    "/enduserapi/v2/getDeviceUpgradePlan", params={"deviceId": in_plan[0]}
                )
                resp.raise_for_status()
                slot = _first_hour(resp.json()["data"], now)
                items = []
                for d in in_plan:
                    b = self.behaviours[d]
                    if b is Behaviour.APPOINT and slot is None:
                        b = Behaviour.CONFIRM  # no hour left to appoint: confirm instead
                    item: dict[str, str] = {"deviceId": d, "action": b.value}
                    if b is Behaviour.APPOINT and slot is not None:
                        item["appointStart"], item["appointEnd"] = _iso(slot[0]), _iso(slot[1])
                    items.append(item)
                for i in range(0, len(items), _BATCH):
                    self.calls["userBatchConfirmUpgrade"] += 1
                    resp = await client.post(
                        "/enduserapi/v2/userBatchConfirmUpgrade",
                        json={"items": items[i : i + _BATCH]},
                    )
                    resp.raise_for_status()
                for item in items:
                    self._answered.add(item["deviceId"])
                    done[item["action"]] += 1
        return done

    async def run_apps(self) -> Counter[str]:
        """For app-delivered plans: consenting owners' apps report ``confirmed``, then,
        once the package is released, download it and report the result (seeded)."""
        done: Counter[str] = Counter()
        apps = [
            d
            for d, b in self.behaviours.items()
            if b in (Behaviour.CONFIRM, Behaviour.APPOINT, Behaviour.AUTO)
            and self._reported.get(d) not in ("succeeded", "failed")
        ]
        for owner, ids in self._by_owner(apps).items():
            async with self._client(owner) as client:
                for d in ids:
                    self.calls["getFetchPlan"] += 1
                    resp = await client.get("/enduserapi/getFetchPlan", params={"deviceId": d})
                    if resp.status_code != 200:
                        continue  # in no plan, or not app-delivered
                    plan = resp.json()["data"]
                    steps: list[str] = []
                    if d not in self._reported:
                        steps.append("confirmed")
                    if plan["released"]:
                        failed = _u(self.seed, d, "app") < self.mix.app_failure
                        steps += ["downloading", "installing", "failed" if failed else "succeeded"]
                    for status in steps:
                        self.calls["reportUpgradeStatus"] += 1
                        resp = await client.post(
                            "/enduserapi/reportUpgradeStatus",
                            json={
                                "deviceId": d,
                                "status": status,
                                "version": plan["targetVersion"],
                            },
                        )
                        resp.raise_for_status()
                        self._reported[d] = status
                        done[status] += 1
        return done


def _first_hour(plan: Mapping[str, object], now: datetime) -> tuple[datetime, datetime] | None:
    """The first whole hour starting after ``now`` (plus a minute) inside a window of the
    plan, or inside its period when it has no windows."""
    windows = plan.get("windows") or []
    period = plan["period"]
    assert isinstance(period, dict) and isinstance(windows, list)
    spans = [(w["start"], w["end"]) for w in windows] or [(period["start"], period["end"])]
    earliest = now + timedelta(minutes=1)
    for s, e in spans:
        start = max(datetime.fromisoformat(s), earliest).replace(second=0, microsecond=0)
        start += timedelta(minutes=1)
        if start + timedelta(hours=1) <= datetime.fromisoformat(e):
            return start, start + timedelta(hours=1)
    return None
