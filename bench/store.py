"""Benchmark of the campaign state store at fleet scale, beside the raw driver as the floor.

Work (same for both): insert N device rows of one campaign, apply 3 rounds of status
updates by device ID (queued, submitted, results: 97 % succeeded / 3 % failed with a
failure kind), then read per-status and per-wave counts with GROUP BY. The store path also
claims every device (one INSERT ... SELECT). Each path runs in its own process so its peak
RSS (getrusage) is its own; the floor is ``sqlite3.executemany`` (SQLite) or psycopg's
``executemany`` (PostgreSQL) on the same migrated schema.

    .venv/bin/python bench/store.py --devices 1000000 [--db sqlite|pg] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

WAVES = 10
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def _device(i: int) -> str:
    return f"dev-{i:08d}"


def _wave(i: int, n: int) -> int:
    return min(i * WAVES // n, WAVES - 1)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(db: str, target: str, schema: str | None) -> Any:
    from fleetwave import store

    return store.get_engine(target, schema=schema)


def run_store(db: str, target: str, schema: str | None, n: int, out: Any) -> None:
    from fleetwave import store
    from fleetwave.store import DeviceResult, DeviceRunStatus, WavePlan

    engine = _engine(db, target, schema)
    store.upgrade_schema(engine)
    base_rss = _rss_mb()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    with store.session_scope(engine) as s:
        cid = store.create_or_get_campaign(s, name="bench", spec={"devices": n}, now=NOW).id
        assert cid is not None
        store.create_waves(
            s,
            campaign_id=cid,
            waves=[WavePlan(w, f"wave-{w}", n // WAVES) for w in range(WAVES)],
            now=NOW,
        )
        rows = ((_device(i), _wave(i, n), "1.0", "2.0") for i in range(n))
        store.add_device_runs(s, campaign_id=cid, devices=rows, now=NOW, claim=False)
    times["insert"] = time.perf_counter() - t0
    t = time.perf_counter()
    with store.session_scope(engine) as s:
        store.claim_devices(s, campaign_id=cid, now=NOW)
    times["claim"] = time.perf_counter() - t
    rounds: list[tuple[str, Iterator[DeviceResult]]] = [
        ("queued", (DeviceResult(_device(i), DeviceRunStatus.QUEUED) for i in range(n))),
        ("submitted", (DeviceResult(_device(i), DeviceRunStatus.SUBMITTED) for i in range(n))),
        (
            "results",
            (
                DeviceResult(_device(i), DeviceRunStatus.FAILED, "install_failed", "code 3")
                if i % 33 == 0
                else DeviceResult(_device(i), DeviceRunStatus.SUCCEEDED, current_version="2.0")
                for i in range(n)
            ),
        ),
    ]
    for name, results in rounds:
        t = time.perf_counter()
        with store.session_scope(engine) as s:
            changed = store.record_device_results(s, campaign_id=cid, results=results, now=NOW)
        assert changed == n, (name, changed)
        times[f"update {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    with store.session_scope(engine, read_only=True) as s:
        counts = store.device_status_counts(s, campaign_id=cid)
        store.device_status_counts_by_wave(s, campaign_id=cid)
    times["counts"] = time.perf_counter() - t
    assert sum(counts.values()) == n
    engine.dispose()
    out.put(
        {
            "times": times,
            "peak_rss_mb": _rss_mb(),
            "base_rss_mb": base_rss,
            "counts": {k.value: v for k, v in counts.items()},
        }
    )


def run_floor(db: str, target: str, schema: str | None, n: int, out: Any) -> None:
    from fleetwave import store

    engine = _engine(db, target, schema)
    store.upgrade_schema(engine)
    with store.session_scope(engine) as s:
        cid = store.create_or_get_campaign(s, name="floor", spec={}, now=NOW).id
    engine.dispose()
    base_rss = _rss_mb()
    stamp = NOW.isoformat(sep=" ")
    if db == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(target.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        ph = "?"
    else:
        import psycopg

        dsn = target.replace("postgresql+psycopg://", "postgresql://")
        conn = psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}")
        ph = "%s"
    insert = (
        "INSERT INTO device_run (campaign_id, device_id, wave_index, source_version,"
        " target_version, status, attempt, created_at, updated_at)"
        f" VALUES ({', '.join([ph] * 9)})"
    )
    update = (
        f"UPDATE device_run SET status = {ph}, updated_at = {ph}, failure_kind = {ph},"
        f" failure_detail = {ph} WHERE campaign_id = {ph} AND device_id = {ph}"
    )
    batch = 5000

    def chunks(gen: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
        buf: list[tuple[Any, ...]] = []
        for row in gen:
            buf.append(row)
            if len(buf) == batch:
                yield buf
                buf = []
        if buf:
            yield buf

    def in_tx(sql: str, gen: Iterator[tuple[Any, ...]]) -> None:
        cur = conn.cursor()
        cur.execute("BEGIN")
        for rows in chunks(gen):
            cur.executemany(sql, rows)
        cur.execute("COMMIT")

    times: dict[str, float] = {}
    t = time.perf_counter()
    in_tx(
        insert,
        (
            (cid, _device(i), _wave(i, n), "1.0", "2.0", "pending", 0, stamp, stamp)
            for i in range(n)
        ),
    )
    times["insert"] = time.perf_counter() - t
    for name, status in (("queued", "queued"), ("submitted", "submitted")):
        t = time.perf_counter()
        in_tx(update, ((status, stamp, None, None, cid, _device(i)) for i in range(n)))
        times[f"update {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    in_tx(
        update,
        (
            ("failed", stamp, "install_failed", "code 3", cid, _device(i))
            if i % 33 == 0
            else ("succeeded", stamp, None, None, cid, _device(i))
            for i in range(n)
        ),
    )
    times["update results"] = time.perf_counter() - t
    t = time.perf_counter()
    cur = conn.cursor()
    cur.execute(
        f"SELECT status, count(*) FROM device_run WHERE campaign_id = {ph} GROUP BY status", (cid,)
    )
    counts = dict(cur.fetchall())
    cur.execute(
        f"SELECT wave_index, status, count(*) FROM device_run WHERE campaign_id = {ph}"
        " GROUP BY wave_index, status",
        (cid,),
    )
    cur.fetchall()
    times["counts"] = time.perf_counter() - t
    conn.close()
    out.put({"times": times, "peak_rss_mb": _rss_mb(), "base_rss_mb": base_rss, "counts": counts})


def _in_process(fn: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, out))
    proc.start()
    result = out.get()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"{fn.__name__} failed with exit code {proc.exitcode}")
    return dict(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "pg"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "FLEETWAVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    n = args.devices
    print(f"store benchmark: {n:,} devices, {args.db}")
    with tempfile.TemporaryDirectory(prefix="fleetwave-bench-") as tmp:
        results = {}
        schemas: list[str] = []
        for label, fn in (("store", run_store), ("floor", run_floor)):
            if args.db == "sqlite":
                target, schema = f"sqlite:///{tmp}/{label}.db", None
            else:
                import sqlalchemy as sa

                target, schema = args.pg_url, f"fw_bench_{uuid.uuid4().hex[:8]}"
                admin = sa.create_engine(target)
                with admin.begin() as conn:
                    conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                admin.dispose()
                schemas.append(schema)
            try:
                results[label] = _in_process(fn, args.db, target, schema, n)
            finally:
                if schema:
                    import sqlalchemy as sa

                    admin = sa.create_engine(target)
                    with admin.begin() as conn:
                        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                    admin.dispose()
    floor_name = "sqlite3.executemany" if args.db == "sqlite" else "psycopg executemany"
    store_t, floor_t = results["store"]["times"], results["floor"]["times"]
    print(f"{'step':<18}{'store s':>10}{'rows/s':>12}{'floor s':>10}{'rows/s':>12}{'ratio':>8}")
    for step in (
        "insert",
        "claim",
        "update queued",
        "update submitted",
        "update results",
        "counts",
    ):
        st, ft = store_t.get(step), floor_t.get(step)
        ratio = f"{st / ft:.2f}" if st and ft else "-"
        srate = f"{n / st:,.0f}" if st else "-"
        frate = f"{n / ft:,.0f}" if ft else "-"
        print(
            f"{step:<18}{(f'{st:.2f}' if st else '-'):>10}{srate:>12}"
            f"{(f'{ft:.2f}' if ft else '-'):>10}{frate:>12}{ratio:>8}"
        )
    common = [k for k in floor_t if k in store_t]
    s_total, f_total = sum(store_t[k] for k in common), sum(floor_t[k] for k in common)
    print(
        f"total (same work)  store {s_total:.2f}s = {4 * n / s_total:,.0f} row-writes/s, "
        f"{floor_name} {f_total:.2f}s = {4 * n / f_total:,.0f} row-writes/s, "
        f"ratio {s_total / f_total:.2f}x"
    )
    for label in ("store", "floor"):
        r = results[label]
        peak, base = r["peak_rss_mb"], r["base_rss_mb"]
        print(
            f"peak RSS {label}: {peak:.0f} MB "
            f"(after imports {base:.0f} MB, work +{peak - base:.0f} MB)"
        )
    print(f"final counts: {results['store']['counts']}")


if __name__ == "__main__":
    main()
