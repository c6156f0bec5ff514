"""``fleetwave report NAME [--png FILE] [--json] [--format auto|md|rich]``: a campaign's
report from the store; markdown rendered with rich in a terminal, plain markdown when piped."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

__all__ = ["register", "report", "use_rich"]

Format = Literal["auto", "md", "rich"]


def use_rich(fmt: str, *, is_terminal: bool) -> bool:
    """Render with rich? ``rich`` always, ``md`` never, ``auto`` only on a terminal (a pipe
    or a file gets the markdown text, as the Prefect artifact holds it)."""
    if fmt not in ("auto", "md", "rich"):
        from fleetwave.errors import UserError

        raise UserError(f"--format {fmt!r} is not a format", hint="use auto, md or rich")
    return fmt == "rich" or (fmt == "auto" and is_terminal)


def report(
    name: Annotated[str, typer.Argument(help="The campaign's name (as in its YAML file).")],
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Also write a chart of devices succeeded/failed over time."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    events: Annotated[
        int, typer.Option(help="How many of the last events to show (oldest first).", min=0)
    ] = 10,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto: rendered in a terminal, markdown when piped; md: markdown text; "
            "rich: rendered.",
        ),
    ] = "auto",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Store URL (default: FLEETWAVE_DB_URL, else fleetwave.db under FLEETWAVE_HOME, "
            "else under ~/.local/share/fleetwave; `fleetwave db current` shows which).",
        ),
    ] = None,
) -> None:
    """Show a campaign's summary, per-wave counts and last events; optionally a PNG chart."""
    from fleetwave import store
    from fleetwave.cli.db import open_engine
    from fleetwave.report import render_chart, render_markdown
    from fleetwave.report.store import load_report

    use_rich(fmt, is_terminal=False)  # a bad --format fails before the store is read
    engine = open_engine(db, must_exist=True, read_only=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine, read_only=True) as session:
            result = load_report(session, name, events=max(events, 1))
    finally:
        engine.dispose()
    chart = render_chart(result, png) if png is not None else None
    if as_json:
        data = result.to_json()
        data["events"] = data["events"][-events:] if events else []
        if chart is not None:
            data["chart"] = str(chart)
        typer.echo(json.dumps(data, indent=2))
        return
    text = render_markdown(result, events=events)
    if use_rich(fmt, is_terminal=sys.stdout.isatty()):
        from rich.console import Console

        from fleetwave.report.terminal import print_report

        print_report(result, Console(highlight=False), events=events)
    else:
        typer.echo(text)
    if chart is not None:
        typer.echo(f"chart: {chart}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the top-level app."""
    app.command("report")(report)
