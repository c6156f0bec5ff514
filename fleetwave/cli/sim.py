"""CLI commands of the sim area: ``fleetwave sim serve`` runs the IoDM platform simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetwave.errors import UserError

sim_app = typer.Typer(help="The IoDM platform simulator.", no_args_is_help=True)


@sim_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8743,
    devices: Annotated[int, typer.Option(help="Fleet size.")] = 2000,
    groups: Annotated[int, typer.Option(help="Number of device groups.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the fleet and of every outcome.")] = 1,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Calls per minute per app (0: unlimited).")
    ] = 100,
    clock: Annotated[str, typer.Option(help="real | manual | scaled:FACTOR")] = "real",
    failure_rate: Annotated[
        float, typer.Option("--failure-rate", help="Probability that an upgrade attempt fails.")
    ] = 0.02,
    port_file: Annotated[
        Path | None, typer.Option("--port-file", help="Write the chosen port to this file.")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", help="PEM certificate (chain): serve HTTPS only. Needs --tls-key."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="Unencrypted PEM private key of --tls-cert."),
    ] = None,
) -> None:
    """Serve the simulated IoDM northbound API and its /sim/ admin API."""
    from fleetwave.sim.config import SimConfig
    from fleetwave.sim.server import SimServer, serve

    config = SimConfig(
        devices=devices,
        groups=groups,
        seed=seed,
        rate_limit=rate_limit,
        clock=clock,
        failure_rate=failure_rate,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )

    def announce(server: SimServer) -> None:
        typer.echo(f"fleetwave IoDM simulator listening on {server.base_url}")
        typer.echo(f"  appId:  {config.app_id}")
        typer.echo(f"  secret: {config.secret}")
        typer.echo(
            f"  fleet:  {devices} devices in {groups} groups, seed {seed}; "
            f"clock {clock}; rate limit {rate_limit or 'unlimited'}/min"
        )
        typer.echo(f"  admin:  {server.base_url}/sim/info, /sim/clock, /sim/stats")
        if tls_cert is not None:
            typer.echo(f"  tls:    HTTPS only, certificate {tls_cert} (clients: IODM_CA_BUNDLE)")

    try:
        serve(config, host=host, port=port, port_file=port_file, announce=announce)
    except ValueError as exc:
        raise UserError(str(exc), hint="see fleetwave sim serve --help") from exc
    except OSError as exc:
        raise UserError(str(exc), hint="pick another --port, or 0 for any free port") from exc


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.add_typer(sim_app, name="sim")
