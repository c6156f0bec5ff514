"""CLI of the state store: ``fleetwave db upgrade``, ``fleetwave db current``, ``fleetwave status``.

``--db URL`` overrides ``FLEETWAVE_DB_URL`` on every command; the URL shown never carries
a password.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer

__all__ = ["open_engine", "register", "status_document"]

db_app = typer.Typer(
    name="db",
    help="The campaign database: migrate it, show its schema revision.",
    no_args_is_help=True,
)

_DB_OPTION = typer.Option(
    None,
    "--db",
    help="Database URL (default: $FLEETWAVE_DB_URL, else fleetwave.db under $FLEETWAVE_HOME, "
    "else under ~/.local/share/fleetwave; `fleetwave db current` shows which).",
)


def open_engine(db: str | None, *, must_exist: bool, read_only: bool = False) -> Any:
    """An engine on ``db`` (default: :func:`fleetwave.store.store_location`).

    With ``must_exist``, a missing SQLite file or an in-memory URL is a
    :class:`~fleetwave.store.NoStoreError` (instead of a new empty database); ``read_only``
    opens it without writing or creating anything (``status``, ``report``, ``db current``).
    """
    from fleetwave import store

    location = store.store_location(db)
    if must_exist:
        store.require_existing_store(location)
    return store.get_engine(location.url, read_only=read_only)


@db_app.command("upgrade")
def upgrade(db: str | None = _DB_OPTION) -> None:
    """Create the database or migrate it to this fleetwave's schema."""
    from fleetwave import store

    location = store.store_location(db)
    engine = open_engine(db, must_exist=False)
    try:
        before = store.current_revision(engine)
        after = store.upgrade_schema(engine)
    finally:
        engine.dispose()
    where = location.describe()
    if before == after:
        typer.echo(f"{where}: already at schema revision {after}")
    else:
        typer.echo(f"{where}: upgraded from {before or 'empty'} to schema revision {after}")


