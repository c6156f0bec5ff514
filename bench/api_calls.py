"""API-budget benchmark: one campaign against the simulator, its calls against the lower bound.

The simulator runs in its own process (manual clock, ``--rate-limit`` calls a minute, the
platform's default 100 unless told otherwise); the engine runs in this process on a clock
linked to the simulator's, so every wait (poll interval, rate limiter) is an instant jump
of simulated time and the API budget is spent exactly as it would be in real time.

    .venv/bin/python bench/api_calls.py --devices 10000 [--push] [--seed 1] [--rate-limit 100]
    .venv/bin/python bench/api_calls.py --platform thingspace --devices 10000

On ThingSpace (FOTA v1 firmware upgrades of IMEIs, no groups) the bound is its own
(docs/performance.md): ``ceil(N/1000)`` creates + one read of each active upgrade per
progress round + one read of each upgrade for its per-device results.

Counted against the issue's lower bound (``ceil(N/256)`` creates + ``ceil(N/100)`` subtask
pages + ``ceil(active/100)`` per progress round): task creation, task lists and task reads
(progress and reconciliation), subtask pages. Outside it and printed apart: login/token
calls, package verification, target resolution (groups, group members, inventory pages)
and push subscriptions. The ratio is printed both ways (execution calls / bound and all
calls / bound).

The machinery (simulator launcher, categories, bound, meters, the campaign run) is in
bench/harness.py; this script parses the arguments and prints the report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `fleetwave` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    CATEGORIES,
    EXECUTION,
    PAGE,
    TASK_LIMIT,
    TS_CATEGORIES,
    TS_EXECUTION,
    Bound,
    RunResult,
    TSBound,
    bench_simulator,
    bench_spec_text,
    bench_ts_spec_text,
    by_category,
    categorize,
    categorize_ts,
    lower_bound,
    quiet_process,
    run_campaign,
    sim_calls,
    sim_stats,
    ts_lower_bound,
)

__all__ = ["main", "report", "report_ts"]


# ---------------------------------------------------------------------------- report


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def report(result: RunResult, server_calls: Mapping[str, int], *, devices: int) -> Bound:
    """Print calls per endpoint (server and client view), the categories, bound and ratios."""
    n = result.planned_devices
    bound = lower_bound(n, result.meter.active_per_round)
    _say(f"outcome: {result.outcome}")
    _say(
        f"devices: fleet {devices}, targeted {n}; tasks created {result.submitted_tasks}; "
        f"progress rounds {len(result.meter.active_per_round)} (+{result.meter.quiet_rounds} "
        f"without calls); simulated time "
        f"{(result.sim_end - result.sim_start).total_seconds() / 3600:.2f} h; engine wall "
        f"{result.wall:.1f} s, CPU {result.cpu:.1f} s"
    )
    _say("")
    _say(f"{'endpoint (template)':<66} {'server':>7} {'client':>7}  category")
    endpoints = sorted(set(server_calls) | set(result.client_calls))
    for ep in endpoints:
        _say(
            f"{ep:<66} {server_calls.get(ep, 0):>7} {result.client_calls.get(ep, 0):>7}  "
            f"{categorize(ep)}"
        )
    total_server, total_client = sum(server_calls.values()), sum(result.client_calls.values())
    _say(f"{'total':<66} {total_server:>7} {total_client:>7}")
    non_2xx = {
        ep: {st: c for st, c in by.items() if not st.startswith("2")}
        for ep, by in result.client_statuses.items()
    }
    non_2xx = {ep: by for ep, by in non_2xx.items() if by}
    if non_2xx:
        _say(f"non-2xx answers seen by the client: {non_2xx}")
    cats = by_category(server_calls)
    execution = sum(cats[c] for c in EXECUTION)
    _say("")
    _say("per category (server counts):")
    for c in CATEGORIES:
        if cats[c]:
            _say(f"  {c:<10} {cats[c]:>7}")
    _say("per engine stage (client counts): " + ", ".join(
        f"{k} {v}" for k, v in sorted(result.meter.calls_by_stage.items())
    ))  # fmt: skip
    rounds = result.meter.active_per_round
    if rounds:
        _say(
            f"active tasks per progress round: max {max(rounds)}, mean "
            f"{sum(rounds) / len(rounds):.1f}, rounds with > 100: "
            f"{sum(1 for a in rounds if a > PAGE)}, with <= 2: {sum(1 for a in rounds if a <= 2)}"
        )
    _say(
        f"Prefect task runs the flow would create (stages): {result.meter.stages} "
        f"{dict(sorted(result.meter.stages_by_kind.items()))}; monitoring rounds inside "
        f"them (no task runs): {result.meter.steps}"
    )
    _say("")
    _say(
        f"lower bound: {bound.creates} creates (ceil({n}/256)) + {bound.subtask_pages} "
        f"subtask pages (ceil({n}/100)) + {bound.progress} progress calls "
        f"(sum of ceil(active/100) over {len(result.meter.active_per_round)} rounds) "
        f"= {bound.total}"
    )
    _say(
        f"  engine spent: {cats['create']} creates, {cats['subtasks']} subtask pages, "
        f"{cats['progress']} progress calls = {execution}"
    )
    outside = total_server - execution
    _say(
        f"  outside the bound: {outside} (login {cats['login']}, verify {cats['verify']}, "
        f"resolve {cats['resolve']}, subscribe {cats['subscribe']}, other {cats['other']})"
    )
    if bound.total:
        _say(f"ratio (execution calls / bound): {execution / bound.total:.3f}")
        _say(f"ratio (all calls / bound):       {total_server / bound.total:.3f}")
    if result.push_stats is not None:
        _say(f"push: {result.push_stats}")
    return bound


def report_ts(result: RunResult, server_calls: Mapping[str, int], *, devices: int) -> TSBound:
    """The ThingSpace report: calls per endpoint, categories, its own bound and ratios."""
    n = result.planned_devices
    rounds = result.meter.active_per_round
    bound = ts_lower_bound(n, rounds)
    _say(f"outcome: {result.outcome}")
    _say(
        f"devices: fleet {devices}, targeted {n}; upgrades created {result.submitted_tasks}; "
        f"progress rounds {len(rounds)} (+{result.meter.quiet_rounds} without calls); "
        f"simulated time {(result.sim_end - result.sim_start).total_seconds() / 3600:.2f} h; "
        f"engine wall {result.wall:.1f} s, CPU {result.cpu:.1f} s"
    )
    _say("")
    _say(f"{'endpoint (template)':<78} {'server':>7} {'client':>7}  category")
    for ep in sorted(set(server_calls) | set(result.client_calls)):
        _say(
            f"{ep:<78} {server_calls.get(ep, 0):>7} {result.client_calls.get(ep, 0):>7}  "
            f"{categorize_ts(ep)}"
        )
    total_server, total_client = sum(server_calls.values()), sum(result.client_calls.values())
    _say(f"{'total':<78} {total_server:>7} {total_client:>7}")
    cats = dict.fromkeys(TS_CATEGORIES, 0)
    for ep, c in server_calls.items():
        cats[categorize_ts(ep)] += c
    execution = sum(cats[c] for c in TS_EXECUTION)
    _say("")
    _say("per category (server counts): " + ", ".join(f"{c} {cats[c]}" for c in TS_CATEGORIES))
    _say("per engine stage (client counts): " + ", ".join(
        f"{k} {v}" for k, v in sorted(result.meter.calls_by_stage.items())
    ))  # fmt: skip
    if rounds:
        _say(
            f"active upgrades per progress round: max {max(rounds)}, mean "
            f"{sum(rounds) / len(rounds):.1f}"
        )
    _say("")
    _say(
        f"lower bound: {bound.creates} creates (ceil({n}/1000)) + {bound.progress} progress "
        f"reads (one per active upgrade over {len(rounds)} rounds) + {bound.results} result "
        f"reads (one per upgrade) = {bound.total}"
    )
    _say(
        f"  engine spent: {cats['create']} creates, {cats['progress']} upgrade/campaign reads "
        f"(progress and results) = {execution}"
    )
    outside = total_server - execution
    _say(
        f"  outside the bound: {outside} (login {cats['login']}, verify {cats['verify']}, "
        f"resolve {cats['resolve']}, reconcile {cats['reconcile']}, subscribe "
        f"{cats['subscribe']}, other {cats['other']})"
    )
    if bound.total:
        _say(f"ratio (execution calls / bound): {execution / bound.total:.3f}")
        _say(f"ratio (all calls / bound):       {total_server / bound.total:.3f}")
    return bound


def _ts_ids_file(devices: int, seed: int, path: Path) -> int:
    """Write the IMEIs of the fleet's WM-200 meters that ThingSpace will upgrade to 1.5.0
    (FOTA eligible, still on 1.4.2) to ``path``; returns how many. The fleet is derived
    from ``(devices, seed)`` as the simulator derives it, so this costs no API call. (One
    ineligible device or one already on 1.5.0 makes ThingSpace refuse a whole upgrade.)"""
    from fleetwave.sim.fleet import Fleet
    from fleetwave.sim.thingspace.catalog import Catalog

    catalog = Catalog(Fleet(devices, 1, seed))
    with path.open("w") as out:
        n = 0
        for i in range(devices):
            model = catalog.model_of(i)
            if (
                model.model == "WM-200"
                and catalog.fota_eligible(i)
                and catalog.base_firmware(i) == model.fw_current
            ):
                out.write(catalog.imei(i) + "\n")
                n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/api_calls.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--devices", type=int, required=True, help="fleet size = devices targeted")
    parser.add_argument(
        "--platform",
        choices=("iodm", "thingspace"),
        default="iodm",
        help="which simulator and driver (default iodm); thingspace: FOTA v1, its own bound",
    )
    parser.add_argument("--push", action="store_true", help="receive push notifications")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="calls a minute, simulator and client (default 100, IoDM's; 0 = unlimited)",
    )
    parser.add_argument("--inflight", type=int, default=100, help="max_inflight_tasks (100)")
    parser.add_argument(
        "--task-size",
        type=int,
        default=None,
        help="max_devices_per_task (256 on IoDM, 1000 on ThingSpace)",
    )
    parser.add_argument("--poll", default="1m", help="poll_interval (default 1m)")
    parser.add_argument("--waves", choices=("canary", "single"), default="canary")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store and logs here")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error(f"--devices must be at least 1, not {args.devices}")
    limit = TASK_LIMIT if args.platform == "iodm" else 1000
    if args.task_size is None:
        args.task_size = limit
    if not 1 <= args.task_size <= limit:
        parser.error(f"--task-size must be 1..{limit} on {args.platform}, not {args.task_size}")
    if args.platform == "thingspace" and args.push:
        parser.error("--push: ThingSpace pushes only over HTTPS; run it without --push")
    if args.rate_limit < 0:
        parser.error(f"--rate-limit must be >= 0, not {args.rate_limit}")
    quiet_process()
    with tempfile.TemporaryDirectory(prefix="fleetwave-bench-") as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "bench.db"
        db.unlink(missing_ok=True)
        _say(
            f"api_calls ({args.platform}): {args.devices} devices, seed {args.seed}, rate limit "
            f"{args.rate_limit or 'unlimited'}/min, {'push' if args.push else 'polling'}, "
            f"inflight {args.inflight}, task size {args.task_size}, poll {args.poll}, "
            f"waves {args.waves}"
        )
        with bench_simulator(
            devices=args.devices,
            seed=args.seed,
            rate_limit=args.rate_limit,
            log=work / "sim.log",
            platform=args.platform,
        ) as sim:
            if args.platform == "thingspace":
                ids = work / "imeis.txt"
                _ts_ids_file(args.devices, args.seed, ids)
                spec_text = bench_ts_spec_text(
                    "bench-api-calls",
                    ids_file=ids,
                    inflight=args.inflight,
                    task_size=args.task_size,
                    poll=args.poll,
                    waves=args.waves,
                )
            else:
                spec_text = bench_spec_text(
                    "bench-api-calls",
                    inflight=args.inflight,
                    task_size=args.task_size,
                    poll=args.poll,
                    waves=args.waves,
                )
            result = asyncio.run(
                run_campaign(
                    base_url=sim.base_url,
                    spec_text=spec_text,
                    db_url=f"sqlite:///{db}",
                    rate_limit=args.rate_limit,
                    push=args.push,
                    platform_kind=args.platform,
                )
            )
            stats = sim_stats(sim.base_url)
        if args.platform == "thingspace":
            report_ts(result, sim_calls(stats), devices=args.devices)
        else:
            report(result, sim_calls(stats), devices=args.devices)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
