"""Consent benchmark: a consent campaign of N devices on the IoDM simulator, the seeded owner
population answering over real HTTP through the end-user consent API on the same store.

Three processes besides the simulator's own: this one runs the engine (without Prefect,
on a clock linked to the simulator's manual clock, as bench/api_calls.py does), the
consent API serves in a child process on the same SQLite store and the simulator's clock,
and the owners (``fleetwave.sim.owners``, ``--devices-per-owner`` devices each) run in
another child, ``--concurrency`` of them answering at once. So the engine's peak RSS is
this process's, and the API's throughput is not the owners' CPU.

    .venv/bin/python bench/consent.py --devices 10000 [--seed 1] [--owner-seed 1]

The phases: owners imported with their tokens (the operator's ``consent import-owners``
and ``consent token``), owners with auto-confirm switch it on, run 1 plans the campaign,
offers the plan and sends the auto-confirmed devices, the owners answer (confirm, appoint
the first hour they can, cancel; some never answer), run 2 goes to the end (the silent
devices expire at ``--answer-timeout``).

Printed: the platform calls by category against the API-budget bound of the devices sent
(bench/api_calls.py's), the tasks created per send group (auto-confirmed, confirmed, each
appointment) against ``ceil(devices/256)`` and the mean devices per task; the consent API's
requests per endpoint with p50/p95 latency, answers a second and end-user calls per
device; the engine's peak RSS (and with ``--tracemalloc`` the traced peak); the stages
(Prefect task runs the flow would create); the wall time of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `fleetwave` and `bench` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.harness import (  # noqa: E402
    EXECUTION,
    TASK_LIMIT,
    RunResult,
    bench_simulator,
    bench_spec_text,
    by_category,
    lower_bound,
    quiet_process,
    run_campaign,
    sim_calls,
    sim_stats,
)

__all__ = [
    "GroupFigures",
    "LatencyStats",
    "OwnerRun",
    "latency_stats",
    "main",
    "owner_of",
    "send_groups",
]

NAME = "bench-consent"


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- pure helpers


def owner_of(index: int, per_owner: int) -> str:
    """The simulated owner of the fleet's ``index``-th device (``per_owner`` devices each)."""
    return f"owner-{index // per_owner:07d}"


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency figures of one endpoint's requests, in milliseconds."""

    count: int
    p50: float
    p95: float
    max: float


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted ``ordered`` (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """p50/p95/max (nearest rank) of request durations given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    return LatencyStats(
        count=len(ordered),
        p50=_quantile(ordered, 0.50) * 1000,
        p95=_quantile(ordered, 0.95) * 1000,
        max=(ordered[-1] * 1000) if ordered else 0.0,
    )


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """The tasks of one send group (devices sent together with one platform policy)."""

    label: str
    devices: int
    tasks: int

    @property
    def bound(self) -> int:
        return math.ceil(self.devices / TASK_LIMIT)

    @property
    def mean(self) -> float:
        return self.devices / self.tasks if self.tasks else 0.0


def send_groups(chunks: Sequence[Mapping[str, Any]]) -> list[GroupFigures]:
    """Group the campaign's created tasks (``round``, ``policy``, ``devices``, ``run``) by
    what the owners' answers make one send group: the engine run and round, and the
    platform window (an appointment's custom window, or none)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for c in chunks:
        policy = c["policy"] or {}
        window = (
            (policy.get("start_time"), policy.get("end_time"))
            if policy.get("execute_type") == "custom"
            else None
        )
        groups.setdefault((c["run"], c["round"], window), []).append(int(c["devices"]))
    out = []
    for (run, round_no, window), sizes in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ("", ""))
    ):
        what = f"window {window[0]} .. {window[1]}" if window else "now"
        out.append(GroupFigures(f"run {run} round {round_no} {what}", sum(sizes), len(sizes)))
    return out


# ---------------------------------------------------------------------------- children


def _serve_api(db_url: str, sim_url: str, urls: Any, stop: Any) -> None:
    """The consent API on the store at ``db_url`` and the simulator's clock (a child)."""
    quiet_process()
    from fleetwave import store
    from fleetwave.consent.app import ConsentServer, create_consent_app
    from fleetwave.sim.linked_clock import SimLinkedClock

    engine = store.get_engine(db_url)
    clock = SimLinkedClock(sim_url)
    server = ConsentServer(create_consent_app(engine=engine, now=clock.now), "127.0.0.1", 0)
    server.start_in_thread()
    urls.put(server.url)
    stop.wait()
    server.stop()
    clock.close()
    engine.dispose()


