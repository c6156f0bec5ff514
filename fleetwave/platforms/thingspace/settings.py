"""Connection settings of one ThingSpace account, from code or ``THINGSPACE_*`` variables.

Profile ``default`` reads ``THINGSPACE_BASE_URL``, ``THINGSPACE_KEY``, ...; profile ``NAME``
reads ``THINGSPACE_NAME_BASE_URL`` etc. The OAuth key and secret and the M2M user's
password are ``SecretStr`` and never printed; a base URL carrying ``user:password@`` is
refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fleetwave.errors import UserError
from fleetwave.platforms.envvars import read_env_fields, settings_env

__all__ = ["ThingSpaceSettings", "env_prefix"]


def env_prefix(profile: str) -> str:
    """The environment variable prefix of a profile (``THINGSPACE_`` or ``THINGSPACE_NAME_``)."""
    return "THINGSPACE_" if profile == "default" else f"THINGSPACE_{profile.upper()}_"


# environment suffix -> settings field
_ENV_FIELDS: dict[str, str] = {
    "BASE_URL": "base_url",
    "KEY": "key",
    "SECRET": "secret",
    "USERNAME": "username",
    "PASSWORD": "password",
    "ACCOUNT_NAME": "account_name",
    "CA_BUNDLE": "ca_bundle",
    "CLIENT_CERT": "client_cert",
    "CLIENT_KEY": "client_key",
    "CONNECT_TIMEOUT": "connect_timeout",
    "TIMEOUT": "read_timeout",
    "RATE_LIMIT": "rate_limit",
    "MAX_RETRY_SECONDS": "max_retry_seconds",
    "CAMPAIGN_DAYS": "campaign_days",
}
_SECRET_FIELDS = ("secret", "password")
_REQUIRED = ("key", "secret", "username", "password", "account_name")


class ThingSpaceSettings(BaseModel):
    """Everything needed to talk to one ThingSpace account through one API key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="https://host[:port] in front of /api, no path")
    key: str = Field(
        min_length=1, repr=False, description="the OAuth2 client key (redacted like a secret)"
    )
    secret: SecretStr = Field(description="the OAuth2 client secret")
    username: str = Field(min_length=1, description="the M2M (Connectivity Management) user")
    password: SecretStr = Field(description="the M2M user's password")
    account_name: str = Field(
        min_length=1, description="the billing account, e.g. 0000123456-00001"
    )
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify_tls: bool = True
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    rate_limit: int = Field(
        default=60, ge=0, description="calls a minute per contract (shared by the process)"
    )
    max_retry_seconds: float = Field(default=300.0, gt=0)
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_cap: float = Field(default=30.0, gt=0)
    token_refresh_margin: float = Field(
        default=300.0, ge=0, description="renew the OAuth token this long before it expires"
    )
    session_idle_seconds: float = Field(
        default=20 * 60, gt=0, description="the M2M session expires after this long unused"
    )
    session_margin: float = Field(
        default=120.0, ge=0, description="log in again this long before an idle session expires"
    )
    campaign_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="days an upgrade sent to run now may take (its endDate)",
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        if isinstance(value, str) and "@" in value:
            raise UserError(
                "the ThingSpace base URL carries a user name or password "
                f"({_without_userinfo(value)}); credentials go in their own variables",
                hint="remove 'user:password@' and set THINGSPACE_KEY/SECRET/USERNAME/PASSWORD",
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://(\[[0-9A-Fa-f:.]+\]|[^/\s@:\[\]]+)(:\d{1,5})?$", value):
            raise ValueError(
                f"{value!r} is not a base URL: use https://host[:port] without a path "
                "(fleetwave adds /api/...; http:// only for the local simulator)"
            )
        return value

    @field_validator("ca_bundle", "client_cert", "client_key")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    @model_validator(mode="after")
    def _check_mtls(self) -> ThingSpaceSettings:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")
        return self

    @property
    def limiter_key(self) -> tuple[str, str]:
        """The rate-limit identity: one budget per (base URL, key)."""
        return (self.base_url, self.key)

    def to_env(self, profile: str = "default") -> dict[str, str]:
        """The environment variables :meth:`from_env` reads back as these settings (for a
        worker or child process; the secrets are in clear: never log the result)."""
        return settings_env(self, env_prefix(profile), _ENV_FIELDS)

    @classmethod
    def from_env(
        cls, profile: str = "default", environ: Mapping[str, str] | None = None
    ) -> ThingSpaceSettings:
        """Read a profile from the environment; raises UserError naming the bad variable."""
        env = os.environ if environ is None else environ
        values, names = read_env_fields(env, profile, env_prefix, _ENV_FIELDS, _SECRET_FIELDS)
        prefix = env_prefix(profile)
        if "base_url" not in values:
            raise UserError(
                f"ThingSpace profile {profile!r} is not configured: {prefix}BASE_URL is unset",
                hint=f"set {prefix}BASE_URL, {prefix}KEY, {prefix}SECRET, {prefix}USERNAME, "
                f"{prefix}PASSWORD and {prefix}ACCOUNT_NAME (see README, Configuration)",
            )
        missing = [prefix + f.upper() for f in _REQUIRED if f not in values]
        if missing:
            raise UserError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} unset but "
                f"{prefix}BASE_URL is set",
                hint="set them to the values of the ThingSpace account and its M2M user",
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_input=False, include_url=False):
                field = str(err["loc"][0]) if err["loc"] else ""
                var = names.get(field, prefix + field.upper() if field else prefix + "*")
                problems.append(f"{var}: {err['msg']}")
            raise UserError(
                "invalid ThingSpace connection settings: " + "; ".join(problems),
                hint="fix the environment variables named (see README, Configuration)",
            ) from None

    def __repr__(self) -> str:
        return (
            f"ThingSpaceSettings(base_url={self.base_url!r}, account_name={self.account_name!r}, "
            "key='**', secret='**', password='**')"
        )


def _without_userinfo(url: str) -> str:
    url = url.strip()
    scheme, sep, _ = url.partition("://")
    return (scheme + sep if sep else "") + "***@" + url.rsplit("@", 1)[1]
