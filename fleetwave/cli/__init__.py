"""The ``fleetwave`` command line: one Typer app, commands registered per area.

Each area module exposes ``register(app)``; errors a user can fix (``UserError``,
``PlatformError``) are printed as one line without a traceback. Log lines go to stderr:
WARNING and up by default (retries, throttling and other long waits say what they wait
for), ``-v`` adds INFO, ``-vv`` DEBUG (httpx/httpcore included, secrets redacted).
"""

from __future__ import annotations

import logging
import sys

import typer

from fleetwave.cli import campaign, consent, db, devices, prefect_setup, report, run, sim
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
def _root(
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="More log lines on stderr: -v for INFO (logins, packages, tasks created), "
        "-vv for DEBUG including every HTTP request.",
    ),
) -> None:
    """Firmware campaign orchestration for IoT fleets."""
    configure_logging(verbose)


_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(verbosity: int = 0) -> None:
    """Log to stderr: WARNING by default, INFO with one ``-v``, DEBUG with two or more.

    httpx logs every request at INFO, so it and httpcore stay at WARNING below ``-vv``.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=_LOG_FORMAT)
    root.setLevel(level)
    logging.getLogger("fleetwave").setLevel(level)
    quiet = logging.DEBUG if verbosity >= 2 else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


@app.command()
def version() -> None:
    """Print fleetwave's version."""
    from fleetwave import __version__

    typer.echo(__version__)


for _module in (sim, campaign, db, run, report, consent, devices, prefect_setup):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    configure_logging(0)
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