@db_app.command("current")
def current(db: str | None = _DB_OPTION) -> None:
    """Print where the database is, its schema revision and whether it is up to date."""
    from fleetwave import store

    location = store.store_location(db)
    engine = open_engine(db, must_exist=True, read_only=True)
    try:
        rev, head = store.current_revision(engine), store.head_revision()
    finally:
        engine.dispose()
    state = (
        "up to date" if rev == head else f"out of date (head {head}; run `fleetwave db upgrade`)"
    )
    typer.echo(f"{location.describe()}: revision {rev or 'none'}, {state}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def status_document(session: Any, *, name: str | None, events: int = 10) -> dict[str, Any]:
    """The data of ``fleetwave status`` as a JSON-ready dict (also used by ``--json``)."""
    from fleetwave import store
    from fleetwave.engine.lease import run_activity

    if name is not None:
        campaigns = [store.get_campaign(session, name=name)]
    else:
        campaigns = store.list_campaigns(session)
    out: list[dict[str, Any]] = []
    for c in campaigns:
        assert c.id is not None
        by_wave = store.device_status_counts_by_wave(session, campaign_id=c.id)
        totals: dict[str, int] = {}
        for counts in by_wave.values():
            for s, n in counts.items():
                totals[s.value] = totals.get(s.value, 0) + n
        waves = [
            {
                "index": w.index,
                "number": w.index + 1,
                "name": w.name,
                "status": w.status.value,
                "planned_size": w.planned_size,
                "approval": w.approval_decision.value if w.approval_decision else None,
                "soak_until": _iso(w.soak_until),
                "counts": {s.value: n for s, n in sorted(by_wave.get(w.index, {}).items())},
            }
            for w in store.get_waves(session, campaign_id=c.id)
        ]
        # the last ``events`` events, oldest first (as ``fleetwave report`` lists them)
        recent = list(reversed(store.recent_events(session, campaign_id=c.id, limit=events)))
        run = None
        if not c.status.is_terminal:
            last = store.recent_events(
                session, campaign_id=c.id, limit=1, kinds=["run_ended", "run_stopped"]
            )
            activity = run_activity(
                holder=c.lease_holder,
                expires_at=c.lease_expires_at,
                flow_run_id=c.flow_run_id,
                now=datetime.now(UTC),
                last_end=(last[0].at, last[0].kind, last[0].data) if last else None,
            )
            run = {"active": activity.active, "text": activity.text}
        out.append(
            {
                "name": c.name,
                "status": c.status.value,
                "status_reason": c.status_reason,
                "spec_hash": c.spec_hash,
                "flow_run_id": c.flow_run_id,
                "lease_holder": c.lease_holder,
                "lease_expires_at": _iso(c.lease_expires_at),
                "run": run,
                "created_at": _iso(c.created_at),
                "started_at": _iso(c.started_at),
                "finished_at": _iso(c.finished_at),
                "counts": dict(sorted(totals.items())),
                "skipped": store.skip_reason_counts(session, campaign_id=c.id),
                "waves": waves,
                "events": [
                    {
                        "at": _iso(e.at),
                        "kind": e.kind,
                        "subject": e.subject,
                        "actor": e.actor,
                        "data": e.data,
                    }
                    for e in recent
                ],
            }
        )
    return {"campaigns": out}


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "no devices"


def _status_text(c: dict[str, Any]) -> str:
    """The campaign's status, and "no run active" when no run advances it now (a stored
    ``running`` outlives a crashed or cancelled run)."""
    run = c.get("run")
    return f"{c['status']}, no run active" if run and not run["active"] else c["status"]


def _short_time(iso: str | None) -> str:
    """``2026-01-05T00:00:00.123+00:00`` -> ``2026-01-05 00:00Z`` (stored times are UTC)."""
    return f"{iso[:16].replace('T', ' ')}Z" if iso else "-"


def _devices_text(counts: dict[str, int]) -> str:
    """``"750 targeted (succeeded 700, failed 50), 52 skipped"``: skipped devices were never
    sent, so they are said apart from the targeted ones (as report and artifacts do)."""
    skipped = counts.get("skipped", 0)
    targeted = {k: v for k, v in counts.items() if k != "skipped"}
    if not counts:
        return "no devices"
    text = f"{sum(targeted.values())} targeted"
    if targeted:
        text += f" ({_counts_text(targeted)})"
    return text + (f", {skipped} skipped" if skipped else "")


def _render(doc: dict[str, Any], *, detailed: bool) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    from fleetwave.cli.numbering import event_subject

    console = Console(highlight=False, soft_wrap=True)
    if not doc["campaigns"]:
        console.print("no campaigns in the database")
        return
    if not detailed:
        # The name is what every other command takes: never cut or wrapped (the other
        # columns wrap instead); piped output is not limited to 80 columns.
        longest = max(len(c["name"]) for c in doc["campaigns"])
        if not console.is_terminal:
            console = Console(highlight=False, soft_wrap=True, width=max(console.width, 200))
        table = Table("status", "devices", "started", "finished")
        table.columns.insert(0, Column("campaign", no_wrap=True, min_width=longest))
        for c in doc["campaigns"]:
            table.add_row(
                c["name"],
                _status_text(c),
                _devices_text(c["counts"]),
                _short_time(c["started_at"]),
                _short_time(c["finished_at"]),
            )
        console.print(table)
        return
    for c in doc["campaigns"]:
        reason = f" ({c['status_reason']})" if c["status_reason"] else ""
        console.print(f"[bold]{c['name']}[/bold]: {_status_text(c)}{reason}")
        console.print(f"  spec {c['spec_hash'][:12]}  devices: {_devices_text(c['counts'])}")
        if c.get("skipped"):
            console.print(f"  skipped {sum(c['skipped'].values())}: {_counts_text(c['skipped'])}")
        if c.get("run"):
            console.print(f"  run: {c['run']['text']}")
        waves = Table("wave", "name", "status", "planned", "devices by status")
        for w in c["waves"]:
            waves.add_row(
                str(w["number"]),
                w["name"],
                w["status"],
                str(w["planned_size"]),
                _counts_text(w["counts"]),
            )
        console.print(waves)
        if c["events"]:
            n = len(c["events"])
            console.print(f"  last {n} event{'s' if n != 1 else ''} (oldest first):")
            for e in c["events"]:
                data = json.dumps(e["data"], sort_keys=True, default=str, ensure_ascii=False)
                if len(data) > 120:
                    data = data[:117] + "..."
                at = (e["at"] or "")[:19].replace("T", " ")
                subject = event_subject(e["subject"])
                console.print(f"  {at}Z  {e['kind']}  {subject}  {data}")


def status(
    name: str | None = typer.Argument(None, help="A campaign name; all campaigns if omitted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    events: int = typer.Option(10, "--events", min=0, help="How many recent events to show."),
    db: str | None = _DB_OPTION,
) -> None:
    """Campaigns with their status, per-wave device counts and the last events."""
    from fleetwave import store

    engine = open_engine(db, must_exist=True, read_only=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine, read_only=True) as session:
            doc = status_document(session, name=name, events=events)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    else:
        _render(doc, detailed=name is not None)


def register(app: typer.Typer) -> None:
    """Add ``db upgrade``, ``db current`` and ``status`` to the top-level app."""
    app.add_typer(db_app, name="db")
    app.command("status")(status)
