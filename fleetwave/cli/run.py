"""``fleetwave run FILE`` (with a rich progress display), ``halt``, ``resume`` and ``approve``."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import os
import signal
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pendulum
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from fleetwave import store
from fleetwave.engine.progress import ProgressEvent, plural
from fleetwave.errors import UserError
from fleetwave.platforms.errors import PlatformError

__all__ = [
    "EXIT_CODES",
    "SIGNAL_EXIT_CODES",
    "ProgressDisplay",
    "RunStopped",
    "open_store",
    "register",
    "run_until_signal",
]

T = TypeVar("T")

#: Exit code of ``fleetwave run`` per outcome: 0 when the campaign is fine (done or
#: waiting), 4 halted, 5 rolled back, 7 stopped by ``--max-rounds``, 1 failed. Beside
#: them (README, "Exit codes"): 2 a user error, 3 a platform error, 6 the lease is held
#: by another live run, 130/143 stopped by SIGINT/SIGTERM.
EXIT_CODES = {
    "completed": 0,
    "waiting_window": 0,
    "awaiting_approval": 0,
    "halted": 4,
    "rolled_back": 5,
    "stopped": 7,
    "failed": 1,
}

#: Exit code of a run stopped by a signal: 128 + the signal's number, as shells report it.
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class RunStopped(Exception):
    """A stop signal (SIGINT, SIGTERM) ended the run; the engine released the lease."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


