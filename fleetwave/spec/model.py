"""The typed campaign model (pydantic v2): every field of a campaign file, validated at load.

Everything is typed here so nothing downstream parses strings: durations become
``timedelta``, times of day ``datetime.time``, percentages floats in range. Cross-field
rules live in each model's ``_issues()`` so the loader can report them with a file
position; building a model in code runs the same rules (a ``ValueError`` on failure).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import re
import zoneinfo
from collections.abc import Iterator
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fleetwave.plan.waves import WaveTarget
from fleetwave.plan.windows import WeeklyWindow, WindowSchedule
from fleetwave.platforms import DEFAULT_PLATFORM_TYPE, known_platform_types
from fleetwave.platforms.base import ExecuteType, PackageKind

__all__ = [
    "IDS_FILE_FIELDS",
    "MUTABLE_FIELDS",
    "BlackoutSpec",
    "BreachAction",
    "CampaignSpec",
    "Connectivity",
    "ConsentDelivery",
    "ConsentSpec",
    "ConsentTimeoutAction",
    "ExecuteMode",
    "FailureKind",
    "FieldChange",
    "GroupRef",
    "InstallWindowSpec",
    "Issue",
    "PackageRef",
    "PlatformSpec",
    "PolicySpec",
    "ResubmitRule",
    "TargetsSpec",
    "ThresholdScope",
    "ThresholdsSpec",
    "WaveSpec",
    "Weekday",
    "WindowSpec",
    "WindowsSpec",
    "format_duration",
    "immutable_part",
    "is_ids_fingerprint",
    "is_mutable",
    "parse_duration",
    "spec_change_records",
    "spec_changes",
    "spec_fingerprint",
]

#: Context key: the loader sets it to collect cross-field issues itself, with positions.
DEFER_CHECKS: Final = "fleetwave_defer_checks"

Loc = tuple[str | int, ...]


class Issue:
    """One cross-field problem: where (a path of keys/indexes) and what is wrong."""

    __slots__ = ("loc", "message")

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc = loc
        self.message = message

    def __repr__(self) -> str:
        return f"Issue({self.loc!r}, {self.message!r})"

    def render(self) -> str:
        where = _render_loc(self.loc)
        return f"{where}: {self.message}" if where else self.message


def _render_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --------------------------------------------------------------------------- scalar types

_DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: object) -> dt.timedelta:
    """Parse ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` or ``"1h30m"`` into a timedelta.

    Bare numbers are refused: ``30`` could mean seconds or minutes, and a campaign file
    must not be ambiguous.
    """
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"{value!r} is not a duration; write a number with a unit, e.g. '90s', '30m', '2h', "
            "'1d' or '1h30m'"
        )
    m = _DURATION_RE.match(value)
    if not value.strip() or m is None or not any(m.groups()):
        raise ValueError(
            f"{value!r} is not a duration; write a number with a unit, e.g. '90s', '30m', '2h', "
            "'1d' or '1h30m'"
        )
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return dt.timedelta(days=d, hours=h, minutes=mi, seconds=s)


def format_duration(value: dt.timedelta) -> str:
    """Render a timedelta the way a campaign file writes it (``1h30m``; ``0s`` for zero)."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts)


_TIME_RE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _parse_time_of_day(value: object) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        m = _TIME_RE.match(value.strip())
        if m:
            hh, mm = int(m.group(1)), int(m.group(2))
            if hh == 24 and mm == 0:
                return dt.time(0, 0)  # "24:00" is midnight at the end of the day
            if hh < 24:
                return dt.time(hh, mm)
    raise ValueError(
        f"{value!r} is not a time of day; write 'HH:MM' in 24-hour form, quoted, "
        "e.g. '22:00' or '05:30' ('24:00' means the end of the day)"
    )


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda v: format_duration(v), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$",
            "description": "a duration such as '90s', '30m', '2h', '1d', '1h30m'",
        }
    ),
]
"""A duration written with units (``30m``), parsed at load into a ``timedelta``."""

TimeOfDay = Annotated[
    dt.time,
    BeforeValidator(_parse_time_of_day),
    PlainSerializer(lambda v: f"{v:%H:%M}", return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$",
            "description": "local time of day 'HH:MM' (24-hour; '24:00' = end of day)",
        }
    ),
]
"""A local time of day written ``"HH:MM"``."""

Percent = Annotated[float, Field(gt=0, le=100)]
"""A percentage, 0 < p <= 100."""


class Weekday(enum.StrEnum):
    """A day of the week as written in a window's ``days`` list."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def iso(self) -> int:
        """ISO weekday number (Monday = 1 ... Sunday = 7)."""
        return list(Weekday).index(self) + 1


_DAY_SHORTCUTS: Final[dict[str, list[str]]] = {
    "daily": [d.value for d in Weekday],
    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "weekends": ["sat", "sun"],
}


def _expand_days(value: object) -> object:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _DAY_SHORTCUTS:
            return _DAY_SHORTCUTS[key]
        raise ValueError(
            f"{value!r} is not a day list; use 'daily', 'weekdays', 'weekends' or a list "
            "such as [mon, tue, fri]"
        )
    if isinstance(value, list):
        return [_FULL_DAYS.get(v.strip().lower(), v) if isinstance(v, str) else v for v in value]
    return value


_FULL_DAYS: Final[dict[str, str]] = {
    **{d.value: d.value for d in Weekday},
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}


class ExecuteMode(enum.StrEnum):
    """When the platform runs each task (each platform says which it supports)."""

    NOW = "now"
    """Run at once (the engine still submits only inside an allowed window)."""
    DEVICE_ONLINE = "device_online"
    """Run when each device next comes online (for sleepy NB-IoT devices)."""
    WINDOW = "window"
    """Platform-side custom window: the current allowed window, sent as UTC start/end."""

    @property
    def execute_type(self) -> ExecuteType:
        """The platform-neutral execute type (``window`` is ``custom``)."""
        return ExecuteType.CUSTOM if self is ExecuteMode.WINDOW else ExecuteType(self.value)


class FailureKind(enum.StrEnum):
    """How a device's upgrade ended badly (the platform's final subtask statuses)."""

    FAIL = "fail"
    TIMEOUT = "timeout"
    STOP = "stop"


class BreachAction(enum.StrEnum):
    """What the engine does when a threshold trips."""

    HALT = "halt"
    """Stop submitting; the campaign ends halted (resume by hand)."""
    PAUSE = "pause"
    """Stop submitting and wait for an operator's approval to continue."""
    ROLLBACK = "rollback"
    """Halt, then install the ``rollback`` package on devices that took the new version."""


class ThresholdScope(enum.StrEnum):
    """Which devices the failure limits count."""

    WAVE = "wave"
    """Finished devices of the current wave only."""
    CAMPAIGN = "campaign"
    """All finished devices of the campaign so far."""


class Connectivity(enum.StrEnum):
    """A device's connectivity as the platform's inventory reports it (each adapter maps
    its own statuses onto these)."""

    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    INACTIVE = "INACTIVE"
    ABNORMAL = "ABNORMAL"


# --------------------------------------------------------------------------- base model


class _Model(BaseModel):
    """Frozen, no unknown keys; cross-field rules in ``_issues`` (relative locations)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    def _issues(self) -> list[Issue]:
        return []

    @model_validator(mode="after")
    def _run_checks(self, info: ValidationInfo) -> Any:
        if isinstance(info.context, dict) and info.context.get(DEFER_CHECKS):
            return self
        issues = self._issues()
        if issues:
            raise ValueError("; ".join(i.render() for i in issues))
        return self


def iter_issues(model: BaseModel, loc: Loc = ()) -> Iterator[Issue]:
    """All cross-field issues of ``model`` and its sub-models, with absolute locations."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from iter_issues(value, (*loc, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from iter_issues(item, (*loc, name, i))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    k = key.value if isinstance(key, enum.Enum) else str(key)
                    yield from iter_issues(item, (*loc, name, k))
    if isinstance(model, _Model):
        for issue in model._issues():
            yield Issue((*loc, *issue.loc), issue.message)


# --------------------------------------------------------------------------- package


class PackageRef(_Model):
    """A version package on the platform: by ``file_id``, or by a selector of ``version``
    plus optional ``device_type``/``model``/``manufacturer_name`` that must match exactly
    one package of the campaign's kind. With ``file_id`` the other fields, when given,
    are assertions checked against the package."""

    file_id: str | None = Field(
        default=None, min_length=1, description="The package's file id on the platform."
    )
    version: str | None = Field(
        default=None, min_length=1, description="Package version (selector)."
    )
    device_type: str | None = Field(
        default=None, min_length=1, description="Device type the package is for."
    )
    model: str | None = Field(default=None, min_length=1, description="Device model.")
    manufacturer_name: str | None = Field(
        default=None, min_length=1, description="Manufacturer name."
    )

    def _issues(self) -> list[Issue]:
        if self.file_id is None and self.version is None:
            return [Issue((), "give either file_id or a selector with version (not neither)")]
        if self.file_id is not None and self.version is not None:
            return [
                Issue(
                    ("version",),
                    "give either file_id or version, not both (file_id names one package; "
                    "version selects one)",
                )
            ]
        return []

    def describe(self) -> str:
        """A short human description (``fileId abc`` or ``version 2.1 for WaterMeter/WM-1``)."""
        if self.file_id:
            return f"fileId {self.file_id}"
        what = "/".join(x for x in (self.device_type, self.model, self.manufacturer_name) if x)
        return f"version {self.version}" + (f" for {what}" if what else "")


# --------------------------------------------------------------------------- targets


class GroupRef(_Model):
    """A device group by ``name`` or ``id`` (exactly one). ``device_type``/``model``/
    ``manufacturer_name`` state what the group holds (some platforms need them for
    group tasks); when given, they must match the package, and members that differ are skipped."""

    name: str | None = Field(default=None, min_length=1, description="Group name.")
    id: str | None = Field(default=None, min_length=1, description="Group id on the platform.")
    device_type: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)
    manufacturer_name: str | None = Field(default=None, min_length=1)

    def _issues(self) -> list[Issue]:
        if (self.name is None) == (self.id is None):
            return [Issue((), "name the group by exactly one of name or id")]
        return []

    @property
    def label(self) -> str:
        """The name, or ``id:<id>``."""
        return self.name if self.name is not None else f"id:{self.id}"


def _upper_list(value: object) -> object:
    if isinstance(value, list):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class TargetsSpec(_Model):
    """Which devices the campaign upgrades: the union of ``groups``, ``devices`` and
    ``devices_file``, minus ``exclude``/``exclude_file``; each device appears once."""

    groups: list[GroupRef] = Field(default_factory=list, description="Device groups.")
    devices: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Explicit device IDs."
    )
    devices_file: str | None = Field(
        default=None,
        min_length=1,
        description="File of device IDs, one per line ('#' comments); relative to the campaign "
        "file.",
    )
    exclude: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Device IDs never to upgrade."
    )
    exclude_file: str | None = Field(
        default=None, min_length=1, description="File of device IDs to exclude."
    )
    preflight: bool = Field(
        default=True,
        description="Read the device inventory before planning (versions, model, status).",
    )
    skip_up_to_date: bool = Field(
        default=True, description="Skip devices already on the target version (needs preflight)."
    )
    check_compatibility: bool = Field(
        default=True,
        description="Skip devices whose type/model/manufacturer differ from the package "
        "(needs preflight).",
    )
    connectivity: Annotated[list[Connectivity], BeforeValidator(_upper_list)] | None = Field(
        default=None,
        description="Only devices with one of these statuses, e.g. [ONLINE]; null = any "
        "(needs preflight).",
    )

    def _issues(self) -> list[Issue]:
        out: list[Issue] = []
        if not self.groups and not self.devices and self.devices_file is None:
            out.append(Issue((), "name at least one of groups, devices or devices_file"))
        if not self.preflight:
            for key, on in (
                ("skip_up_to_date", self.skip_up_to_date),
                ("check_compatibility", self.check_compatibility),
                ("connectivity", self.connectivity is not None),
            ):
                if on:
                    out.append(
                        Issue(
                            (key,),
                            f"{key} needs the inventory pre-flight; set it to false/null or "
                            "set preflight: true",
                        )
                    )
        if self.connectivity is not None and not self.connectivity:
            out.append(Issue(("connectivity",), "an empty list would skip every device; use null"))
        seen: dict[str, int] = {}
        for i, g in enumerate(self.groups):
            if g.label in seen:
                out.append(Issue(("groups", i), f"group {g.label} is listed twice"))
            seen.setdefault(g.label, i)
        return out


# --------------------------------------------------------------------------- waves


class WaveSpec(_Model):
    """One wave. Sizes are CUMULATIVE: ``percent: 50`` means that by the end of this wave
    50 % of all eligible devices have been targeted. Only the first wave (the canary) may
    use ``count`` (that many devices) instead; the last wave must be ``percent: 100``."""

    name: str | None = Field(
        default=None, min_length=1, description="Label; default 'canary' / 'wave-N'."
    )
    count: int | None = Field(default=None, ge=1, description="First wave only: this many devices.")
    percent: Percent | None = Field(
        default=None,
        description="Cumulative share of all eligible devices targeted by the end of the wave.",
    )
    approval: bool = Field(
        default=False, description="Wait for an operator's approval before the wave starts."
    )
    soak: Duration = Field(
        default=dt.timedelta(0), description="Wait this long after the wave before the next."
    )
    success_percent: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None, description="Overrides thresholds.wave_success_percent for this wave."
    )

    def _issues(self) -> list[Issue]:
        if (self.count is None) == (self.percent is None):
            return [Issue((), "size the wave with exactly one of percent (cumulative) or count")]
        return []


# --------------------------------------------------------------------------- policy


class ResubmitRule(_Model):
    """Engine resubmission of devices that ended with one failure kind: up to ``rounds``
    new tasks, the first ``backoff`` after the failure, each next one ``backoff_factor``
    times later."""

    rounds: int = Field(default=1, ge=1, le=10, description="Resubmission rounds (1..10).")
    backoff: Duration = Field(
        default=dt.timedelta(minutes=30), description="Wait before the first resubmission."
    )
    backoff_factor: float = Field(
        default=2.0, ge=1.0, le=10.0, description="Multiplier of the wait per round."
    )


class PolicySpec(_Model):
    """How tasks run on the platform and how many the engine keeps in flight."""

    execute: ExecuteMode = Field(
        default=ExecuteMode.NOW, description="now | device_online | window."
    )
    platform_retries: int | None = Field(
        default=None, ge=1, le=5, description="Platform-side retries 1..5; null = none."
    )
    task_timeout: Duration = Field(
        default=dt.timedelta(hours=24),
        description="A task still running this long after submission counts as timed out.",
    )
    poll_interval: Duration = Field(
        default=dt.timedelta(minutes=5), description="Time between progress polling rounds."
    )
    max_devices_per_task: int | None = Field(
        default=None,
        ge=1,
        description="Devices per platform task (chunk size); null = the platform's largest "
        "task. Checked against the platform's limit at plan and run time.",
    )
    max_inflight_tasks: int = Field(
        default=20, ge=1, description="Unfinished tasks at most at any time."
    )
    max_inflight_devices: int | None = Field(
        default=None, ge=1, description="Devices in unfinished tasks at most; null = no cap."
    )
    resubmit: dict[FailureKind, ResubmitRule] = Field(
        default_factory=dict,
        description="Per failure kind (fail, timeout, stop): resubmission rounds and backoff.",
    )

    @field_validator("resubmit", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:
        return {} if v is None else v

    def _issues(self) -> list[Issue]:
        out: list[Issue] = []
        if self.poll_interval < dt.timedelta(seconds=10):
            out.append(Issue(("poll_interval",), "must be at least 10s (API budget)"))
        if self.task_timeout < dt.timedelta(minutes=5):
            out.append(Issue(("task_timeout",), "must be at least 5m"))
        if (
            self.max_inflight_devices is not None
            and self.max_devices_per_task is not None
            and self.max_inflight_devices < self.max_devices_per_task
        ):
            out.append(
                Issue(
                    ("max_inflight_devices",),
                    f"{self.max_inflight_devices} is below max_devices_per_task "
                    f"({self.max_devices_per_task}); no full task could ever be in flight",
                )
            )
        return out


# --------------------------------------------------------------------------- windows


class WindowSpec(_Model):
    """A weekly allowed window in the campaign's timezone: opens at ``start`` on each of
    ``days`` and closes at ``end`` (the next day when ``end`` <= ``start``: it crosses
    midnight; equal times mean 24 hours). The platform's shortest window is checked at
    plan and run time."""

    days: Annotated[list[Weekday], BeforeValidator(_expand_days)] = Field(
        default_factory=lambda: list(Weekday),
        min_length=1,
        description="Days the window OPENS on: a list like [mon, tue] or daily/weekdays/weekends.",
    )
    start: TimeOfDay = Field(description="Local opening time 'HH:MM'.")
    end: TimeOfDay = Field(description="Local closing time 'HH:MM' ('24:00' = midnight).")

    @property
    def length(self) -> dt.timedelta:
        """Nominal length (wall clock; a DST change makes a real window an hour off)."""
        s = self.start.hour * 60 + self.start.minute
        e = self.end.hour * 60 + self.end.minute
        minutes = (e - s) % (24 * 60) or 24 * 60
        return dt.timedelta(minutes=minutes)

    def _issues(self) -> list[Issue]:
        out: list[Issue] = []
        if len(set(self.days)) != len(self.days):
            out.append(Issue(("days",), "a day is listed twice"))
        return out


class BlackoutSpec(_Model):
    """Local calendar days when nothing is submitted: one ``date``, or ``start``..``end``
    inclusive. A window running into a blackout day closes at its midnight."""

    date: dt.date | None = Field(default=None, description="A single blackout day.")
    start: dt.date | None = Field(default=None, description="First day of a range.")
    end: dt.date | None = Field(default=None, description="Last day of a range (inclusive).")
    reason: str | None = Field(default=None, description="Why (shown in plans).")

    @field_validator("date", "start", "end", mode="before")
    @classmethod
    def _plain_date(cls, v: object) -> object:
        if isinstance(v, dt.datetime):
            raise ValueError("give a calendar date 'YYYY-MM-DD' (blackouts are whole days)")
        return v

    def _issues(self) -> list[Issue]:
        if self.date is not None:
            if self.start is not None or self.end is not None:
                return [Issue(("date",), "give either date or start/end, not both")]
            return []
        if self.start is None or self.end is None:
            return [Issue((), "give date, or both start and end")]
        if self.end < self.start:
            return [Issue(("end",), f"end {self.end} is before start {self.start}")]
        return []

    @property
    def first(self) -> dt.date:
        """First blacked-out day."""
        d = self.date or self.start
        assert d is not None
        return d

    @property
    def last(self) -> dt.date:
        """Last blacked-out day (inclusive)."""
        d = self.date or self.end
        assert d is not None
        return d


class InstallWindowSpec(_Model):
    """Daily hours, in the campaign's timezone, in which devices may *install* what they
    downloaded in the allowed window, on platforms that keep the two apart. ``end`` is
    after ``start`` on the same day ('24:00' = midnight); it cannot cross midnight."""

    start: TimeOfDay = Field(description="Local time installing may begin 'HH:MM'.")
    end: TimeOfDay = Field(description="Local time installing must stop 'HH:MM' ('24:00').")

    def _end_minutes(self) -> int:
        e = self.end.hour * 60 + self.end.minute
        return e or 24 * 60

    def _issues(self) -> list[Issue]:
        if self._end_minutes() <= self.start.hour * 60 + self.start.minute:
            return [
                Issue(
                    ("end",),
                    f"the install window {self.start:%H:%M}-{self.end:%H:%M} must end after "
                    "it starts on the same day (it cannot cross midnight)",
                )
            ]
        return []

    def occurrence(self, after: dt.datetime, timezone: str) -> tuple[dt.datetime, dt.datetime]:
        """The first daily install window (UTC instants) that ends after ``after``."""
        tz = zoneinfo.ZoneInfo(timezone)
        day = after.astimezone(tz).date() - dt.timedelta(days=1)
        while True:
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
            start = dt.datetime.combine(day, self.start, tzinfo=tz)
            end = midnight + dt.timedelta(minutes=self._end_minutes())
            end = end.astimezone(dt.UTC).astimezone(tz)  # wall-clock minutes, DST-aware
            if end > after:
                return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
            day += dt.timedelta(days=1)


class WindowsSpec(_Model):
    """When the engine may submit: weekly ``allowed`` windows (none = always) minus
    ``blackouts``, evaluated in ``timezone`` (IANA name, DST-aware); optionally separate
    daily ``install`` hours."""

    timezone: str = Field(default="UTC", description="IANA timezone, e.g. Europe/Berlin.")
    allowed: list[WindowSpec] = Field(
        default_factory=list, description="Weekly windows; empty = always allowed."
    )
    blackouts: list[BlackoutSpec] = Field(
        default_factory=list, description="Blacked-out dates or date ranges."
    )
    install: InstallWindowSpec | None = Field(
        default=None,
        description="Daily install hours apart from the download window (execute: window, "
        "platforms with separate install windows only); null = install in the window.",
    )

    @field_validator("timezone")
    @classmethod
    def _tz_exists(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {v!r}; use an IANA name such as 'Europe/Berlin', "
                "'America/New_York' or 'UTC'"
            ) from None
        return v

    def schedule(self) -> WindowSchedule:
        """The planner's view of these windows."""
        return WindowSchedule(
            self.timezone,
            tuple(
                WeeklyWindow(frozenset(d.iso for d in w.days), w.start, w.end) for w in self.allowed
            ),
            tuple((b.first, b.last) for b in self.blackouts),
        )


# --------------------------------------------------------------------------- thresholds


class ThresholdsSpec(_Model):
    """When to stop: failure limits (either trips), checked once ``min_finished`` devices
    have finished, and the success share a wave needs before the next may start."""

    max_failure_percent: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=10.0, description="Trip when failed/finished exceeds this percentage."
    )
    max_failures: int | None = Field(
        default=None, ge=0, description="Trip when the failed device count exceeds this."
    )
    min_finished: int = Field(
        default=10, ge=1, description="Evaluate failure limits only after this many finished."
    )
    scope: ThresholdScope = Field(
        default=ThresholdScope.CAMPAIGN, description="Count the current wave or the campaign."
    )
    failure_kinds: list[FailureKind] = Field(
        default_factory=lambda: [FailureKind.FAIL, FailureKind.TIMEOUT],
        min_length=1,
        description="Which final statuses count as failures.",
    )
    wave_success_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        default=90.0, description="Success share a wave must reach before the next starts."
    )
    on_breach: BreachAction = Field(
        default=BreachAction.HALT, description="halt | pause | rollback."
    )

    def _issues(self) -> list[Issue]:
        if self.max_failure_percent is None and self.max_failures is None:
            return [
                Issue(
                    ("max_failure_percent",),
                    "set max_failure_percent or max_failures: without either no failure "
                    "rate ever halts the campaign",
                )
            ]
        return []


# --------------------------------------------------------------------------- consent


class ConsentTimeoutAction(enum.StrEnum):
    """What happens to a device whose owner has not answered by ``answer_timeout``."""

    SKIP = "skip"
    """Leave it out of the campaign (counted as expired, not as a failure)."""
    PROCEED = "proceed"
    """Upgrade it anyway, as if confirmed."""
    FAIL = "fail"
    """Count it as a failed device (it counts toward the failure thresholds)."""


class ConsentDelivery(enum.StrEnum):
    """Who installs the package once the owner agreed."""

    PLATFORM = "platform"
    """A platform upgrade task, as without consent."""
    APP = "app"
    """The owner's app downloads and installs it (e.g. Bluetooth devices) and reports."""


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ConsentSpec(_Model):
    """End users in the loop: each device's owner confirms, appoints or cancels the upgrade
    through the consent API before the device is sent (docs/consent-api.md)."""

    required: bool = Field(
        default=True,
        description="True: a device is sent only once its owner consented. False: owners may "
        "decline or appoint, and an unanswered device proceeds at the answer timeout.",
    )
    period: Duration = Field(
        default=dt.timedelta(days=14),
        description="How long the plan is offered, from the campaign's start; appointments "
        "must end inside it.",
    )
    answer_timeout: Duration = Field(
        default=dt.timedelta(days=7), description="How long to wait for an owner's answer."
    )
    on_timeout: ConsentTimeoutAction | None = Field(
        default=None,
        description="skip | proceed | fail for an unanswered device (default: skip when "
        "required, proceed otherwise).",
    )
    declines_count: bool = Field(
        default=False, description="Whether declines count toward the failure thresholds."
    )
    max_declined_percent: Annotated[float, Field(ge=0, le=100)] | None = Field(
        default=None,
        description="Own limit: halt when declined/answered devices exceed this percentage.",
    )
    delivery: ConsentDelivery = Field(
        default=ConsentDelivery.PLATFORM, description="platform | app."
    )
    package_url: str | None = Field(
        default=None,
        min_length=1,
        description="delivery: app only: where the app downloads the package (https URL).",
    )
    package_sha256: str | None = Field(
        default=None, description="delivery: app only: the package's SHA-256 (64 hex digits)."
    )

    @property
    def timeout_action(self) -> ConsentTimeoutAction:
        """``on_timeout``, or its default (skip when required, proceed otherwise)."""
        if self.on_timeout is not None:
            return self.on_timeout
        return ConsentTimeoutAction.SKIP if self.required else ConsentTimeoutAction.PROCEED

    def _issues(self) -> list[Issue]:
        out: list[Issue] = []
        if self.answer_timeout > self.period:
            out.append(
                Issue(
                    ("answer_timeout",),
                    f"the answer timeout ({format_duration(self.answer_timeout)}) is longer "
                    f"than the plan period ({format_duration(self.period)}); shorten it or "
                    "lengthen period",
                )
            )
        if self.period < dt.timedelta(hours=1):
            out.append(
                Issue(("period",), "the plan period must be at least 1h (an appointment lasts 1h)")
            )
        if not self.required and self.on_timeout not in (None, ConsentTimeoutAction.PROCEED):
            out.append(
                Issue(
                    ("on_timeout",),
                    f"on_timeout: {self.on_timeout} needs required: true; without required "
                    "consent an unanswered device proceeds",
                )
            )
        if self.declines_count and self.max_declined_percent is not None:
            out.append(
                Issue(
                    ("max_declined_percent",),
                    "max_declined_percent is the declines' own limit, used only when "
                    "declines_count is false; remove one of them",
                )
            )
        if self.delivery is ConsentDelivery.APP:
            if self.package_url is None or not self.package_url.startswith("https://"):
                out.append(
                    Issue(
                        ("package_url",),
                        "delivery: app needs package_url, an https:// URL the app downloads "
                        "the package from",
                    )
                )
            if self.package_sha256 is None or not _SHA256_RE.match(self.package_sha256):
                out.append(
                    Issue(
                        ("package_sha256",),
                        "delivery: app needs package_sha256, the package's SHA-256 as 64 "
                        "lowercase hex digits",
                    )
                )
        else:
            for key in ("package_url", "package_sha256"):
                if getattr(self, key) is not None:
                    out.append(
                        Issue(
                            (key,),
                            f"{key} is for delivery: app only; remove it or set delivery: app",
                        )
                    )
        return out


# --------------------------------------------------------------------------- platform


class PlatformSpec(_Model):
    """Which platform the campaign runs on: a registered platform ``type`` and one of its
    connection ``profile``s (the platform's settings say where a profile is configured)."""

    type: str = Field(description="Platform type, one of the registered types.")
    profile: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_]+$",
        description="Connection profile of that platform; 'default' when absent.",
    )

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        known = known_platform_types()
        if v not in known:
            raise ValueError(
                f"unknown platform type {v!r}; use one of {', '.join(known)} "
                "(e.g. platform: {type: " + (known[0] if known else "TYPE") + ", profile: prod})"
            )
        return v

    def __str__(self) -> str:
        return f"{self.type}:{self.profile}"


def _legacy_platform(value: object) -> object:
    """The old form ``platform: prod`` is a profile of the default platform type."""
    if isinstance(value, str):
        return {"type": DEFAULT_PLATFORM_TYPE, "profile": value}
    return value


def _same_platform(old: Any, new: Any) -> bool:
    """A stored snapshot's ``platform`` in the old plain-string form (``"prod"``) names the
    same platform as ``{"type": DEFAULT_PLATFORM_TYPE, "profile": "prod"}``."""
    return (
        isinstance(old, str)
        and isinstance(new, dict)
        and new == {"type": DEFAULT_PLATFORM_TYPE, "profile": old}
    )


# --------------------------------------------------------------------------- campaign

_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class CampaignSpec(_Model):
    """A campaign file: what to install, on which devices, in which waves, when, and when
    to stop."""

    name: str = Field(
        pattern=_NAME_RE,
        description="Unique campaign name: lower case letters, digits, '.', '_', '-' (<= 63).",
    )
    description: str | None = Field(default=None, description="Free text for humans.")
    platform: Annotated[PlatformSpec, BeforeValidator(_legacy_platform)] = Field(
        default_factory=lambda: PlatformSpec(type=DEFAULT_PLATFORM_TYPE),
        description="The platform: {type: TYPE, profile: NAME}; the default platform type's "
        "'default' profile when absent.",
    )
    kind: PackageKind = Field(description="firmware | software.")
    seed: int | None = Field(
        default=None, description="Extra seed for the device shuffle (with the name)."
    )
    package: PackageRef = Field(description="The package to install.")
    rollback: PackageRef | None = Field(
        default=None, description="Package to reinstall on a rollback (the previous version)."
    )
    targets: TargetsSpec = Field(description="Which devices.")
    waves: list[WaveSpec] = Field(min_length=1, description="Canary first, last at 100 %.")
    policy: PolicySpec = Field(default_factory=PolicySpec, description="Task execution.")
    windows: WindowsSpec | None = Field(
        default=None, description="Allowed windows and blackouts; null = always allowed."
    )
    thresholds: ThresholdsSpec = Field(default_factory=ThresholdsSpec, description="Limits.")
    consent: ConsentSpec | None = Field(
        default=None, description="Owners confirm, appoint or cancel first; null = no consent."
    )

    @property
    def shuffle_seed(self) -> str:
        """The planner's seed: the campaign name plus the optional ``seed``."""
        return f"{self.name}:{self.seed if self.seed is not None else ''}"

    def schedule(self) -> WindowSchedule:
        """When submitting is allowed (always, in UTC, without a ``windows`` section)."""
        return self.windows.schedule() if self.windows is not None else WindowSchedule()

    def wave_targets(self) -> list[WaveTarget]:
        """The waves as the planner takes them (cumulative sizes)."""
        return [
            WaveTarget(self.wave_name(i), count=w.count, percent=w.percent)
            for i, w in enumerate(self.waves)
        ]

    def wave_success_percent(self, index: int) -> float:
        """Success share wave ``index`` must reach before the next starts."""
        w = self.waves[index]
        if w.success_percent is not None:
            return w.success_percent
        return self.thresholds.wave_success_percent

    def wave_name(self, index: int) -> str:
        """The display name of wave ``index`` (``canary`` for a first wave sized by count
        or below 100 %, then ``wave-N``)."""
        w = self.waves[index]
        if w.name:
            return w.name
        if index == 0 and len(self.waves) > 1:
            return "canary"
        return f"wave-{index + 1}"

    def _issues(self) -> list[Issue]:
        out: list[Issue] = []
        if (
            self.windows is not None
            and self.windows.install is not None
            and self.policy.execute is not ExecuteMode.WINDOW
        ):
            out.append(
                Issue(
                    ("windows", "install"),
                    "install hours are sent with each task's window: they need "
                    f"policy.execute: window, not {self.policy.execute.value}",
                )
            )
        prev: float | None = None
        for i, w in enumerate(self.waves):
            if w.count is not None and i > 0:
                out.append(
                    Issue(
                        ("waves", i, "count"),
                        "only the first wave (the canary) may be sized by count; later "
                        "waves use percent (cumulative share of all devices)",
                    )
                )
            if w.percent is not None:
                if prev is not None and w.percent <= prev:
                    out.append(
                        Issue(
                            ("waves", i, "percent"),
                            f"{w.percent:g} is not above the previous wave's {prev:g}; wave "
                            "percentages are cumulative (share of all devices targeted by the "
                            "end of the wave), so they must increase",
                        )
                    )
                prev = w.percent
        last = self.waves[-1]
        if last.percent != 100:
            i = len(self.waves) - 1
            what = f"percent: {last.percent:g}" if last.percent is not None else "count"
            loc: Loc = ("waves", i, "percent") if last.percent is not None else ("waves", i)
            out.append(
                Issue(
                    loc,
                    f"the last wave has {what}; it must be percent: 100 (cumulative) so "
                    "every eligible device is covered",
                )
            )
        names = [self.wave_name(i) for i in range(len(self.waves))]
        for i, n in enumerate(names):
            if names.index(n) != i:
                out.append(Issue(("waves", i, "name"), f"wave name {n!r} is used twice"))
        if self.thresholds.on_breach is BreachAction.ROLLBACK and self.rollback is None:
            out.append(
                Issue(
                    ("thresholds", "on_breach"),
                    "on_breach: rollback needs a rollback package; add 'rollback:' with "
                    "file_id or version, or use halt / pause",
                )
            )
        if self.policy.execute is ExecuteMode.WINDOW and (
            self.windows is None or not self.windows.allowed
        ):
            out.append(
                Issue(
                    ("policy", "execute"),
                    "execute: window needs windows.allowed (the platform gets the current "
                    "window as the task's start/end)",
                )
            )
        if (
            self.consent is not None
            and self.consent.delivery is ConsentDelivery.APP
            and self.policy.resubmit
        ):
            out.append(
                Issue(
                    ("policy", "resubmit"),
                    "resubmit rules resend platform tasks; with consent.delivery: app the "
                    "owners retry through their app, so remove policy.resubmit",
                )
            )
        if self.rollback is not None and self.rollback == self.package:
            out.append(Issue(("rollback",), "the rollback package is the package itself"))
        return out


# --------------------------------------------------------------------------- changes mid-flight

#: The fields a started campaign may change (dotted paths; ``[*]`` is any list index;
#: a path covers everything below it). A change to one of them is applied from the
#: engine's next round and recorded in a ``spec_changed`` event with old and new values.
#: Everything else (name, platform, kind, seed, package, rollback, targets except the
#: exclusions, the waves' sizes/names/approval, the task policy) decides what is sent to
#: which device, so a started campaign refuses a change to it unless the operator accepts
#: it explicitly (``fleetwave run FILE --accept-spec-change``, a ``spec_change_accepted``
#: event with who and when).
MUTABLE_FIELDS: Final[tuple[str, ...]] = (
    "description",
    "policy.poll_interval",
    "policy.max_inflight_tasks",
    "policy.max_inflight_devices",
    "thresholds",
    "waves[*].success_percent",
    "windows",
    "targets.exclude",
    "targets.exclude_file",
)

#: The fields that name a file of device IDs: a spec snapshot holds their content
#: fingerprint (see :func:`fleetwave.spec.loader.spec_snapshot`), never their path.
IDS_FILE_FIELDS: Final[tuple[str, ...]] = ("targets.devices_file", "targets.exclude_file")

_IDS_FINGERPRINT_RE = re.compile(r"^ids:\d+:sha256:[0-9a-f]{64}$")
_MUTABLE_RE = re.compile(
    "^(?:"
    + "|".join(re.escape(p).replace(r"\[\*\]", r"\[\d+\]") for p in MUTABLE_FIELDS)
    + r")(?:$|[.\[])"
)

#: List values longer than this are summarised in change records (added/removed, first N).
_LIST_SHOWN: Final = 20


def is_ids_fingerprint(value: object) -> bool:
    """True for an ids-file content fingerprint (``ids:<count>:sha256:<hex>``)."""
    return isinstance(value, str) and bool(_IDS_FINGERPRINT_RE.match(value))


def is_mutable(field: str) -> bool:
    """True when a started campaign may change ``field`` (a dotted path, e.g.
    ``policy.poll_interval`` or ``waves[1].success_percent``); see :data:`MUTABLE_FIELDS`."""
    return bool(_MUTABLE_RE.match(field))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def immutable_part(snapshot: Any, path: str = "") -> Any:
    """The spec snapshot (``model_dump(mode="json")``) without its mutable fields: what a
    started campaign's fingerprint covers."""
    if isinstance(snapshot, dict):
        return {
            k: immutable_part(v, _join(path, k))
            for k, v in snapshot.items()
            if not is_mutable(_join(path, k))
        }
    if isinstance(snapshot, list):
        return [immutable_part(v, _join(path, i)) for i, v in enumerate(snapshot)]
    return snapshot


def spec_fingerprint(snapshot: Any) -> str:
    """SHA-256 of the canonical JSON of :func:`immutable_part` of a snapshot."""
    canonical = json.dumps(
        immutable_part(snapshot), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class FieldChange:
    """One changed field of a campaign spec: its dotted path, old and new JSON values, and
    whether a started campaign may change it."""

    __slots__ = ("field", "mutable", "new", "old")

    def __init__(self, field: str, old: Any, new: Any) -> None:
        self.field = field
        self.old = old
        self.new = new
        self.mutable = is_mutable(field)

    def __repr__(self) -> str:
        return f"FieldChange({self.field!r}, {self.old!r}, {self.new!r})"

    def as_event(self) -> dict[str, Any]:
        """The change for the event log; long lists become what was added and removed."""
        out: dict[str, Any] = {"field": self.field, "mutable": self.mutable}
        old, new = self.old, self.new
        if (isinstance(old, list) or isinstance(new, list)) and (
            len(old or []) > _LIST_SHOWN or len(new or []) > _LIST_SHOWN
        ):
            before = {json_key(v) for v in old or []}
            after = {json_key(v) for v in new or []}
            added = sorted(after - before)
            removed = sorted(before - after)
            out.update(
                added=added[:_LIST_SHOWN],
                added_count=len(added),
                removed=removed[:_LIST_SHOWN],
                removed_count=len(removed),
            )
        else:
            out.update(old=old, new=new)
        return out


def json_key(value: Any) -> str:
    """A list item as a comparable string (device IDs stay as they are)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def spec_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every field that differs between two spec snapshots, at the deepest level that
    differs (lists of mappings of the same length item by item; other lists whole).

    An old ids-file field that holds a path (a snapshot stored before fingerprints were
    content-based) is taken as unchanged: its content at the time is unknown. So is an old
    ``platform: "<profile>"`` (before platform types) against the same profile of the
    default type."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in sorted({*old, *new}, key=str):  # stable whatever the store's key order
            sub = _join(path, key)
            a, b = old.get(key), new.get(key)
            if sub == "platform" and _same_platform(a, b):
                continue
            if (
                sub in IDS_FILE_FIELDS
                and isinstance(a, str)
                and not is_ids_fingerprint(a)
                and is_ids_fingerprint(b)
            ):
                continue
            out.extend(spec_changes(a, b, sub))
        return out
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and len(old) == len(new)
        and all(isinstance(v, dict) for v in [*old, *new])
    ):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in spec_changes(a, b, _join(path, i))
        ]
    if old == new:
        return []
    return [FieldChange(path or "(spec)", old, new)]


def spec_change_records(old: Any, new: Any) -> list[dict[str, Any]]:
    """:func:`spec_changes` as event records (``field``, ``mutable``, ``old``/``new``)."""
    return [c.as_event() for c in spec_changes(old, new)]
