"""A platform's settings written back as the environment variables its ``from_env`` reads,
for a child process or a worker the demo or a test starts (each platform names its own)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, SecretStr

__all__ = ["settings_env"]


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
