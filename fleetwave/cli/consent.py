"""``fleetwave consent ...``: serve the end-user consent API, import device owners, issue
an owner's token, and show a campaign's devices by consent state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fleetwave.cli.db import _DB_OPTION, open_engine
from fleetwave.consent.settings import DEFAULT_HOST, DEFAULT_PORT
from fleetwave.errors import UserError

__all__ = ["consent_app", "register"]

consent_app = typer.Typer(
    name="consent",
    help="End users in the loop: the consent API, device owners, consent counts.",
    no_args_is_help=True,
)


@consent_app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on.", envvar="FLEETWAVE_CONSENT_HOST")
    ] = DEFAULT_HOST,
    port: Annotated[
        int,
        typer.Option(help="Port to listen on (0: any free port).", envvar="FLEETWAVE_CONSENT_PORT"),
    ] = DEFAULT_PORT,
    db: str | None = _DB_OPTION,
) -> None:
    """Serve the end-user consent API (docs/consent-api.md) until interrupted. Flow runs of
    consent campaigns on this machine with the same FLEETWAVE_CONSENT_HOST/PORT reuse it."""
    import pendulum

    from fleetwave import store
    from fleetwave.consent.app import ConsentServer, create_consent_app

    engine = open_engine(db, must_exist=True)
    try:
        store.ensure_schema_current(engine)
        server = ConsentServer(
            create_consent_app(engine=engine, now=lambda: pendulum.now("UTC")), host, port
        )
        typer.echo(f"consent API on {server.url} (OpenAPI at {server.url}/openapi.json)", err=True)
        server.run()
    finally:
        engine.dispose()


@consent_app.command("import-owners")
def import_owners(
    file: Annotated[
        Path, typer.Argument(help="CSV (device_id,owner_id header) or JSON ownership file.")
    ],
    db: str | None = _DB_OPTION,
) -> None:
    """Record which end user owns which device (a device's previous owner is replaced)."""
    import pendulum

    from fleetwave import store
    from fleetwave.consent.owners import read_ownership

    rows = read_ownership(file)
    engine = open_engine(db, must_exist=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine) as session:
            n = store.import_device_owners(session, rows=rows, now=pendulum.now("UTC"))
    finally:
        engine.dispose()
    owners = len({o for _, o in rows})
    typer.echo(f"{n} devices of {owners} owners imported from {file}")


@consent_app.command("token")
def token(
    owner: Annotated[str, typer.Argument(help="The owner ID (as in the ownership file).")],
    db: str | None = _DB_OPTION,
) -> None:
    """Issue a new access token for an owner and print it once (only its hash is stored;
    the previous token stops working)."""
    import pendulum

    from fleetwave import store

    engine = open_engine(db, must_exist=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine) as session:
            issued = store.issue_owner_token(session, owner_id=owner, now=pendulum.now("UTC"))
    finally:
        engine.dispose()
    typer.echo(issued)


@consent_app.command("status")
def status(
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: str | None = _DB_OPTION,
) -> None:
    """A consent campaign's devices counted by consent state."""
    from fleetwave import store

    engine = open_engine(db, must_exist=True, read_only=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine, read_only=True) as session:
            campaign = store.get_campaign(session, name=name)
            assert campaign.id is not None
            counts = store.consent_state_counts(session, campaign_id=campaign.id)
    finally:
        engine.dispose()
    if sum(counts.values()) == 0:
        raise UserError(
            f"campaign {name!r} has no consent plan",
            hint="only campaigns with a consent: section have consent states",
        )
    if as_json:
        typer.echo(json.dumps({"campaign": name, "consent": counts}, indent=2))
        return
    typer.echo(f"campaign {name}: consent of {sum(counts.values())} devices")
    for state, n in counts.items():
        typer.echo(f"  {state:<10} {n}")


def register(app: typer.Typer) -> None:
    """Add ``consent serve|import-owners|token|status`` to the top-level app."""
    app.add_typer(consent_app, name="consent")
