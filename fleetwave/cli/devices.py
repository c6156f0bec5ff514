"""``fleetwave devices NAME`` and ``fleetwave tasks NAME``: a campaign's rows, one a line.

Both stream from the store in batches (``store.iter_device_listing``,
``store.iter_task_listing``) and write each row as it comes, so a campaign of a million
devices lists with the memory of one batch. ``--json`` writes one JSON array, also
streamed. Waves are numbered from 1, as ``fleetwave plan`` shows them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

import typer

from fleetwave.cli.db import _DB_OPTION, open_engine
from fleetwave.cli.numbering import wave_index, wave_number
from fleetwave.errors import UserError

__all__ = ["device_result", "register"]

_DEVICE_COLUMNS = (("DEVICE", 28), ("WAVE", 5), ("STATUS", 15), ("ATTEMPTS", 8), ("OPERATION", 24))
_TASK_COLUMNS = (
    ("WAVE", 5),
    ("KIND", 8),
    ("ROUND", 5),
    ("DEVICES", 7),
    ("STATUS", 10),
    ("OPERATION", 24),
    ("PLATFORM", 10),
    ("SUBMITTED (UTC)", 19),
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _iso(value: datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() if value is not None else None


def device_result(
    status: str, failure_kind: str | None, detail: str | None, version: str | None
) -> str:
    """A device's result in words: its failure (kind: detail), else the version it reports."""
    if failure_kind or detail:
        text = ": ".join(p for p in (failure_kind, detail) if p)
        return " ".join(text.split())
    if version:
        return f"on version {version}"
    return ""


