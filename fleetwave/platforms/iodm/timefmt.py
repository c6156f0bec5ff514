"""The IoDM wire time format ``yyyyMMdd'T'HHmmss'Z'`` (always UTC), parsed and formatted."""

from __future__ import annotations

import datetime as dt

import pendulum

__all__ = ["format_iodm_time", "parse_iodm_time"]

_FORMAT = "%Y%m%dT%H%M%SZ"


def parse_iodm_time(value: str | None) -> pendulum.DateTime | None:
    """Parse ``20151212T121212Z`` to an aware UTC DateTime; None or blank gives None.

    Also accepts ISO 8601, which some platform versions send; anything else is a
    ``ValueError`` naming the value and the expected format.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        parsed = dt.datetime.strptime(text, _FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        try:
            iso = pendulum.parse(text)
        except (ValueError, pendulum.parsing.exceptions.ParserError) as exc:
            raise ValueError(
                f"cannot read IoDM time {value!r}: expected yyyyMMdd'T'HHmmss'Z' "
                "such as 20151212T121212Z"
            ) from exc
        if not isinstance(iso, pendulum.DateTime):
            raise ValueError(
                f"cannot read IoDM time {value!r}: it is not a date and time "
                "(expected yyyyMMdd'T'HHmmss'Z' such as 20151212T121212Z)"
            ) from None
        return iso.in_tz("UTC")
    return pendulum.instance(parsed).in_tz("UTC")


def format_iodm_time(value: dt.datetime) -> str:
    """Format an aware datetime as ``yyyyMMdd'T'HHmmss'Z'`` in UTC (sub-seconds dropped)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"IoDM times must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(dt.UTC).strftime(_FORMAT)