class _TimedTransport(httpx.AsyncBaseTransport):
    """A shared connection pool that times each request to its last body byte, per
    endpoint; a client closing it leaves it open (it is closed at the end)."""

    def __init__(self, connections: int) -> None:
        self.inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        )
        self.seconds: dict[str, list[float]] = {}
        self.statuses: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        spent = time.perf_counter() - t0
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.seconds.setdefault(endpoint, []).append(spent)
        self.statuses[f"{endpoint} {response.status_code}"] += 1
        return response

    async def aclose(self) -> None:
        """Kept open for the next client (see :meth:`close`)."""

    async def close(self) -> None:
        await self.inner.aclose()


@dataclass
class OwnerRun:
    """What the owners' process did in one phase."""

    wall: float
    calls: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    behaviours: Counter[str] = field(default_factory=Counter)


def _owners_phase(
    phase: str,
    api_url: str,
    owners: dict[str, str],
    tokens: dict[str, str],
    seed: int,
    concurrency: int,
    now_iso: str | None,
    out: Any,
) -> None:
    """Run one phase of the owner population (``auto`` or ``answer``) in ``concurrency``
    lanes of owners, and put an :class:`OwnerRun` on ``out`` (a child process)."""
    from datetime import datetime

    from fleetwave.sim.owners import OwnerPopulation

    transport = _TimedTransport(concurrency)

    class Timed(OwnerPopulation):
        def _client(self, owner: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.base_url,
                timeout=60,
                headers={"Authorization": f"Bearer {self.tokens[owner]}"},
                transport=transport,
            )

    names = sorted(set(owners.values()))
    lane_of = {o: i % concurrency for i, o in enumerate(names)}
    lanes: list[dict[str, str]] = [{} for _ in range(concurrency)]
    for device, owner in owners.items():
        lanes[lane_of[owner]][device] = owner
    pops = [Timed(api_url, owners=lane, tokens=tokens, seed=seed) for lane in lanes if lane]
    result = OwnerRun(wall=0.0)
    for p in pops:
        result.behaviours.update(b.value for b in p.behaviours.values())

    async def go() -> None:
        if phase == "auto":
            counts = await asyncio.gather(*(p.switch_auto_on() for p in pops))
            result.done["auto"] = sum(counts)
        else:
            assert now_iso is not None
            now = datetime.fromisoformat(now_iso)
            for done in await asyncio.gather(*(p.answer(now) for p in pops)):
                result.done.update(done)
        await transport.close()

    t0 = time.perf_counter()
    asyncio.run(go())
    result.wall = time.perf_counter() - t0
    for p in pops:
        result.calls.update(p.calls)
    result.seconds = transport.seconds
    result.statuses = transport.statuses
    out.put(result)


def _in_child(ctx: Any, what: str, target: Any, *args: Any) -> Any:
    """Run ``target(*args, queue)`` in a child process and return what it put on the queue;
    exits with a one-line error when the child ends without putting anything."""
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    try:
        while True:
            try:
                return out.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    raise SystemExit(
                        f"error: the {what} process ended (exit code {proc.exitcode}) before "
                        "it reported; its traceback is above"
                    ) from None
    finally:
        proc.join()


# ---------------------------------------------------------------------------- the engine


def _memory() -> dict[str, float]:
    """This process's VmRSS and VmHWM (peak) in MiB, from /proc (Linux)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def consent_spec_text(
    *, inflight: int, poll: str, waves: str, period: str, answer_timeout: str
) -> str:
    """bench/api_calls.py's campaign with a ``consent:`` section (owners must agree)."""
    return bench_spec_text(NAME, inflight=inflight, poll=poll, waves=waves) + (
        f"consent:\n  period: {period}\n  answer_timeout: {answer_timeout}\n"
    )


