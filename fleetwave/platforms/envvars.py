"""A platform's settings read from environment variables (a profile's prefix, a field per
suffix, ``*_FILE`` for secrets) and written back as them, for a child process or a worker
the demo or a test starts; each platform names its own variables."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from fleetwave.errors import UserError

__all__ = ["read_env_fields", "settings_env"]


def read_env_fields(
    environ: Mapping[str, str],
    profile: str,
    prefix_of: Callable[[str], str],
    fields: Mapping[str, str],
    secret_fields: tuple[str, ...],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The set variables of ``profile``: (field -> value, field -> the variable it came
    from). Values are stripped, secrets kept as given; a secret ``F`` unset is read from
    the file ``PREFIX_F_FILE`` names. Raises UserError for a bad profile name or an
    unreadable file."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", profile):
        raise UserError(
            f"platform profile {profile!r} is not a valid name",
            hint=f"use letters, digits and underscores, e.g. 'prod' (reads {prefix_of('prod')}*)",
        )
    prefix = prefix_of(profile)
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for suffix, field in fields.items():
        raw = environ.get(prefix + suffix)
        if raw is not None and raw.strip() != "":
            values[field] = raw if field in secret_fields else raw.strip()
            names[field] = prefix + suffix
    for field in secret_fields:
        var = f"{prefix}{field.upper()}_FILE"
        path = environ.get(var)
        if field not in values and path:
            try:
                values[field] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UserError(
                    f"cannot read {var} {path!r}: {exc.strerror}",
                    hint="point it at a readable file holding only that value",
                ) from None
            names[field] = var
    return values, names


def settings_env(settings: BaseModel, prefix: str, fields: Mapping[str, str]) -> dict[str, str]:
    """``{prefix + suffix: value}`` for each ``fields`` entry (suffix -> field) that is set;
    secrets in clear (the caller hands them to a process, never to a log)."""
    env: dict[str, str] = {}
    for suffix, field in fields.items():
        value = getattr(settings, field)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[prefix + suffix] = str(value)
    return env
