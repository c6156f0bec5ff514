"""``fleetwave prefect setup``: write fleetwave's automation to the Prefect server in
PREFECT_API_URL, so a flow run whose worker was lost ends Crashed instead of staying
Running (README "A lost worker"; the definition is ``flows.heartbeats``)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from fleetwave.errors import UserError

__all__ = ["prefect_app", "register", "setup_automation"]

prefect_app = typer.Typer(
    name="prefect",
    help="fleetwave's objects on the Prefect server (PREFECT_API_URL).",
    no_args_is_help=True,
)


def _api_url() -> str:
    """PREFECT_API_URL (environment or Prefect profile); refused when unset, since Prefect
    would otherwise start a throwaway server and write the automation there."""
    from prefect.settings import get_current_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    if not url:
        raise UserError(
            "PREFECT_API_URL is not set: fleetwave prefect setup writes to a Prefect server",
            hint="set it to the server's API, e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    return str(url)


async def setup_automation(url: str, window: int) -> str:
    """Create or update the lost-run automation on the server at ``url``; what was done."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.heartbeats import ensure_automation, lost_run_automation

    try:
        wanted = lost_run_automation(window)
    except ValueError as exc:
        raise UserError(f"--window {window}: {exc}") from None
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            async with get_client() as client:
                done = await ensure_automation(client, wanted)
    except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"cannot write the automation to the Prefect server at {url} (PREFECT_API_URL): "
            f"{detail}",
            hint="start the server, or point PREFECT_API_URL at its API (…/api)",
        ) from None
    return done


@prefect_app.command("setup")
def setup(
    window: Annotated[
        int | None,
        typer.Option(
            help="Seconds without a heartbeat after which a run is set Crashed "
            "(default 90: three heartbeats of 30 s; at least 60).",
        ),
    ] = None,
) -> None:
    """Create (or update) the automation "fleetwave: crash lost flow runs" on the Prefect
    server in PREFECT_API_URL: a deployment's run of advance-campaign whose heartbeats stop
    (its worker died) is set Crashed. Safe to run again: one automation stays."""
    from flows.heartbeats import AUTOMATION_NAME, HEARTBEAT_SECONDS, WINDOW_SECONDS

    url = _api_url()
    seconds = WINDOW_SECONDS if window is None else window
    done = asyncio.run(setup_automation(url, seconds))
    typer.echo(
        f"automation {AUTOMATION_NAME!r} {done} on {url}: a run without a heartbeat for "
        f"{seconds} s (heartbeats every {HEARTBEAT_SECONDS} s) is set Crashed"
    )


def register(app: typer.Typer) -> None:
    """Add ``prefect setup`` to the top-level app."""
    app.add_typer(prefect_app, name="prefect")
