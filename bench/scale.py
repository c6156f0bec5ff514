"""Scale benchmark: one campaign of a million devices on the manual clock, engine costs measured.

The simulator runs in its own process (its memory and CPU are not counted); the engine
runs in this process without Prefect, through a stage runner that counts the stages, i.e.
the Prefect task runs ``flows/campaign.py`` would create for the same run (one per stage).
Printed: engine wall and CPU time, peak RSS of this process (``getrusage``), the store's
rows written (sum of ``rowcount`` over INSERT/UPDATE/DELETE statements) per second of wall
and of database time, the stage (task-run) count, and the API calls against the bound.

    .venv/bin/python bench/scale.py --devices 1000000 [--seed 1] [--rate-limit 100]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api_calls import report  # noqa: E402
from bench.harness import (  # noqa: E402
    bench_simulator,
    bench_spec_text,
    quiet_process,
    run_campaign,
    sim_calls,
    sim_stats,
)

__all__ = ["RowMeter", "main", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class RowMeter:
    """Counts rows written and time spent per SQL verb, from SQLAlchemy cursor events."""

    rows: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)

    def attach(self, engine: Any) -> None:
        import sqlalchemy as sa

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            conn.info.setdefault("fw_bench_t0", []).append(time.perf_counter())

        @sa.event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            t0 = conn.info["fw_bench_t0"].pop()
            verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
            self.statements[verb] += 1
            self.seconds[verb] += time.perf_counter() - t0
            if verb in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount and cursor.rowcount > 0:
                self.rows[verb] += cursor.rowcount

    @property
    def written(self) -> int:
        return sum(self.rows.values())

    @property
    def db_seconds(self) -> float:
        return sum(self.seconds.values())


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000, help="fleet size (1000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate-limit", type=int, default=100, help="calls a minute (0 = off)")
    parser.add_argument("--inflight", type=int, default=100, help="max_inflight_tasks (100)")
    parser.add_argument("--poll", default="1m", help="poll_interval (default 1m)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store and logs here")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error(f"--devices must be at least 1, not {args.devices}")
    quiet_process()
    from fleetwave import store

    base_rss = peak_rss_mb()
    meter = RowMeter()
    original = store.get_engine

    def metered_engine(*a: Any, **kw: Any) -> Any:
        engine = original(*a, **kw)
        meter.attach(engine)
        return engine

    with tempfile.TemporaryDirectory(prefix="fleetwave-scale-") as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "scale.db"
        db.unlink(missing_ok=True)
        _say(
            f"scale: {args.devices} devices, seed {args.seed}, rate limit "
            f"{args.rate_limit or 'unlimited'}/min, inflight {args.inflight}, poll {args.poll}, "
            f"SQLite store {db}"
        )
        t_sim = time.perf_counter()
        with bench_simulator(
            devices=args.devices, seed=args.seed, rate_limit=args.rate_limit, log=work / "sim.log"
        ) as sim:
            _say(f"simulator ready in {time.perf_counter() - t_sim:.1f} s (separate process)")
            store.get_engine = metered_engine  # type: ignore[assignment]
            try:
                result = asyncio.run(
                    run_campaign(
                        base_url=sim.base_url,
                        spec_text=bench_spec_text(
                            "bench-scale", inflight=args.inflight, poll=args.poll
                        ),
                        db_url=f"sqlite:///{db}",
                        rate_limit=args.rate_limit,
                        push=False,
                    )
                )
            finally:
                store.get_engine = original  # type: ignore[assignment]
            stats = sim_stats(sim.base_url)
        peak = peak_rss_mb()
        _say("")
        report(result, sim_calls(stats), devices=args.devices)
        _say("")
        _say("engine process (this process; the simulator is not counted):")
        _say(f"  wall {result.wall:.1f} s, CPU {result.cpu:.1f} s")
        _say(f"  peak RSS {peak:.0f} MiB (after imports {base_rss:.0f} MiB); target < 500 MB")
        _say(
            f"  store rows written {meter.written} ({dict(meter.rows)}): "
            f"{meter.written / result.wall:,.0f} rows/s of engine wall, "
            f"{meter.written / max(meter.db_seconds, 1e-9):,.0f} rows/s of database time "
            f"({meter.db_seconds:.1f} s in {sum(meter.statements.values())} statements)"
        )
        _say(f"  rows in the store at the end: {result.db_rows}")
        _say(
            f"  stages run (= Prefect task runs the flow would create; run without Prefect): "
            f"{result.meter.stages} ({dict(sorted(result.meter.stages_by_kind.items()))}), "
            f"monitoring rounds inside them {result.meter.steps}"
        )
        _say(
            "  engine seconds per stage kind: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(result.meter.seconds_by_stage.items()))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
