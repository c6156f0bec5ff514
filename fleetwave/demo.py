"""``make demo``: two campaigns against the embedded simulator, end to end, with their reports.

Starts the simulator (generated fleet, manual clock: every wait of the engine is an instant
jump of simulated time), a private local Prefect server, and a fresh store under
``.fleetwave/demo/``; runs ``campaigns/demo/meters-firmware.yaml`` to completion (canary,
waves), ``campaigns/demo/flaky-rollback.yaml`` on the FLAKY-1 model, which trips its
failure threshold and rolls back, ``campaigns/demo/consent-trackers.yaml``, whose simulated
owners answer over the end-user consent API, and ``campaigns/demo/thingspace-meters.yaml``
on a ThingSpace simulator; prints the reports and the chart paths.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetwave.consent.serve import ConsentApiService

__all__ = ["DEMO_CAMPAIGNS", "EXPECTED_STATUS", "main"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_CAMPAIGNS = (
    ROOT / "campaigns" / "demo" / "meters-firmware.yaml",
    ROOT / "campaigns" / "demo" / "flaky-rollback.yaml",
    ROOT / "campaigns" / "demo" / "consent-trackers.yaml",
    ROOT / "campaigns" / "demo" / "thingspace-meters.yaml",
)
CONSENT_CAMPAIGN = DEMO_CAMPAIGNS[2]
FOTA_DEMO_CAMPAIGN = DEMO_CAMPAIGNS[3]
# How each demo campaign is meant to end (the demo says so, and fails, if one does not).
EXPECTED_STATUS = ("completed", "rolled_back", "completed", "completed")
_OWNERS = 12  # the consent campaign's devices are spread over this many simulated owners
_QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_TELEMETRY_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    # The demo prints its own narrative and the reports; Prefect's run chatter is in the log.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "true",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}

logger = logging.getLogger("fleetwave.demo")


def _say(text: str = "") -> None:
    """The demo's output: plain lines on stdout (this module is the demo's UI)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dataclass
class _PrefectServer:
    api_url: str
    process: subprocess.Popen[bytes]
    seconds: float


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _prefect_server(home: Path, log: Path) -> Iterator[_PrefectServer]:
    """A private ``prefect server start`` (own home and SQLite), stopped quietly on exit.

    Prefect's automatic temporary server would do, but its start and shutdown print to the
    console; this one logs to ``log`` only.
    """
    import httpx

    from fleetwave.serving import stop_process_group

    env = dict(os.environ)
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    env.pop("PREFECT_API_URL", None)
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        t0 = time.monotonic()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(port), "--no-ui", "--analytics-off"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the server
            )  # fmt: skip
        deadline = t0 + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            stop_process_group(proc)
            continue
        try:
            yield _PrefectServer(url, proc, time.monotonic() - t0)
        finally:
            stop_process_group(proc)
        return
    raise RuntimeError(f"the local Prefect server did not start; see {log}")


