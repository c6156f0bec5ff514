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
from typing import Any, TypeVar

import pendulum
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from fleetwave import store
from fleetwave.engine.progress import ProgressEvent
from fleetwave.errors import UserError

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
            label = f"{event.phase} wave {w.wave} {w.name}"
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
    from fleetwave.sim.linked_clock import clock_from_option
    from fleetwave.spec import load_spec

    spec = load_spec(file)
    engine = open_store(new_store=new_store)
    if use_prefect:
        from flows.campaign import extra_progress, run_campaign_outcome

        token = extra_progress.set(display.sink)
        try:
            result: dict[str, Any] = run_until_signal(
                run_campaign_outcome(
                    campaign=str(file),
                    clock=clock,
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
            typer.echo(_stop_line(stop.signum, file, holder), err=True)
            raise typer.Exit(SIGNAL_EXIT_CODES.get(stop.signum, 128 + stop.signum)) from None
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            c = result.get("counts", {})
            line = f"{result['campaign']}: {result['kind']}"
            if result.get("next_open"):
                line += f" until {result['next_open']}"
            if result.get("wave") is not None and result["kind"] == "awaiting_approval":
                line += f" (wave {result['wave']}: `fleetwave approve {result['campaign']}`)"
            if result.get("reason"):
                line += f" - {result['reason']}"
            typer.echo(line)
            typer.echo(
                f"devices {c.get('total', 0)}: {c.get('succeeded', 0)} succeeded, "
                f"{c.get('failed', 0)} failed, {c.get('timed_out', 0)} timed out; "
                f"{result.get('tasks_submitted', 0)} tasks, {result.get('api_calls', 0)} API calls"
            )
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
            None, help="Wave index (default: the wave waiting for approval)."
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
        result = approve_campaign(
            open_store(),
            name=name,
            by=_operator(),
            now=clock_from_option(clock).now().in_tz("UTC"),
            wave=wave,
            approve=not reject,
            comment=comment,
            start=when_start,
            end=when_end,
            replace=replace,
            resumer=resume_paused_flow_run,
        )
        typer.echo(result.message)