def run_until_signal(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, where SIGINT and SIGTERM cancel ``main`` and raise RunStopped.

    Cancelling (rather than dying) lets the engine end its step between two awaits, record
    the stop and release the lease in its ``finally``; SIGTERM is how Prefect cancellation,
    systemd and Kubernetes stop a process. A second signal cancels again (cutting short
    whatever cleanup awaits) but never interrupts a database commit.
    """
    received: list[signal.Signals] = []

    async def _guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def _on(signum: signal.Signals) -> None:
            received.append(signum)
            task.cancel()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, _on, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            return await main
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(_guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        if received:
            raise RunStopped(received[0]) from None
        raise
    except BaseException as exc:
        # Prefect's flow engine swaps in its own SIGTERM handler (TerminationSignal)
        signum = getattr(exc, "signal", None)
        if type(exc).__name__ == "TerminationSignal" and signum is not None:
            raise RunStopped(signal.Signals(signum)) from None
        raise


def _stop_line(signum: signal.Signals, file: Path, holder: str) -> str:
    """The one line a stopped run prints, true to what the store says of the lease."""
    from fleetwave.engine.lease import describe_holder
    from fleetwave.spec import load_spec

    head = f"stopped by {signum.name}"
    try:
        name = load_spec(file).name
        head = f"{name}: {head}"
        with store.session_scope(store.get_engine(), read_only=True) as s:
            row = store.find_campaign(s, name=name)
            current = row.lease_holder if row is not None else None
            until = row.lease_expires_at if row is not None else None
    except Exception:  # the stop must be reported even if the store cannot be read
        return f"{head}; run again to continue"
    if current is None:
        return f"{head}; lease released; run again to continue"
    who = "this run" if current == holder else describe_holder(current)
    return f"{head}; the lease is still held by {who} until {until}; run again after that"


def open_store(*, new_store: bool = False) -> Any:
    """The store's engine (see :func:`fleetwave.store.open_store_for_run`): a missing, empty
    or in-memory database is refused unless ``new_store``; an old schema is refused."""
    return store.open_store_for_run(new_store=new_store)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user database entry (containers)
        return "cli"


class ProgressDisplay:
    """Renders engine progress events: one bar per wave, and a line per decision."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            disable=not enabled,
        )
        self.tasks: dict[tuple[str, int], TaskID] = {}

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def sink(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        for w in event.waves:
            key = (event.phase, w.wave)
            detail = (
                f"ok {w.succeeded}  failed {w.failed}  timed out {w.timed_out}  "
                f"running {w.in_flight}  {w.status}"
            )
            if event.phase == "rollback":
                detail += f"  rolled back {w.rolled_back}"
            label = f"{event.phase} wave {w.wave + 1} {w.name}"
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(label, total=w.total, detail=detail)
            self.progress.update(
                self.tasks[key], completed=w.finished, total=w.total, detail=detail
            )
        if event.kind in ("decision", "submitted", "stage", "outcome") and (
            event.message or event.stage
        ):
            when = event.at.format("YYYY-MM-DD HH:mm")
            self.progress.console.print(
                f"[dim]{when}[/dim] {event.kind}: {event.message or event.stage} "
                f"[dim]({event.api_calls} API calls)[/dim]",
                highlight=False,
            )


def error_document(exc: Exception) -> dict[str, Any]:
    """What ``run --json`` prints on stdout when the run could not start or went wrong."""
    if isinstance(exc, UserError):
        return {"error": str(exc), "kind": "user_error", "exit_code": exc.exit_code}
    return {"error": str(exc), "kind": "platform_error", "exit_code": 3}


def campaign_totals(name: str) -> dict[str, int] | None:
    """The campaign's devices and tasks over all its runs, from the store (None when the
    store cannot be read): targeted and skipped apart, tasks that reached the platform."""
    from fleetwave.store import ChunkKind, DeviceRunStatus

    try:
        with store.session_scope(store.get_engine(), read_only=True) as s:
            row = store.find_campaign(s, name=name)
            if row is None or row.id is None:
                return None
            counts = store.device_status_counts(s, campaign_id=row.id)
            tasks = store.chunk_counts_by_wave(s, campaign_id=row.id)
    except Exception:  # the outcome line must be printed even if the store cannot be read
        return None
    d = DeviceRunStatus

    def n(*statuses: DeviceRunStatus) -> int:
        return sum(counts.get(x, 0) for x in statuses)

    total = sum(counts.values())
    return {
        "targeted": total - n(d.SKIPPED),
        "skipped": n(d.SKIPPED),
        "succeeded": n(d.SUCCEEDED, d.ROLLING_BACK, d.ROLLED_BACK, d.ROLLBACK_FAILED),
        "failed": n(d.FAILED),
        "timed_out": n(d.TIMED_OUT),
        "unfinished": n(d.PENDING, d.QUEUED, d.SUBMITTED, d.IN_PROGRESS),
        "cancelled": n(d.CANCELLED),
        "rolled_back": n(d.ROLLED_BACK),
        "tasks": sum(v for (_, kind), v in tasks.items() if kind is ChunkKind.UPGRADE),
        "rollback_tasks": sum(v for (_, kind), v in tasks.items() if kind is ChunkKind.ROLLBACK),
    }


def outcome_lines(result: dict[str, Any]) -> list[str]:
    """The two lines ``run`` prints: the outcome, then the campaign's totals over all runs
    (this run's tasks and API calls said apart)."""
    line = f"{result['campaign']}: {result['kind']}"
    if result.get("next_open"):
        line += f" until {result['next_open']}"
    if result.get("wave") is not None and result["kind"] == "awaiting_approval":
        line += f" (wave {result['wave'] + 1}: `fleetwave approve {result['campaign']}`)"
    if result.get("reason"):
        line += f" - {result['reason']}"
    t = result.get("campaign_totals")
    this_run = (
        f"this run: {plural(result.get('tasks_submitted', 0), 'task')} submitted, "
        f"{plural(result.get('api_calls', 0), 'API call')}"
    )
    if t is None:
        c = result.get("counts", {})
        return [line, f"devices: {c.get('total', 0) - c.get('skipped', 0)} targeted; {this_run}"]
    devices = (
        f"devices: {t['targeted']} targeted ({t['succeeded']} succeeded, {t['failed']} failed, "
        f"{t['timed_out']} timed out"
        + (f", {t['unfinished']} not finished" if t["unfinished"] else "")
        + (f", {t['cancelled']} cancelled" if t["cancelled"] else "")
        + (f", {t['rolled_back']} rolled back" if t["rolled_back"] else "")
        + f"), {t['skipped']} skipped"
    )
    tasks = f"{plural(t['tasks'], 'task')} in all" + (
        f" and {plural(t['rollback_tasks'], 'rollback task')}" if t["rollback_tasks"] else ""
    )
    return [line, f"{devices}; {tasks}; {this_run}"]


def _run(
    file: Path,
    *,
    clock: str,
    sleep_through_windows: bool,
    wait_lease: bool,
    use_prefect: bool,
    max_rounds: int | None,
    display: ProgressDisplay,
    holder: str,
    accept_spec_change: bool = False,
    new_store: bool = False,
) -> dict[str, Any]:
    from fleetwave.sim.linked_clock import clock_from_option, refuse_simulated_clock
    from fleetwave.spec import load_spec

    spec = load_spec(file)
    # refused here, before a flow run starts, so the refusal is one line and not a failed run
    refuse_simulated_clock(clock, spec.platform)
    engine = open_store(new_store=new_store)
    if use_prefect:
        from typing import get_args

        from flows.campaign import ClockChoice, extra_progress, run_campaign_outcome

        if clock not in get_args(ClockChoice):
            raise UserError(
                f"--clock {clock!r} is not a clock a Prefect flow run takes",
                hint=f"one of {', '.join(get_args(ClockChoice))}, or run with --no-prefect",
            )

        token = extra_progress.set(display.sink)
        try:
            result: dict[str, Any] = run_until_signal(
                run_campaign_outcome(
                    campaign=str(file),
                    clock=cast(ClockChoice, clock),  # checked above
                    sleep_through_windows=sleep_through_windows,
                    wait_for_lease=wait_lease,
                    accept_spec_change=accept_spec_change,
                    new_store=new_store,
                )
            )
        finally:
            engine.dispose()
            extra_progress.reset(token)
        return result
    from fleetwave.engine.runner import advance

    outcome = run_until_signal(
        advance(
            file,  # the file, so a limit its platform cannot meet is reported at FILE:LINE
            holder=holder,
            db=engine,
            clock=clock_from_option(clock, platform=spec.platform),
            progress=display.sink,
            sleep_through_windows=sleep_through_windows,
            wait_for_lease=wait_lease,
            max_rounds=max_rounds,
            accept_spec_change=accept_spec_change,
            operator=_operator(),
        )
    )
    return outcome.as_dict()


@contextmanager
def _accept_hint(file: Path) -> Iterator[None]:
    """A refused spec change names the command with this campaign file."""
    try:
        yield
    except store.SpecChangedError as exc:
        raise exc.with_command(f"fleetwave run {file} --accept-spec-change") from None


def _parse_when(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = pendulum.parse(value)
    except Exception:
        parsed = None
    if not isinstance(parsed, pendulum.DateTime):
        raise UserError(
            f"{option} {value!r} is not a date-time",
            hint="write ISO 8601, e.g. 2026-01-06T22:30 (UTC) or 2026-01-06T22:30+01:00",
        )
    return parsed


def _wave_index(db: Any, name: str, number: int | None) -> int | None:
    """The store's index of ``--wave NUMBER`` (from 1; the old 0 is read as 1 with a note)."""
    from fleetwave.cli.numbering import wave_index

    if number is None:
        return None
    with store.session_scope(db, read_only=True) as s:
        c = store.get_campaign(s, name=name)
        assert c.id is not None
        names = [w.name for w in store.get_waves(s, campaign_id=c.id)]
    if not names:
        return number - 1  # not planned yet: approve_campaign says so
    return wave_index(number, names, old_zero=True)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``halt``, ``resume`` and ``approve``."""

    @app.command("run")
    def run_cmd(
        file: Path = typer.Argument(..., help="The campaign YAML file."),
        clock: str = typer.Option(
            "real", help="real | sim (the simulator's clock: days pass in seconds) | scaled:F"
        ),
        sleep_through_windows: bool = typer.Option(
            False, help="Sleep until the next window opens instead of ending the run."
        ),
        wait_lease: bool = typer.Option(
            False,
            help="Wait (in real time) for the live run holding the campaign's lease to end "
            "instead of failing with exit 6; a dead holder on this host is replaced at once.",
        ),
        prefect: bool | None = typer.Option(
            None,
            "--prefect/--no-prefect",
            help="Run as a Prefect flow (default: when PREFECT_API_URL is set).",
        ),
        max_rounds: int | None = typer.Option(
            None,
            min=1,
            help="Stop after this many monitoring rounds (engine mode); the run ends "
            "`stopped` (exit 7) and the next run continues.",
        ),
        accept_spec_change: bool = typer.Option(
            False,
            "--accept-spec-change",
            help="Accept a change of fields a started campaign may not change (package, "
            "targets, waves ...); recorded in the event log with who and when.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        new_store: bool = typer.Option(
            False,
            "--new-store",
            help="Accept a store without fleetwave's schema (a new file, an empty or "
            "in-memory database) and create the schema; without it such a store is refused.",
        ),
    ) -> None:
        """Advance a campaign in this process until it completes, halts or must wait."""
        use_prefect = prefect if prefect is not None else bool(os.environ.get("PREFECT_API_URL"))
        console = Console(stderr=as_json)
        from fleetwave.engine.lease import default_holder

        holder = default_holder()
        try:
            with ProgressDisplay(console, enabled=not quiet) as display, _accept_hint(file):
                result = _run(
                    file,
                    clock=clock,
                    sleep_through_windows=sleep_through_windows,
                    wait_lease=wait_lease,
                    use_prefect=use_prefect,
                    max_rounds=max_rounds,
                    display=display,
                    holder=holder,
                    accept_spec_change=accept_spec_change,
                    new_store=new_store,
                )
        except RunStopped as stop:
            line = _stop_line(stop.signum, file, holder)
            if as_json:
                typer.echo(
                    json.dumps({"error": line, "kind": "stopped", "signal": stop.signum.name})
                )
            typer.echo(line, err=True)
            raise typer.Exit(SIGNAL_EXIT_CODES.get(stop.signum, 128 + stop.signum)) from None
        except (UserError, PlatformError) as exc:
            if as_json:  # the error as JSON on stdout too; main() prints the line on stderr
                typer.echo(json.dumps(error_document(exc), indent=2))
            raise
        result["campaign_totals"] = campaign_totals(result["campaign"])
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            for line in outcome_lines(result):
                typer.echo(line)
        raise typer.Exit(EXIT_CODES.get(str(result.get("kind")), 1))

    @app.command("halt")
    def halt_cmd(
        name: str = typer.Argument(..., help="Campaign name."),
        reason: str = typer.Option("operator request", help="Why (kept in the event log)."),
    ) -> None:
        """Stop submitting: a running flow stops at its next round."""
        from fleetwave.engine.control import halt_campaign

        typer.echo(
            halt_campaign(
                open_store(), name=name, by=_operator(), reason=reason, now=pendulum.now("UTC")
            )
        )

    @app.command("resume")
    def resume_cmd(name: str = typer.Argument(..., help="Campaign name.")) -> None:
        """Resume a halted campaign (the next run continues it); not one whose wave was rejected."""
        from fleetwave.engine.control import resume_campaign

        typer.echo(
            resume_campaign(open_store(), name=name, by=_operator(), now=pendulum.now("UTC"))
        )

    @app.command("approve")
    def approve_cmd(
        name: str = typer.Argument(..., help="Campaign name."),
        wave: int | None = typer.Option(
            None,
            help="Wave number, from 1 as `fleetwave plan` shows them (default: the wave "
            "waiting for approval).",
        ),
        reject: bool = typer.Option(False, "--reject", help="Reject: the campaign halts."),
        comment: str = typer.Option("", help="Why (kept in the event log)."),
        start: str | None = typer.Option(
            None, help="Appointment start (ISO 8601), inside a window of the campaign."
        ),
        end: str | None = typer.Option(None, help="Appointment end, at least 1 h after start."),
        replace: bool = typer.Option(
            False, "--replace", help="Replace a decision the wave already has."
        ),
        clock: str = typer.Option(
            "real",
            help="The campaign's clock, to check that an appointment lies in the future: "
            "real | sim (the simulator's clock, as for run --clock sim).",
        ),
    ) -> None:
        """Approve (or reject) a wave; resumes the campaign's paused flow run if there is one."""
        from fleetwave.engine.control import approve_campaign
        from fleetwave.sim.linked_clock import clock_from_option
        from flows.approval import resume_paused_flow_run

        when_start = _parse_when(start, "--start")
        when_end = _parse_when(end, "--end")
        db = open_store()
        result = approve_campaign(
            db,
            name=name,
            by=_operator(),
            now=clock_from_option(clock).now().in_tz("UTC"),
            wave=_wave_index(db, name, wave),
            approve=not reject,
            comment=comment,
            start=when_start,
            end=when_end,
            replace=replace,
            resumer=resume_paused_flow_run,
        )
        typer.echo(result.message)
