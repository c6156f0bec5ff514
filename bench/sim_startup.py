"""Measure the simulator at scale: start-up of a 1,000,000-device fleet and page latencies.

Run: ``.venv/bin/python bench/sim_startup.py [--devices N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from fleetwave.sim.testing import run_simulator


def _timed(client: httpx.Client, n: int, method: str, path: str, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.request(method, path, **kw)  # type: ignore[arg-type]
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return out


def _fmt(name: str, ms: list[float]) -> None:
    p50 = statistics.median(ms)
    p95 = sorted(ms)[max(0, int(len(ms) * 0.95) - 1)]
    print(f"{name:<48} n={len(ms):<4} p50={p50:7.2f} ms  p95={p95:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=64)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with run_simulator(
        devices=args.devices, groups=args.groups, rate_limit=0, clock="manual"
    ) as sim:
        startup = time.perf_counter() - t0
        print(
            f"start-up of {args.devices:,} devices / {args.groups} groups: {startup * 1000:.0f} ms"
        )
        c = httpx.Client(base_url=sim.base_url, timeout=60)
        tok = c.post(
            "/iocm/app/sec/v1.1.0/login", data={"appId": sim.app_id, "secret": sim.secret}
        ).json()["accessToken"]
        c.headers.update({"app_key": sim.app_id, "Authorization": f"Bearer {tok}"})
        groups = c.get("/iocm/app/devgroup/v1.3.0/devGroups").json()["list"]
        big = max(groups, key=lambda g: g["curDevNum"])
        print(f"largest group {big['name']}: {big['curDevNum']:,} devices")
        members = "/iocm/app/dm/v1.2.0/devices/ids"
        last = big["curDevNum"] // 1000
        _fmt(
            "member page (1000 ids), first page",
            _timed(
                c,
                50,
                "GET",
                members,
                params={"devGroupId": big["id"], "pageNo": 0, "pageSize": 1000},
            ),
        )
        _fmt(
            "member page (1000 ids), last page",
            _timed(
                c,
                50,
                "GET",
                members,
                params={"devGroupId": big["id"], "pageNo": last, "pageSize": 1000},
            ),
        )
        devices = "/iocm/app/dm/v1.4.0/devices"
        _fmt(
            "device batch page (250 devices)",
            _timed(c, 30, "GET", devices, params={"pageNo": 1000, "pageSize": 250}),
        )
        first = _timed(
            c, 1, "GET", devices, params={"pageNo": 0, "pageSize": 250, "status": "OFFLINE"}
        )
        _fmt("device batch by status, first (builds index)", first)
        _fmt(
            "device batch by status, cached",
            _timed(
                c, 30, "GET", devices, params={"pageNo": 3, "pageSize": 250, "status": "OFFLINE"}
            ),
        )
        fid = c.get(
            "/iodm/northbound/v1.5.0/category",
            params={
                "model": big["description"].split()[1],
                "fileType": "firmwarePackage",
                "pageSize": 100,
            },
        ).json()["data"][-1]["fileId"]
        ids = c.get(
            members, params={"devGroupId": big["id"], "pageNo": 0, "pageSize": 1000}
        ).json()["deviceIds"]
        create = []
        for k in range(100):
            chunk = ids[(k % 3) * 256 : (k % 3) * 256 + 256]
            t = time.perf_counter()
            r = c.post(
                "/iodm/northbound/v1.5.0/operations/firmwareUpgrade",
                json={"fileId": fid, "targets": {"devices": chunk}},
            )
            create.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
        _fmt("create task (256 devices)", create)
        sim.advance(600)
        _fmt(
            "task list page (100 tasks x 256 devices)",
            _timed(c, 10, "GET", "/iodm/northbound/v1.5.0/operations", params={"pageSize": 100}),
        )
        op = r.json()["operationId"]
        _fmt(
            "subtask page (100)",
            _timed(
                c,
                30,
                "GET",
                f"/iodm/northbound/v1.5.0/operations/{op}/subOperations",
                params={"pageSize": 100},
            ),
        )
        t = time.perf_counter()
        sim.stats(tasks=False)
        print(f"GET /sim/stats?tasks=false: {(time.perf_counter() - t) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
