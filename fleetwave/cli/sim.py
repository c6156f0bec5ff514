"""CLI commands of the sim area: ``fleetwave sim serve`` runs a platform simulator (IoDM by
default, Verizon ThingSpace with ``--platform thingspace``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetwave.errors import UserError

sim_app = typer.Typer(help="The platform simulators (IoDM, ThingSpace).", no_args_is_help=True)

PLATFORMS = ("iodm", "thingspace")


@sim_app.command("serve")
def serve_command(
    platform: Annotated[
        str, typer.Option(help="Which platform to simulate: iodm | thingspace.")
    ] = "iodm",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="Port (0 picks a free one). Default 8743 (iodm), 8744 (thingspace)."),
    ] = None,
    devices: Annotated[int, typer.Option(help="Fleet size.")] = 2000,
    groups: Annotated[int, typer.Option(help="Number of device groups.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the fleet and of every outcome.")] = 1,
    rate_limit: Annotated[
        int,
        typer.Option(
            "--rate-limit",
            help="Calls per minute per app or client key (0: unlimited). ThingSpace: the "
            "budget negotiated in the contract.",
        ),
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
    account: Annotated[
        str | None, typer.Option(help="ThingSpace: the billing account name.")
    ] = None,
    license_required: Annotated[
        bool,
        typer.Option(
            "--license-required",
            help="ThingSpace: an MRC subscription; devices need a license before an upgrade.",
        ),
    ] = False,
    licenses: Annotated[
        int, typer.Option(help="ThingSpace: licenses in the MRC pool (0: one per device).")
    ] = 0,
    request_failure_rate: Annotated[
        float,
        typer.Option(
            "--request-failure-rate",
            help="ThingSpace: probability that a request is RequestFailed when accepted.",
        ),
    ] = 0.0,
    allow_http_callbacks: Annotated[
        bool,
        typer.Option(
            "--allow-http-callbacks",
            help="ThingSpace: accept http:// callback URLs (the platform requires https).",
        ),
    ] = False,
    callback_ca: Annotated[
        Path | None,
        typer.Option(
            "--callback-ca", help="ThingSpace: PEM CA bundle trusted when pushing callbacks."
        ),
    ] = None,
) -> None:
    """Serve a simulated platform API and its /sim/ admin API."""
    if platform not in PLATFORMS:
        raise UserError(
            f"--platform {platform!r} is not a simulated platform; "
            f"use one of {', '.join(PLATFORMS)}"
        )
    if platform == "thingspace":
        _serve_thingspace(
            host=host,
            port=8744 if port is None else port,
            port_file=port_file,
            devices=devices,
            groups=groups,
            seed=seed,
            rate_limit=rate_limit,
            clock=clock,
            failure_rate=failure_rate,
            tls_cert=tls_cert,
            tls_key=tls_key,
            account=account,
            license_required=license_required,
            licenses=licenses,
            request_failure_rate=request_failure_rate,
            allow_http_callbacks=allow_http_callbacks,
            callback_ca=callback_ca,
        )
        return
    thingspace_only = {
        "--account": account is not None,
        "--license-required": license_required,
        "--licenses": licenses != 0,
        "--request-failure-rate": request_failure_rate != 0.0,
        "--allow-http-callbacks": allow_http_callbacks,
        "--callback-ca": callback_ca is not None,
    }
    given = [flag for flag, used in thingspace_only.items() if used]
    if given:
        raise UserError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to the "
            "ThingSpace simulator",
            hint="add --platform thingspace",
        )
    from fleetwave.sim.config import SimConfig
    from fleetwave.sim.server import SimServer, announce_lines, serve

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
        for line in announce_lines(config, server.base_url):
            typer.echo(line)

    try:
        serve(
            config,
            host=host,
            port=8743 if port is None else port,
            port_file=port_file,
            announce=announce,
        )
    except ValueError as exc:
        raise UserError(str(exc), hint="see fleetwave sim serve --help") from exc
    except OSError as exc:
        raise UserError(str(exc), hint="pick another --port, or 0 for any free port") from exc


def _serve_thingspace(
    *,
    host: str,
    port: int,
    port_file: Path | None,
    account: str | None,
    **settings: object,
) -> None:
    from fleetwave.sim.thingspace.config import DEMO_ACCOUNT, TSConfig
    from fleetwave.sim.thingspace.server import TSServer, announce_lines, serve

    config = TSConfig(account=account or DEMO_ACCOUNT, **settings)  # type: ignore[arg-type]

    def announce(server: TSServer) -> None:
        for line in announce_lines(config, server.base_url):
            typer.echo(line)

    try:
        serve(config, host=host, port=port, port_file=port_file, announce=announce)
    except ValueError as exc:
        raise UserError(str(exc), hint="see fleetwave sim serve --help") from exc
    except OSError as exc:
        raise UserError(str(exc), hint="pick another --port, or 0 for any free port") from exc


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.add_typer(sim_app, name="sim")
