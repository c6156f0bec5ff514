"""The ``fleetwave`` command line: one Typer app, commands registered per area.

Each area module exposes ``register(app)``; errors a user can fix (``UserError``,
``PlatformError``) are printed as one line without a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer

from fleetwave.cli import campaign, db, report, run, sim
from fleetwave.errors import UserError
from fleetwave.platforms.errors import PlatformError

__all__ = ["app", "main"]

app = typer.Typer(
    name="fleetwave",
    help="Firmware campaign orchestration for IoT fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Firmware campaign orchestration for IoT fleets."""


@app.command()
def version() -> None:
    """Print fleetwave's version."""
    from fleetwave import __version__

    typer.echo(__version__)


for _module in (sim, campaign, db, run, report):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="fleetwave", standalone_mode=True)
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except PlatformError as exc:
        typer.secho(f"platform error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(3)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
