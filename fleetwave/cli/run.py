"""``fleetwave run FILE`` (with a rich progress display), ``halt``, ``resume`` and ``approve``."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import os
from pathlib import Path
from typing import Any

import pendulum
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from fleetwave import store
from fleetwave.engine.progress import ProgressEvent
from fleetwave.errors import UserError

__all__ = ["EXIT_CODES", "ProgressDisplay", "open_store", "register"]

#: Exit code of ``fleetwave run`` per outcome: 0 when the campaign is fine (done or
#: waiting), 4 halted, 5 rolled back, 1 failed.
EXIT_CODES = {
    "completed": 0,
    "waiting_window": 0,
    "awaiting_approval": 0,
    "halted": 4,
    "rolled_back": 5,
    "failed": 1,
}


def open_store() -> Any:
    """The store's engine; an empty database gets its schema, an old one is refused."""
    engine = store.get_engine()
    if store.current_revision(engine) is None:
        store.upgrade_schema(engine)
    store.ensure_schema_current(engine)
    return engine


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
) -> dict[str, Any]:
    from fleetwave.sim.linked_clock import clock_from_option
    from fleetwave.spec import load_spec

    spec = load_spec(file)
    engine = open_store()
    if use_prefect:
        from flows.campaign import extra_progress, run_campaign

        token = extra_progress.set(display.sink)
        try:
            result: dict[str, Any] = asyncio.run(
                run_campaign(
                    campaign=str(file),
                    clock=clock,
                    sleep_through_windows=sleep_through_windows,
                    wait_for_lease=wait_lease,
                )
            )
        finally:
            extra_progress.reset(token)
        return result
    from fleetwave.engine.runner import advance

    outcome = asyncio.run(
        advance(
            spec,
            db=engine,
            clock=clock_from_option(clock),
            progress=display.sink,
            sleep_through_windows=sleep_through_windows,
            wait_for_lease=wait_lease,
            max_rounds=max_rounds,
        )
    )
    return outcome.as_dict()


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
            False, help="Wait for another run's lease to lapse instead of failing."
        ),
        prefect: bool | None = typer.Option(
            None,
            "--prefect/--no-prefect",
            help="Run as a Prefect flow (default: when PREFECT_API_URL is set).",
        ),
        max_rounds: int | None = typer.Option(
            None, help="Stop after this many monitoring rounds (engine mode)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    ) -> None:
        """Advance a campaign in this process until it completes, halts or must wait."""
        use_prefect = prefect if prefect is not None else bool(os.environ.get("PREFECT_API_URL"))
        console = Console(stderr=as_json)
        with ProgressDisplay(console, enabled=not quiet) as display:
            result = _run(
                file,
                clock=clock,
                sleep_through_windows=sleep_through_windows,
                wait_lease=wait_lease,
                use_prefect=use_prefect,
                max_rounds=max_rounds,
                display=display,
            )
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
        )
        typer.echo(result.message)
