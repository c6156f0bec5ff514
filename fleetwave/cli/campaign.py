"""CLI commands of the campaign area: ``validate``, ``plan`` and ``schema``.

``plan`` is read-only against the platform: it verifies the package, resolves the
targets with the inventory pre-flight, splits waves and chunks, shows the next windows
and estimates the API calls; it never creates, changes or deletes anything.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import pendulum
import typer

from fleetwave.errors import UserError
from fleetwave.spec import SpecProblem, campaign_json_schema, check_file, format_duration
from fleetwave.spec.model import CampaignSpec

__all__ = ["preview_campaign", "register"]

#: Windows listed by ``plan``.
NEXT_WINDOWS = 3
#: Skipped device IDs listed per reason in ``plan --json``.
SKIP_SAMPLES = 5


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            out.append(p)
    return out


def validate_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="Campaign files (or directories of *.yaml) to check."),
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
) -> None:
    """Check campaign files; one line per error (FILE:LINE:COL: message); exit 2 on any error."""
    problems: list[SpecProblem] = []
    targets = _expand(files)
    if not targets:
        raise UserError("no campaign files found", hint="pass FILE.yaml or a directory of them")
    for path in targets:
        spec, found = check_file(path)
        problems.extend(found)
        for problem in found:
            typer.echo(str(problem))
        if spec is not None and not quiet:
            typer.echo(f"{path}: ok ({spec.name}, {spec.kind.value}, {len(spec.waves)} waves)")
    if problems:
        n = len({p.file for p in problems})
        typer.secho(
            f"{len(problems)} error(s) in {n} of {len(targets)} file(s)", err=True, fg="red"
        )
        raise typer.Exit(2)


def schema_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead.")
    ] = None,
) -> None:
    """Print the JSON Schema of campaign files (for editor completion)."""
    text = json.dumps(campaign_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def _load(path: Path) -> CampaignSpec:
    spec, problems = check_file(path)
    if spec is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2)
    return spec


def _package_json(pkg: Any) -> dict[str, Any] | None:
    if pkg is None:
        return None
    return {
        "fileId": pkg.file_id,
        "name": pkg.name,
        "version": pkg.version,
        "kind": pkg.kind.value,
        "deviceType": pkg.device_type,
        "model": pkg.model,
        "manufacturerName": pkg.manufacturer_name,
    }


def _rate_of(platform: Any) -> int:
    settings = getattr(platform, "settings", None)
    rate = getattr(settings, "rate_limit", None)
    return rate if isinstance(rate, int) else 100


async def preview_campaign(
    spec: CampaignSpec, platform: Any, *, now: pendulum.DateTime
) -> dict[str, Any]:
    """Run stages 1-3 read-only and describe the result as JSON-ready data.

    ``platform`` implements :class:`fleetwave.platforms.base.Platform`."""
    from fleetwave.engine.resolve import resolve_targets
    from fleetwave.engine.verify import verify_packages
    from fleetwave.plan import estimate_calls, plan_waves

    packages = await verify_packages(platform, spec)
    resolution = await resolve_targets(platform, spec, packages.package)
    limit = min(spec.policy.max_devices_per_task, platform.capabilities.max_devices_per_task)
    plan = plan_waves(
        resolution.device_ids,
        spec.wave_targets(),
        seed=spec.shuffle_seed,
        max_devices_per_task=limit,
        buckets=resolution.buckets,
    )
    schedule = spec.schedule()
    tz = schedule.timezone
    windows = []
    for opens, closes in schedule.upcoming(now, NEXT_WINDOWS):
        windows.append(
            {
                "opens_local": opens.in_tz(tz).to_iso8601_string(),
                "closes_local": closes.in_tz(tz).to_iso8601_string(),
                "opens_utc": opens.in_tz("UTC").to_iso8601_string(),
                "closes_utc": closes.in_tz("UTC").to_iso8601_string(),
                "open_now": opens <= now < closes,
            }
        )
    estimate = estimate_calls(
        chunk_sizes_per_wave=[[len(c) for c in w.chunks] for w in plan.waves],
        max_inflight_tasks=spec.policy.max_inflight_tasks,
        rate_per_minute=_rate_of(platform),
        group_member_counts=[g.members for g in resolution.groups],
        group_lookups=sum(1 for g in spec.targets.groups if g.id is None),
        inventory_devices=resolution.inventory_scanned,
        package_lookups=1 + (spec.rollback is not None),
    )
    waves = []
    for w in plan.waves:
        ws = spec.waves[w.index]
        waves.append(
            {
                "index": w.index,
                "name": w.name,
                "devices": w.device_count,
                "chunks": len(w.chunks),
                "approval": ws.approval,
                "soak": format_duration(ws.soak),
                "success_percent": spec.wave_success_percent(w.index),
            }
        )
    return {
        "campaign": spec.name,
        "kind": spec.kind.value,
        "platform": spec.platform,
        "now": now.in_tz("UTC").to_iso8601_string(),
        "package": _package_json(packages.package),
        "rollback": _package_json(packages.rollback),
        "targets": {
            "groups": [
                {
                    "group": g.label,
                    "groupId": g.group_id,
                    "members": g.members,
                    "eligible": g.eligible,
                }
                for g in resolution.groups
            ],
            "explicit": resolution.explicit,
            "duplicates": resolution.duplicates,
            "eligible": len(resolution.device_ids),
            "skipped": resolution.skip_counts(),
            "skipped_samples": {
                r.value: ids[:SKIP_SAMPLES] for r, ids in resolution.skipped.items()
            },
        },
        "waves": waves,
        "max_devices_per_task": limit,
        "chunks": plan.chunk_count,
        "windows": {
            "timezone": tz,
            "always_open": spec.windows is None or not spec.windows.allowed,
            "open_now": schedule.is_open(now),
            "next": windows,
        },
        "estimate": {
            "resolution_calls": estimate.resolution_calls,
            "create_calls": estimate.create_calls,
            "poll_calls": estimate.poll_calls,
            "subtask_calls": estimate.subtask_calls,
            "total_calls": estimate.total_calls,
            "rate_per_minute": estimate.rate_per_minute,
            "min_duration_seconds": math.ceil(estimate.min_duration_seconds),
            "soak_seconds": int(sum(w.soak.total_seconds() for w in spec.waves)),
        },
        "calls_made": dict(platform.call_counts()),
    }


def _seconds_text(seconds: float) -> str:
    return format_duration(pendulum.duration(seconds=math.ceil(seconds)).as_timedelta())


def _short(iso: str) -> str:
    """``2026-03-27T22:00:00+01:00`` -> ``Fri 2026-03-27 22:00 +01:00`` (``Z`` for UTC)."""
    parsed = pendulum.parse(iso)
    assert isinstance(parsed, pendulum.DateTime)
    offset = parsed.format("Z")
    if offset == "+00:00":
        return parsed.format("YYYY-MM-DD HH:mm[Z]")
    return parsed.format("ddd YYYY-MM-DD HH:mm ") + offset


def _render(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 150))
    pkg = data["package"]
    console.print(
        f"[bold]{data['campaign']}[/] ({data['kind']}, platform profile {data['platform']})"
    )
    console.print(
        f"package  {pkg['name']} {pkg['version']}  fileId {pkg['fileId']}  "
        f"for {pkg['deviceType']}/{pkg['model']}/{pkg['manufacturerName']}"
    )
    if data["rollback"]:
        rb = data["rollback"]
        console.print(f"rollback {rb['name']} {rb['version']}  fileId {rb['fileId']}")

    t = data["targets"]
    groups = Table(title="Targets", title_justify="left")
    groups.add_column("source")
    groups.add_column("members", justify="right")
    groups.add_column("eligible", justify="right")
    for g in t["groups"]:
        groups.add_row(f"group {g['group']}", str(g["members"]), str(g["eligible"]))
    if t["explicit"]:
        groups.add_row("explicit IDs", str(t["explicit"]), "")
    groups.add_row("[bold]total eligible[/]", "", f"[bold]{t['eligible']}[/]")
    console.print(groups)
    if t["skipped"] or t["duplicates"]:
        from fleetwave.engine.resolve import SkipReason

        skipped = Table(title="Skipped devices", title_justify="left")
        skipped.add_column("reason")
        skipped.add_column("devices", justify="right")
        skipped.add_column("e.g.")
        for reason, count in t["skipped"].items():
            samples = ", ".join(t["skipped_samples"].get(reason, [])[:3])
            skipped.add_row(SkipReason(reason).text, str(count), samples)
        if t["duplicates"]:
            skipped.add_row("named more than once (counted once)", str(t["duplicates"]), "")
        console.print(skipped)

    waves = Table(
        title=f"Waves (chunks of at most {data['max_devices_per_task']} devices)",
        title_justify="left",
    )
    for col, just in (
        ("#", "right"),
        ("wave", "left"),
        ("devices", "right"),
        ("chunks", "right"),
        ("approval", "left"),
        ("soak", "left"),
        ("success needed", "right"),
    ):
        waves.add_column(col, justify=just)  # type: ignore[arg-type]
    for w in data["waves"]:
        waves.add_row(
            str(w["index"] + 1),
            w["name"],
            str(w["devices"]),
            str(w["chunks"]),
            "yes" if w["approval"] else "",
            w["soak"] if w["soak"] != "0s" else "",
            f"{w['success_percent']:g} %",
        )
    console.print(waves)

    win = data["windows"]
    if win["always_open"]:
        if win["open_now"]:
            console.print(f"windows  always allowed now (no weekly windows; {win['timezone']})")
        elif win["next"]:
            w = win["next"][0]
            console.print(
                f"windows  blacked out now; allowed again from {_short(w['opens_local'])} "
                f"({_short(w['opens_utc'])})"
            )
        else:
            console.print("windows  nothing allowed within the horizon (blackouts)")
    else:
        table = Table(title=f"Next windows ({win['timezone']})", title_justify="left")
        for col in ("opens (local)", "closes (local)", "opens (UTC)", "closes (UTC)", "now"):
            table.add_column(col, no_wrap=True)
        for w in win["next"]:
            table.add_row(
                _short(w["opens_local"]),
                _short(w["closes_local"]),
                _short(w["opens_utc"]),
                _short(w["closes_utc"]),
                "open" if w["open_now"] else "",
            )
        if not win["next"]:
            table.add_row("none within the horizon", "", "", "", "")
        console.print(table)

    e = data["estimate"]
    console.print(
        f"estimate {e['total_calls']} API calls ({e['resolution_calls']} resolution, "
        f"{e['create_calls']} task creations, {e['poll_calls']} progress polls, "
        f"{e['subtask_calls']} subtask pages); at {e['rate_per_minute'] or 'unlimited'}/min "
        f"at least {_seconds_text(e['min_duration_seconds'])}"
        + (f" plus {_seconds_text(e['soak_seconds'])} of soak" if e["soak_seconds"] else "")
    )
    made = sum(data["calls_made"].values())
    console.print(f"this plan made {made} read-only API calls")


def plan_command(
    file: Annotated[Path, typer.Argument(help="The campaign file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Evaluate windows at this ISO 8601 instant instead of now."),
    ] = None,
) -> None:
    """Show what a campaign would do, read-only: package, devices, waves, windows, API cost."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_TELEMETRY_ENABLED", "false")
    spec = _load(file)
    now = _parse_at(at)

    async def run() -> dict[str, Any]:
        from fleetwave.platforms import open_platform

        async with open_platform(spec.platform) as platform:
            return await preview_campaign(spec, platform, now=now)

    data = asyncio.run(run())
    data["file"] = str(file)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _render(data)


def _parse_at(at: str | None) -> pendulum.DateTime:
    if at is None:
        return pendulum.now("UTC")
    try:
        parsed = pendulum.parse(at)
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if not isinstance(parsed, pendulum.DateTime):
        raise UserError(
            f"--at {at!r} is not an ISO 8601 instant", hint="e.g. 2026-03-29T01:30:00+01:00"
        )
    return parsed.in_tz("UTC")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command("validate")(validate_command)
    app.command("plan")(plan_command)
    app.command("schema")(schema_command)