def _prepare(workdir: Path) -> None:
    """A fresh demo directory and the environment Prefect and fleetwave read at import."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "prefect-home").mkdir(parents=True)
    os.environ.update(_QUIET_ENV)
    os.environ["PREFECT_HOME"] = str(workdir / "prefect-home")
    os.environ["FLEETWAVE_DB_URL"] = f"sqlite:///{workdir / 'fleetwave.db'}"
    # Library warnings (deprecations inside dependencies) are not for the person watching.
    warnings.filterwarnings("ignore")
    logging.basicConfig(
        level=logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        filename=str(workdir / "demo.log"),
    )


def _run_campaign(path: Path) -> dict[str, Any]:
    """Run the campaign flow on ``path`` in this process until the campaign rests.

    ``clock="sim"``: the engine's waits advance the simulator's manual clock;
    ``sleep_through_windows``: a closed window is slept through instead of ending the run.
    """
    import asyncio

    from flows.campaign import run_campaign_outcome

    result: dict[str, Any] = asyncio.run(
        run_campaign_outcome(campaign=str(path), clock="sim", sleep_through_windows=True)
    )
    return result


def _api_calls(stats: dict[str, Any]) -> int:
    return int(stats.get("calls_total", 0))


def _offer_consent(path: Path, sim_url: str) -> ConsentApiService:
    """Before the consent campaign's flow run: owners of its devices (imported with tokens),
    the end-user API on the demo's store, and the owners' answers over real HTTP.

    One engine round plans the campaign and offers the plan; the owners then answer (some
    confirm, appoint or cancel, some switched auto-confirm on before, some never answer);
    the flow run that follows sends the consenting devices and lets the silent ones expire.
    The API is served the way a flow run serves it (on a free port here), and stays up for
    the flow run, which finds it on ``FLEETWAVE_CONSENT_PORT`` and reuses it; stop the
    returned service after the run.
    """
    import asyncio

    from fleetwave import store
    from fleetwave.consent.serve import ConsentApiService
    from fleetwave.consent.settings import ConsentServeSettings
    from fleetwave.engine.runner import advance
    from fleetwave.platforms import open_platform
    from fleetwave.sim.linked_clock import SimLinkedClock
    from fleetwave.sim.owners import Behaviour, OwnerPopulation
    from fleetwave.spec import load_spec

    spec = load_spec(path)
    clock = SimLinkedClock(sim_url)

    async def devices() -> list[str]:
        out: list[str] = []
        async with open_platform(spec.platform, clock=clock) as platform:
            for ref in spec.targets.groups:
                async for group in platform.list_groups(name=ref.name):
                    out += [d async for d in platform.group_members(group.group_id)]
        return sorted(set(out))

    ids = asyncio.run(devices())
    owners = {d: f"owner-{i % _OWNERS:02d}" for i, d in enumerate(ids)}
    engine = store.get_engine()
    with store.session_scope(engine) as s:
        store.import_device_owners(s, rows=list(owners.items()), now=clock.now())
        tokens = {
            o: store.issue_owner_token(s, owner_id=o, now=clock.now())
            for o in sorted(set(owners.values()))
        }
    service = ConsentApiService(
        engine, now=clock.now, settings=ConsentServeSettings(port=0), logger=logger
    ).start()
    assert service.url is not None
    os.environ["FLEETWAVE_CONSENT_PORT"] = service.url.rsplit(":", 1)[1]  # the flow reuses it
    try:
        population = OwnerPopulation(service.url, owners=owners, tokens=tokens, seed=1)
        _say(
            f"end-user consent API: {service.url}; {len(ids)} devices, "
            f"{len(set(owners.values()))} simulated owners"
        )
        auto = asyncio.run(population.switch_auto_on())
        asyncio.run(advance(path, clock=clock, max_rounds=1))  # plan, offer the upgrade
        answered = asyncio.run(population.answer(clock.now()))
        said = ", ".join(f"{n} {action}" for action, n in sorted(answered.items()))
        silent = sum(b is Behaviour.SILENT for b in population.behaviours.values())
        _say(f"owners answered over HTTP: {said}; {auto} had auto-confirm on; {silent} silent")
    except BaseException:
        service.stop()
        raise
    return service


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code. Errors a user can fix print as one line."""
    from fleetwave.errors import UserError

    try:
        return _demo(argv)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def _demo(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetwave.demo", description=__doc__)
    parser.add_argument("--devices", type=int, default=2000, help="fleet size (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".fleetwave") / "demo",
        help="where the store, charts and logs go (recreated; default .fleetwave/demo)",
    )
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    _prepare(workdir)
    started = time.monotonic()

    from fleetwave import store
    from fleetwave.report import render_chart, render_markdown
    from fleetwave.report.store import load_report
    from fleetwave.sim.testing import SimConfig, run_simulator, run_thingspace_simulator

    _say(f"fleetwave demo: simulator with {args.devices} devices (seed {args.seed}), manual clock")
    config = SimConfig(devices=args.devices, seed=args.seed, clock="manual", rate_limit=0)
    with (
        run_simulator(config) as sim,
        run_thingspace_simulator(  # its IMEI list names this fleet: seed 1, 2,000 devices
            devices=2000, seed=1, clock="manual", rate_limit=0, failure_rate=0.02
        ) as ts,
        _prefect_server(workdir / "prefect-home", workdir / "prefect-server.log") as prefect,
    ):
        os.environ.update(
            {
                "PREFECT_API_URL": prefect.api_url,
                **sim.driver_env(),  # the platforms' own settings, pointing at the simulators
                **ts.driver_env(),
            }
        )
        from prefect.settings import PREFECT_API_URL, temporary_settings

        engine = store.get_engine()
        store.upgrade_schema(engine)
        _say(f"platform simulator: {sim.base_url} (simulated time {sim.clock().isoformat()})")
        _say(f"ThingSpace simulator: {ts.base_url} (account {ts.account})")
        _say(f"store: {store.safe_url(engine)}; Prefect server ready in {prefect.seconds:.1f} s")
        outcomes: list[tuple[str, str]] = []
        with temporary_settings(updates={PREFECT_API_URL: prefect.api_url}):
            for number, path in enumerate(DEMO_CAMPAIGNS, start=1):
                on_ts = path == FOTA_DEMO_CAMPAIGN
                calls_before = _ts_calls(ts) if on_ts else _api_calls(sim.stats(tasks=False))
                _say("")
                _say("=" * 78)
                _say(f"campaign {number}: {path.relative_to(ROOT)}")
                _say("=" * 78)
                consent_api = None
                if path == CONSENT_CAMPAIGN:
                    consent_api = _offer_consent(path, sim.base_url)
                _say("running the campaign flow (a Prefect flow run) ...")
                t0 = time.monotonic()
                try:
                    outcome = _run_campaign(path)
                finally:
                    if consent_api is not None:
                        consent_api.stop()
                spec_name = _campaign_name(path)
                with store.session_scope(engine, read_only=True) as session:
                    report = load_report(session, spec_name)
                chart = render_chart(report, workdir / f"{spec_name}.png")
                if on_ts:
                    calls, now = _ts_calls(ts) - calls_before, ts.clock()
                else:
                    calls, now = _api_calls(sim.stats(tasks=False)) - calls_before, sim.clock()
                _say(render_markdown(report))
                _say(
                    f"flow run outcome: {outcome.get('kind')} in {time.monotonic() - t0:.1f} s "
                    f"(wall), {calls} platform API calls, simulated time now "
                    f"{now.in_tz('UTC').format('YYYY-MM-DD HH:mm')}Z"
                )
                _say(f"chart: {chart}")
                outcomes.append((spec_name, report.status))
            _drain_prefect()
        engine.dispose()
    _say("")
    _say(f"demo finished in {time.monotonic() - started:.0f} s")
    unexpected = 0
    for (name, status), expected in zip(outcomes, EXPECTED_STATUS, strict=True):
        note = "" if status == expected else f"  (expected {expected}: see {workdir / 'demo.log'})"
        unexpected += bool(note)
        _say(f"  {name}: {status}{note}")
    _say(f"store, charts and logs: {workdir}")
    _say("see a report again:")
    _say(
        f"  FLEETWAVE_DB_URL=sqlite:///{workdir / 'fleetwave.db'} "
        f".venv/bin/fleetwave report {outcomes[-1][0]} --png chart.png"
    )
    return 1 if unexpected else 0


def _drain_prefect() -> None:
    """Send Prefect's queued logs and events while the private server still listens (a
    Failed or Halted run logs its final state at ERROR); after it stopped they would fail
    with "Error logging to API" on stderr."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the server goes away anyway
            worker.drain_all(timeout=10)


def _ts_calls(ts: Any) -> int:
    """API calls the ThingSpace simulator has served (its admin API not counted)."""
    return int(ts.stats(requests=False).get("calls_total", 0))


def _campaign_name(path: Path) -> str:
    from fleetwave.spec import load_spec

    return load_spec(path).name


if __name__ == "__main__":
    raise SystemExit(main())
