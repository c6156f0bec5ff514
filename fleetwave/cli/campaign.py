"""CLI commands of the campaign area: ``validate``, ``plan`` and ``schema``.

``validate`` stays offline: it checks each file, and its limits against the capabilities
of the platform it names, read from the platform's settings without any call to it (a
profile not configured on this machine is reported as a note, and its limits are
checked by ``plan`` and ``run``).
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
from typing import Annotated, Any, NoReturn

import pendulum
import typer

from fleetwave.errors import UserError
from fleetwave.platforms.base import Capabilities, PackageKind
from fleetwave.spec import (
    SpecError,
    SpecProblem,
    SpecSource,
    campaign_json_schema,
    check_file_with_source,
    format_duration,
    key_position,
)
from fleetwave.spec.capability_check import apply_capabilities, capability_problems
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
    """Check campaign files; one line per error (FILE:LINE:COL: message); exit 2 on any error.

    Files checked together must have distinct campaign names (the store knows a campaign
    by its name): a name used twice is an error in each file, naming the other."""
    problems: list[SpecProblem] = []
    targets: list[Path] = []
    seen: set[Path] = set()
    for path in _expand(files):
        if path.resolve() not in seen:  # the same file given twice is checked once
            seen.add(path.resolve())
            targets.append(path)
    if not targets:
        raise UserError("no campaign files found", hint="pass FILE.yaml or a directory of them")
    results: list[tuple[Path, CampaignSpec | None, list[SpecProblem]]] = []
    for path in targets:
        spec, found, source = check_file_with_source(path)
        if spec is not None:
            caps, note = _offline_capabilities(spec)
            if note and not quiet:
                typer.echo(f"{path}: note: {note}")
            if caps is not None:
                found = capability_problems(spec, caps, source)
                spec = None if found else spec
        results.append((path, spec, list(found)))
    duplicates = _duplicate_names([(path, spec) for path, spec, _ in results])
    for path, spec, found in results:
        found = [*found, *duplicates.get(path, [])]
        problems.extend(found)
        for problem in found:
            typer.echo(str(problem))
        if spec is not None and not found and not quiet:
            typer.echo(f"{path}: ok ({spec.name}, {spec.kind.value}, {len(spec.waves)} waves)")
    if problems:
        n = len({p.file for p in problems})
        typer.secho(
            f"{len(problems)} error(s) in {n} of {len(targets)} file(s)", err=True, fg="red"
        )
        raise typer.Exit(2)


def _duplicate_names(
    specs: list[tuple[Path, CampaignSpec | None]],
) -> dict[Path, list[SpecProblem]]:
    """An error per file whose campaign name another of ``specs`` also uses."""
    by_name: dict[str, list[tuple[Path, int, int]]] = {}
    for path, spec in specs:
        if spec is not None:
            by_name.setdefault(spec.name, []).append((path, *key_position(path, ("name",))))
    out: dict[Path, list[SpecProblem]] = {}
    for name, places in by_name.items():
        if len(places) < 2:
            continue
        for path, line, col in places:
            others = ", ".join(f"{p}:{ln}" for p, ln, _ in places if p != path)
            out.setdefault(path, []).append(
                SpecProblem(
                    str(path),
                    line,
                    col,
                    f"campaign name {name!r} is also used by {others}; each campaign file "
                    "needs its own name (the store knows campaigns by name)",
                )
            )
    return out


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


def _sent_as(
    spec: CampaignSpec,
    platform: Any,
    caps: Capabilities,
    opens: pendulum.DateTime,
    closes: pendulum.DateTime,
) -> str | None:
    """How a task sent in this window reaches a platform that rounds windows its own way
    (None: the platform keeps the window as the engine rounds it, or tasks take none)."""
    from fleetwave.clock import utc_instant
    from fleetwave.plan.windows import WindowTooShort, to_policy_window
    from fleetwave.platforms.base import WindowDescriber
    from fleetwave.spec.model import ExecuteMode

    if spec.policy.execute is not ExecuteMode.WINDOW or not isinstance(platform, WindowDescriber):
        return None
    try:
        start, end = to_policy_window(
            opens, closes, min_window=caps.min_window, granularity=caps.window_granularity
        )
    except WindowTooShort as exc:
        return f"cannot be sent: {exc}"
    install = None
    if spec.windows is not None and spec.windows.install is not None:
        i_start, i_end = spec.windows.install.occurrence(start, spec.windows.timezone)
        install = (utc_instant(i_start), utc_instant(i_end))
    return platform.describe_window(PackageKind(spec.kind.value), start, end, install)


def _offline_capabilities(spec: CampaignSpec) -> tuple[Capabilities | None, str | None]:
    """The capabilities of the spec's platform from its settings (no call to it), or a note
    saying why they cannot be read here."""
    from fleetwave.platforms import default_capabilities, platform_capabilities
    from fleetwave.platforms.errors import PlatformError

    try:
        return asyncio.run(platform_capabilities(spec.platform)), None
    except (UserError, PlatformError) as exc:
        defaults = default_capabilities(spec.platform.type)
        if defaults is not None:
            return defaults, (
                f"platform {spec.platform} is not usable here ({exc}); checked against the "
                f"{spec.platform.type} defaults, plan and run check its settings' limits"
            )
        return None, (
            f"platform {spec.platform} is not usable here ({exc}); its limits are checked "
            "by plan and run"
        )


def _load(path: Path) -> tuple[CampaignSpec, SpecSource]:
    spec, problems, source = check_file_with_source(path)
    if spec is None:
        _fail(problems)
    return spec, source


def _fail(problems: list[SpecProblem]) -> NoReturn:
    for problem in problems:
        typer.echo(str(problem), err=True)
    raise typer.Exit(2)


def _package_json(pkg: Any) -> dict[str, Any] | None:
    if pkg is None:
        return None
    return {
        "file_id": pkg.file_id,
        "name": pkg.name,
        "version": pkg.version,
        "kind": pkg.kind.value,
        "device_type": pkg.device_type,
        "model": pkg.model,
        "manufacturer_name": pkg.manufacturer_name,
    }


async def preview_campaign(
    spec: CampaignSpec,
    platform: Any,
    *,
    now: pendulum.DateTime,
    source: SpecSource | None = None,
) -> dict[str, Any]:
    """Run stages 1-3 read-only and describe the result as JSON-ready data.

    ``platform`` implements :class:`fleetwave.platforms.base.Platform`; the spec's limits
    are checked against its capabilities first (``SpecError`` at ``source``'s positions)."""
    from fleetwave.engine.resolve import no_eligible_devices, resolve_targets
    from fleetwave.engine.verify import verify_packages
    from fleetwave.plan import estimate_calls, plan_waves
    from fleetwave.spec.capability_check import chunk_size

    caps: Capabilities = platform.capabilities
    spec = apply_capabilities(spec, caps, source)
    packages = await verify_packages(platform, spec)
    resolution = await resolve_targets(platform, spec, packages.package)
    empty = no_eligible_devices(spec, resolution)
    warnings = (
        [f"{empty.message}; `fleetwave run` refuses such a campaign (exit 2)"] if empty else []
    )
    limit = chunk_size(spec, caps)
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
                "sent_as": _sent_as(spec, platform, caps, opens, closes),
            }
        )
    estimate = estimate_calls(
        chunk_sizes_per_wave=[[len(c) for c in w.chunks] for w in plan.waves],
        max_inflight_tasks=spec.policy.max_inflight_tasks,
        rate_per_minute=caps.rate_limit_per_minute or 0,
        page_sizes=caps.page_sizes,
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
        "platform": {"type": spec.platform.type, "profile": spec.platform.profile},
        "now": now.in_tz("UTC").to_iso8601_string(),
        "package": _package_json(packages.package),
        "rollback": _package_json(packages.rollback),
        "targets": {
            "groups": [
                {
                    "group": g.label,
                    "group_id": g.group_id,
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
        "warnings": warnings,
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
    plat = data["platform"]
    console.print(
        f"[bold]{data['campaign']}[/] ({data['kind']}, platform {plat['type']} "
        f"profile {plat['profile']})"
    )
    console.print(
        f"package  {pkg['name']} {pkg['version']}  file {pkg['file_id']}  "
        f"for {pkg['device_type']}/{pkg['model']}/{pkg['manufacturer_name']}"
    )
    if data["rollback"]:
        rb = data["rollback"]
        console.print(f"rollback {rb['name']} {rb['version']}  file {rb['file_id']}")

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
        sent = any(w.get("sent_as") for w in win["next"])
        cols = ["opens (local)", "closes (local)", "opens (UTC)", "closes (UTC)", "now"]
        for col in cols:
            table.add_column(col, no_wrap=True)
        if sent:
            table.add_column("sent to the platform as")
        for w in win["next"]:
            row = [
                _short(w["opens_local"]),
                _short(w["closes_local"]),
                _short(w["opens_utc"]),
                _short(w["closes_utc"]),
                "open" if w["open_now"] else "",
            ]
            table.add_row(*row, *([w.get("sent_as") or ""] if sent else []))
        if not win["next"]:
            table.add_row("none within the horizon", "", "", "", "", *([""] if sent else []))
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
    """Show what a campaign would do, read-only: package, devices, waves, windows, API cost.

    Exit 2 (after the preview, with a WARNING line on stderr) when the targets give no
    eligible device: ``run`` would refuse that campaign."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_TELEMETRY_ENABLED", "false")
    spec, source = _load(file)
    now = _parse_at(at)

    async def run() -> dict[str, Any]:
        from fleetwave.platforms import open_platform

        async with open_platform(spec.platform) as platform:
            return await preview_campaign(spec, platform, now=now, source=source)

    try:
        data = asyncio.run(run())
    except SpecError as exc:  # the spec asks for what its platform cannot do
        _fail(exc.problems)
    data["file"] = str(file)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _render(data)
    for warning in data["warnings"]:
        typer.secho(f"WARNING: {warning}", err=True, fg=typer.colors.RED, bold=True)
    if data["warnings"]:
        # the same file would be refused by `run`: a plan that targets nothing is bad input
        raise typer.Exit(2)


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