def _store_figures(db_url: str, run_of_chunk: Mapping[int, int]) -> dict[str, Any]:
    from fleetwave import store

    engine = store.get_engine(db_url)
    try:
        with store.session_scope(engine, read_only=True) as s:
            campaign = store.get_campaign(s, name=NAME)
            assert campaign.id is not None
            chunks = [
                {
                    "run": run_of_chunk.get(c.id or 0, 2),
                    "round": c.round,
                    "policy": c.policy,
                    "devices": c.device_count,
                }
                for c in store.list_chunks(s, campaign_id=campaign.id)
                if c.operation_id
            ]
            consent = store.consent_state_counts(s, campaign_id=campaign.id)
            statuses = {
                k.value: v
                for k, v in store.device_status_counts(s, campaign_id=campaign.id).items()
            }
            kinds: Counter[str] = Counter(
                r.failure_kind or "-"
                for r in store.iter_device_runs(
                    s, campaign_id=campaign.id, statuses=[store.DeviceRunStatus.SKIPPED]
                )
            )
            rows = store.iter_device_runs(s, campaign_id=campaign.id)
            sent = sum(1 for r in rows if r.attempt > 0)
    finally:
        engine.dispose()
    return {
        "chunks": chunks,
        "consent": consent,
        "statuses": statuses,
        "skipped": dict(kinds),
        "sent": sent,
    }


def _chunk_ids(db_url: str) -> list[int]:
    from fleetwave import store

    engine = store.get_engine(db_url)
    try:
        with store.session_scope(engine, read_only=True) as s:
            campaign = store.get_campaign(s, name=NAME)
            assert campaign.id is not None
            return [c.id for c in store.list_chunks(s, campaign_id=campaign.id) if c.id]
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- report