def _line(cells: Iterable[str], widths: Iterable[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()


@contextmanager
def _campaign(db: str | None, name: str) -> Iterator[tuple[Any, int, list[str]]]:
    """A read-only session on the store, the campaign's id and its wave names in order."""
    from fleetwave import store

    engine = open_engine(db, must_exist=True, read_only=True)
    try:
        store.ensure_schema_current(engine)
        with store.session_scope(engine, read_only=True) as session:
            campaign = store.find_campaign(session, name=name)
            if campaign is None:
                known = sorted(c.name for c in store.list_campaigns(session))[:10]
                raise UserError(
                    f"no campaign named {name!r} in the store",
                    hint=f"known campaigns: {', '.join(known)}"
                    if known
                    else "no campaign has run yet",
                )
            assert campaign.id is not None
            names = [w.name for w in store.get_waves(session, campaign_id=campaign.id)]
            yield session, campaign.id, names
    finally:
        engine.dispose()


class _Out:
    """Writes rows to stdout as they come; a closed pipe (``| head``) ends quietly."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.count = 0

    def row(self, text: str) -> None:
        self.stream.write(text + "\n")

    def item(self, data: dict[str, Any]) -> None:
        sep = "[\n  " if self.count == 0 else ",\n  "
        self.stream.write(sep + json.dumps(data, ensure_ascii=False))
        self.count += 1

    def close_json(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")


def _statuses(values: list[str] | None) -> list[Any] | None:
    from fleetwave.store import DeviceRunStatus

    if not values:
        return None
    known = [s.value for s in DeviceRunStatus]
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower().replace("-", "_").replace(" ", "_")
            if part not in known:
                raise UserError(
                    f"--status {part!r} is not a device status",
                    hint=f"one of: {', '.join(known)} (repeat --status or separate with commas)",
                )
            out.append(DeviceRunStatus(part))
    return out


def devices_command(
    name: str = typer.Argument(..., help="The campaign's name (the `name:` of its YAML file)."),
    status: list[str] | None = typer.Option(
        None,
        "--status",
        help="Only devices in this status (repeat or separate with commas), e.g. failed,timed_out.",
    ),
    wave: int | None = typer.Option(
        None, "--wave", help="Only this wave (numbered from 1, as `fleetwave plan` shows them)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array of devices."),
    db: str | None = _DB_OPTION,
) -> None:
    """Each device of a campaign: wave, status, attempts, operation ID and result.

    Sorted by device ID and streamed from the store (fine at a million devices)."""
    statuses = _statuses(status)
    from fleetwave import store

    out = _Out(sys.stdout, as_json=as_json)
    try:
        with _campaign(db, name) as (session, cid, names):
            index = wave_index(wave, names)
            rows = store.iter_device_listing(
                session, campaign_id=cid, wave_index=index, statuses=statuses, batch_size=2000
            )
            widths = [w for _, w in _DEVICE_COLUMNS]
            if not as_json:
                out.row(_line([h for h, _ in _DEVICE_COLUMNS] + ["RESULT"], [*widths, 0]))
            for r in rows:
                result = device_result(
                    r.status.value, r.failure_kind, r.failure_detail, r.current_version
                )
                if as_json:
                    out.item(
                        {
                            "device": r.device_id,
                            "wave": r.wave_index + 1 if r.wave_index >= 0 else None,
                            "wave_name": names[r.wave_index]
                            if 0 <= r.wave_index < len(names)
                            else None,
                            "status": r.status.value,
                            "attempts": r.attempt,
                            "operation_id": r.operation_id,
                            "failure_kind": r.failure_kind,
                            "failure_detail": r.failure_detail,
                            "version": r.current_version,
                            "finished_at": _iso(r.finished_at),
                        }
                    )
                else:
                    out.count += 1
                    out.row(
                        _line(
                            [
                                r.device_id,
                                wave_number(r.wave_index),
                                r.status.value,
                                str(r.attempt),
                                r.operation_id or "-",
                                result,
                            ],
                            [*widths, 0],
                        )
                    )
        if as_json:
            out.close_json()
        else:
            noun = "device" if out.count == 1 else "devices"
            out.row(f"({out.count} {noun})")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()


def tasks_command(
    name: str = typer.Argument(..., help="The campaign's name (the `name:` of its YAML file)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array of tasks."),
    db: str | None = _DB_OPTION,
) -> None:
    """Each platform task of a campaign (oldest first): wave, kind, round, devices, status,
    operation ID, the platform's last status and when it was submitted and finished."""
    from fleetwave import store

    out = _Out(sys.stdout, as_json=as_json)
    try:
        with _campaign(db, name) as (session, cid, names):
            widths = [w for _, w in _TASK_COLUMNS]
            if not as_json:
                out.row(_line([h for h, _ in _TASK_COLUMNS] + ["FINISHED (UTC)"], [*widths, 0]))
            for t in store.iter_task_listing(session, campaign_id=cid):
                if as_json:
                    out.item(
                        {
                            "wave": t.wave_index + 1,
                            "wave_name": names[t.wave_index]
                            if 0 <= t.wave_index < len(names)
                            else None,
                            "kind": t.kind.value,
                            "round": t.round,
                            "seq": t.seq,
                            "devices": t.device_count,
                            "status": t.status.value,
                            "operation_id": t.operation_id,
                            "platform_status": t.platform_status,
                            "submitted_at": _iso(t.submitted_at),
                            "finished_at": _iso(t.finished_at),
                        }
                    )
                else:
                    out.count += 1
                    out.row(
                        _line(
                            [
                                wave_number(t.wave_index),
                                t.kind.value,
                                str(t.round),
                                str(t.device_count),
                                t.status.value,
                                t.operation_id or "-",
                                t.platform_status or "-",
                                _when(t.submitted_at),
                                _when(t.finished_at),
                            ],
                            [*widths, 0],
                        )
                    )
        if as_json:
            out.close_json()
        else:
            out.row(f"({out.count} {'task' if out.count == 1 else 'tasks'})")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()


def _quiet_pipe() -> None:
    """The reader closed the pipe (``| head``): stop without a traceback on exit."""
    import contextlib
    import os

    with contextlib.suppress(OSError, ValueError):  # no real descriptor (captured output)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    """Add ``devices`` and ``tasks`` to the top-level app."""
    app.command("devices")(devices_command)
    app.command("tasks")(tasks_command)