def _report_owners(phases: Mapping[str, OwnerRun], devices: int) -> None:
    _say("consent API (end-user calls, measured by the owners' client over HTTP):")
    _say(f"  {'phase / endpoint':<44} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    every: list[float] = []
    total = 0
    for phase, run in phases.items():
        for endpoint, seconds in sorted(run.seconds.items()):
            st = latency_stats(seconds)
            every += seconds
            total += st.count
            _say(
                f"  {phase + ' ' + endpoint:<44} {st.count:>8} {st.p50:>8.1f} {st.p95:>8.1f} "
                f"{st.max:>8.1f}"
            )
    st = latency_stats(every)
    _say(f"  {'all':<44} {st.count:>8} {st.p50:>8.1f} {st.p95:>8.1f} {st.max:>8.1f}")
    bad = {k: n for run in phases.values() for k, n in run.statuses.items() if " 2" not in k}
    if bad:
        _say(f"  non-2xx answers: {bad}")
    for phase, run in phases.items():
        reqs = sum(len(v) for v in run.seconds.values())
        answered = sum(run.done.values())
        _say(
            f"  {phase}: {answered} devices ({dict(sorted(run.done.items()))}) in {reqs} "
            f"requests, {run.wall:.1f} s wall: {answered / max(run.wall, 1e-9):,.0f} "
            f"devices/s, {reqs / max(run.wall, 1e-9):,.0f} requests/s"
        )
    _say(
        f"  end-user calls per device: {total / devices:.3f} ({total} calls for {devices} "
        "devices in the fleet)"
    )


def _report_platform(
    runs: Sequence[RunResult], stats: Mapping[str, Any], figures: Mapping[str, Any]
) -> None:
    calls = sim_calls(stats)
    cats = by_category(calls)
    sent = figures["sent"]
    rounds = [a for r in runs for a in r.meter.active_per_round]
    bound = lower_bound(sent, rounds)
    execution = sum(cats[c] for c in EXECUTION)
    groups = send_groups(figures["chunks"])
    _say("platform (IoDM simulator, server counts):")
    _say(f"  {'send group':<66} {'devices':>7} {'tasks':>6} {'bound':>6} {'mean/task':>9}")
    for g in groups:
        _say(f"  {g.label:<66} {g.devices:>7} {g.tasks:>6} {g.bound:>6} {g.mean:>9.1f}")
    tasks = sum(g.tasks for g in groups)
    devices = sum(g.devices for g in groups)
    _say(
        f"  {'all':<66} {devices:>7} {tasks:>6} {sum(g.bound for g in groups):>6} "
        f"{devices / max(tasks, 1):>9.1f}"
    )
    _say(
        f"  creates {cats['create']} (bound: ceil(devices/256) per send group = "
        f"{sum(g.bound for g in groups)}; ceil({sent}/256) = {bound.creates} over all)"
    )
    _say(
        f"  execution calls {execution} (create {cats['create']}, subtask pages "
        f"{cats['subtasks']}, progress {cats['progress']}) against the bound {bound.total} "
        f"({bound.creates} + {bound.subtask_pages} + {bound.progress} over {len(rounds)} "
        f"progress rounds): ratio {execution / max(bound.total, 1):.3f}"
    )
    outside = sum(calls.values()) - execution
    _say(
        f"  outside the bound: {outside} (login {cats['login']}, verify {cats['verify']}, "
        f"resolve {cats['resolve']}, other {cats['other']}); all / bound "
        f"{sum(calls.values()) / max(bound.total, 1):.3f}"
    )
    counts = Counter(stats.get("device_task_counts", {}).values())
    _say(f"  devices by number of tasks on the platform: {dict(sorted(counts.items()))}")


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/consent.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, required=True, help="fleet size = devices targeted")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument("--owner-seed", type=int, default=1, help="owner behaviour seed (1)")
    parser.add_argument(
        "--devices-per-owner", type=int, default=3, help="devices each owner has (default 3)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="owners answering at once (default 16)"
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="platform calls a minute, simulator and client (default 100, IoDM's; 0 = off)",
    )
    parser.add_argument("--inflight", type=int, default=100, help="max_inflight_tasks (100)")
    parser.add_argument("--poll", default="5m", help="poll_interval (default 5m)")
    parser.add_argument("--waves", choices=("canary", "single"), default="single")
    parser.add_argument("--period", default="2d", help="consent period (default 2d)")
    parser.add_argument("--answer-timeout", default="2h", help="consent answer_timeout (2h)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace the engine's Python allocations"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store and logs here")
    args = parser.parse_args(argv)
    for name in ("devices", "devices_per_owner", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rate_limit < 0:
        parser.error(f"--rate-limit must be >= 0, not {args.rate_limit}")
    quiet_process()
    from fleetwave import store
    from fleetwave.sim.fleet import Fleet
    from fleetwave.sim.linked_clock import parse_sim_time

    ctx = mp.get_context("spawn")
    after_imports = _memory()
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fleetwave-consent-") as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "consent.db"
        db.unlink(missing_ok=True)
        db_url = f"sqlite:///{db}"
        spec_text = consent_spec_text(
            inflight=args.inflight,
            poll=args.poll,
            waves=args.waves,
            period=args.period,
            answer_timeout=args.answer_timeout,
        )
        _say(
            f"consent: {args.devices} devices, {args.devices_per_owner} a owner, seeds "
            f"{args.seed}/{args.owner_seed}, {args.concurrency} owners at once, rate limit "
            f"{args.rate_limit or 'unlimited'}/min, inflight {args.inflight}, poll "
            f"{args.poll}, waves {args.waves}, answer timeout {args.answer_timeout}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        t_all = time.perf_counter()
        with bench_simulator(
            devices=args.devices,
            seed=args.seed,
            rate_limit=args.rate_limit,
            log=work / "sim.log",
        ) as sim:
            walls["simulator start"] = time.perf_counter() - t_all
            t0 = time.perf_counter()
            fleet = Fleet(args.devices, 1, args.seed)
            owners = {
                fleet.device_id(i): owner_of(i, args.devices_per_owner) for i in range(args.devices)
            }
            engine = store.get_engine(db_url)
            store.upgrade_schema(engine)
            start = parse_sim_time(httpx.get(f"{sim.base_url}/sim/clock").json())
            with store.session_scope(engine) as s:
                store.import_device_owners(s, rows=list(owners.items()), now=start)
                tokens = {
                    o: store.issue_owner_token(s, owner_id=o, now=start)
                    for o in sorted(set(owners.values()))
                }
            engine.dispose()
            walls["import owners, issue tokens"] = time.perf_counter() - t0
            urls, stop = ctx.Queue(), ctx.Event()
            api = ctx.Process(target=_serve_api, args=(db_url, sim.base_url, urls, stop))
            api.start()
            phases: dict[str, OwnerRun] = {}
            runs: list[RunResult] = []
            try:
                try:
                    api_url = urls.get(timeout=120)
                except queue.Empty:
                    raise SystemExit(
                        "error: the consent API did not start within 120 s; its traceback, "
                        "if any, is above"
                    ) from None
                phases["auto"] = _in_child(
                    ctx,
                    "owners (auto-confirm)",
                    _owners_phase,
                    "auto",
                    api_url,
                    owners,
                    tokens,
                    args.owner_seed,
                    args.concurrency,
                    None,
                )
                walls["owners: auto-confirm on"] = phases["auto"].wall
                if args.tracemalloc:
                    tracemalloc.start()
                t0 = time.perf_counter()
                runs.append(
                    asyncio.run(
                        run_campaign(
                            base_url=sim.base_url,
                            spec_text=spec_text,
                            db_url=db_url,
                            rate_limit=args.rate_limit,
                            push=False,
                            max_rounds=1,
                        )
                    )
                )
                walls["run 1: plan, offer, send auto"] = time.perf_counter() - t0
                first_chunks = set(_chunk_ids(db_url))
                mem_run1 = _memory()
                now = parse_sim_time(httpx.get(f"{sim.base_url}/sim/clock").json())
                phases["answer"] = _in_child(
                    ctx,
                    "owners (answers)",
                    _owners_phase,
                    "answer",
                    api_url,
                    owners,
                    tokens,
                    args.owner_seed,
                    args.concurrency,
                    now.isoformat(),
                )
                walls["owners: answer"] = phases["answer"].wall
                t0 = time.perf_counter()
                runs.append(
                    asyncio.run(
                        run_campaign(
                            base_url=sim.base_url,
                            spec_text=spec_text,
                            db_url=db_url,
                            rate_limit=args.rate_limit,
                            push=False,
                        )
                    )
                )
                walls["run 2: to the end"] = time.perf_counter() - t0
                traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
                if args.tracemalloc:
                    tracemalloc.stop()
                mem_end = _memory()
            finally:
                stop.set()
                api.join(30)
            stats = sim_stats_with_tasks(sim.base_url)
            base_stats = sim_stats(sim.base_url)
        walls["total"] = time.perf_counter() - t_all
        figures = _store_figures(db_url, dict.fromkeys(first_chunks, 1))

    _say("")
    _say(f"outcome: run 1 {runs[0].outcome}; run 2 {runs[1].outcome}")
    behaviours = phases["answer"].behaviours
    _say(f"owner behaviours (seeded): {dict(sorted(behaviours.items()))}")
    _say(f"consent states: {figures['consent']}")
    _say(f"device statuses: {figures['statuses']}; skipped by kind: {figures['skipped']}")
    sim_span = (runs[1].sim_end - runs[0].sim_start).total_seconds() / 3600
    _say(f"simulated time {sim_span:.2f} h; devices sent {figures['sent']}")
    _say("")
    _report_platform(runs, {**base_stats, **stats}, figures)
    _say("")
    _report_owners(phases, args.devices)
    _say("")
    _say("engine (this process; the simulator, the consent API and the owners are not in it):")
    _say(
        f"  peak RSS {mem_end.get('VmHWM', 0):.0f} MiB (after imports "
        f"{after_imports.get('VmRSS', 0):.0f}, after run 1 {mem_run1.get('VmHWM', 0):.0f} "
        f"peak; the owner map and tokens are in it too)"
    )
    if traced is not None:
        _say(f"  tracemalloc peak over runs 1-2: {traced / 2**20:.0f} MiB")
    _say(
        f"  wall {sum(r.wall for r in runs):.1f} s, CPU {sum(r.cpu for r in runs):.1f} s over "
        f"the two runs; monitoring rounds {sum(r.meter.steps for r in runs)}"
    )
    stages: Counter[str] = Counter()
    for r in runs:
        stages.update(r.meter.stages_by_kind)
    _say(
        f"  stages = Prefect task runs the flows would create (counted, run without "
        f"Prefect): {sum(r.meter.stages for r in runs)} {dict(sorted(stages.items()))}"
    )
    seconds: Counter[str] = Counter()
    for r in runs:
        seconds.update(r.meter.seconds_by_stage)
    _say(
        "  engine seconds per stage kind: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(seconds.items()))
    )
    _say("")
    _say("wall time by phase: " + ", ".join(f"{k} {v:.1f} s" for k, v in walls.items()))
    return 0


def sim_stats_with_tasks(base_url: str) -> dict[str, Any]:
    """``GET /sim/stats`` with the tasks and the per-device task counts."""
    resp = httpx.get(f"{base_url}/sim/stats", timeout=300)
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return {"device_task_counts": body.get("device_task_counts", {})}


if __name__ == "__main__":
    raise SystemExit(main())
