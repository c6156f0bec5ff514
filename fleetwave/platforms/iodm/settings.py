"""Connection settings of one IoDM application, from code or from ``IODM_*`` environment variables.

Profile ``default`` reads ``IODM_BASE_URL``, ``IODM_APP_ID``, ``IODM_SECRET`` ...; profile
``NAME`` reads ``IODM_NAME_BASE_URL`` etc. Without ``IODM_BASE_URL`` the default profile
points at the embedded simulator, but only with the simulator's own demo credentials (or
none): real credentials are never sent to whatever listens on the simulator's address.
A base URL carrying ``user:password@`` is refused. The secret is a ``SecretStr`` and
never printed.
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

__all__ = [
    "SIM_DEFAULT_APP_ID",
    "SIM_DEFAULT_BASE_URL",
    "SIM_DEFAULT_SECRET",
    "IoDMSettings",
    "env_prefix",
    "simulator_base_url",
    "without_userinfo",
]

SIM_DEFAULT_BASE_URL = "http://127.0.0.1:8743"
SIM_DEFAULT_APP_ID = "fleetwave-demo"
SIM_DEFAULT_SECRET = "fleetwave-demo-secret"  # the simulator's public demo secret, not a real one


def env_prefix(profile: str) -> str:
    """The environment variable prefix of a profile (``IODM_`` or ``IODM_NAME_``)."""
    return "IODM_" if profile == "default" else f"IODM_{profile.upper()}_"


def simulator_base_url(profile: str = "default", environ: Mapping[str, str] | None = None) -> str:
    """The base URL a profile talks to when it is a simulator (``IODM_<PROFILE>_BASE_URL``,
    else the embedded simulator's address): where ``--clock sim`` finds the clock."""
    env = os.environ if environ is None else environ
    return (env.get(env_prefix(profile) + "BASE_URL") or "").strip() or SIM_DEFAULT_BASE_URL


# environment suffix -> settings field
_ENV_FIELDS: dict[str, str] = {
    "BASE_URL": "base_url",
    "APP_ID": "app_id",
    "SECRET": "secret",
    "CA_BUNDLE": "ca_bundle",
    "CLIENT_CERT": "client_cert",
    "CLIENT_KEY": "client_key",
    "VERIFY_TLS": "verify_tls",
    "CONNECT_TIMEOUT": "connect_timeout",
    "TIMEOUT": "read_timeout",
    "RATE_LIMIT": "rate_limit",
    "PREFECT_RATE_LIMIT": "prefect_rate_limit",
    "MAX_ATTEMPTS": "max_attempts",
    "MAX_RETRY_SECONDS": "max_retry_seconds",
}


class IoDMSettings(BaseModel):
    """Everything needed to talk to one IoDM application (appId) on one platform."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="https://host:port of the northbound API, no path")
    app_id: str = Field(min_length=1)
    secret: SecretStr
    ca_bundle: Path | None = Field(default=None, description="PEM CA bundle to verify the server")
    client_cert: Path | None = Field(default=None, description="PEM client cert for mutual TLS")
    client_key: Path | None = Field(default=None, description="PEM key of client_cert")
    verify_tls: bool = True
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    rate_limit: int = Field(default=100, ge=0, description="calls a minute per app; 0 = unlimited")
    prefect_rate_limit: str | None = Field(
        default=None, description="name of a Prefect global concurrency limit with slot decay"
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        description="at most this many tries per call on transient errors (None: only the "
        "time budget limits them)",
    )
    max_retry_seconds: float = Field(
        default=300.0,
        gt=0,
        description="how long one call keeps retrying transient errors, from its first failure",
    )
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_cap: float = Field(default=30.0, gt=0)
    throttle_backoff_base: float = Field(default=3.0, gt=0)
    throttle_backoff_cap: float = Field(default=60.0, gt=0)
    max_throttle_retries: int = Field(default=10, ge=0)
    token_refresh_margin: float = Field(
        default=300.0, ge=0, description="refresh the token this many seconds before it expires"
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _no_credentials(cls, value: Any) -> Any:
        # Raised as a UserError (not a ValueError) so pydantic does not echo the input.
        if isinstance(value, str):
            refuse_userinfo(value, "base_url")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s@]+$", value):
            raise ValueError(
                f"{without_userinfo(value)!r} is not a base URL: use https://host:port without "
                "a path (http:// only for the local simulator)"
            )
        return value

    @field_validator("ca_bundle", "client_cert", "client_key")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    @model_validator(mode="after")
    def _check_mtls(self) -> IoDMSettings:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")
        return self

    @property
    def key(self) -> tuple[str, str]:
        """The rate-limit identity: one budget per (base URL, appId)."""
        return (self.base_url, self.app_id)

    def to_env(self, profile: str = "default") -> dict[str, str]:
        """The environment variables :meth:`from_env` reads back as these settings (for a
        worker or child process; the secrets are in clear: never log the result)."""
        return settings_env(self, env_prefix(profile), _ENV_FIELDS)

    @classmethod
    def from_env(
        cls, profile: str = "default", environ: Mapping[str, str] | None = None
    ) -> IoDMSettings:
        """Read a profile from the environment; raises UserError naming the bad variable."""
        env = os.environ if environ is None else environ
        values, names = read_env_fields(env, profile, env_prefix, _ENV_FIELDS, ("secret",))
        prefix = env_prefix(profile)
        if "base_url" in values:
            refuse_userinfo(values["base_url"], names["base_url"], prefix)
        else:
            if profile != "default":
                raise UserError(
                    f"platform profile {profile!r} is not configured: {prefix}BASE_URL is unset",
                    hint=f"set {prefix}BASE_URL, {prefix}APP_ID and {prefix}SECRET",
                )
            _refuse_real_credentials_for_the_simulator(values, names, prefix)
            values["base_url"] = SIM_DEFAULT_BASE_URL
            values.setdefault("app_id", SIM_DEFAULT_APP_ID)
            values.setdefault("secret", SIM_DEFAULT_SECRET)
        for field in ("app_id", "secret"):
            if field not in values:
                var = prefix + field.upper()
                raise UserError(
                    f"{var} is unset but {prefix}BASE_URL is set",
                    hint=f"set {var} to the value the platform gave the application",
                )
        try:
            return cls(**values)
        except ValidationError as exc:
            raise _user_error(exc, names, prefix) from None

    def __repr__(self) -> str:
        return f"IoDMSettings(base_url={self.base_url!r}, app_id={self.app_id!r}, secret='**')"


def without_userinfo(url: str) -> str:
    """``url`` with anything before an ``@`` (a user name, a password) replaced by ``***``.

    A base URL has no path, so every ``@`` in it belongs to credentials; cutting at the
    last one also hides a password that itself holds ``/`` or ``@``.
    """
    url = url.strip()
    if "@" not in url:
        return url
    scheme, sep, _ = url.partition("://")
    head = scheme + sep if sep else ""
    return head + "***@" + url.rsplit("@", 1)[1]


def refuse_userinfo(url: str, where: str, prefix: str = "IODM_") -> None:
    """Raise a UserError if ``url`` carries credentials; the message never shows them."""
    if "@" in url:
        raise UserError(
            f"{where} carries a user name or password ({without_userinfo(url)}); "
            "fleetwave does not accept credentials in the platform URL",
            hint=f"remove 'user:password@' from the URL and give the application's "
            f"credentials in {prefix}APP_ID and {prefix}SECRET (or {prefix}SECRET_FILE)",
        )


def _refuse_real_credentials_for_the_simulator(
    values: Mapping[str, Any], names: Mapping[str, str], prefix: str
) -> None:
    """Without a base URL only the simulator's demo credentials may go to its address."""
    demo = {"app_id": SIM_DEFAULT_APP_ID, "secret": SIM_DEFAULT_SECRET}
    real = [names[f] for f in ("app_id", "secret") if f in values and values[f] != demo[f]]
    if real:
        raise UserError(
            f"{prefix}BASE_URL is unset, so fleetwave would fall back to the local simulator "
            f"at {SIM_DEFAULT_BASE_URL}, but {' and '.join(real)} "
            f"{'holds' if len(real) == 1 else 'hold'} credentials other than the simulator's "
            "demo ones; refusing to send them there",
            hint=f"set {prefix}BASE_URL to the platform's https:// address, or unset "
            f"{prefix}APP_ID and {prefix}SECRET to use the simulator",
        )


def _user_error(exc: ValidationError, names: Mapping[str, str], prefix: str) -> UserError:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        var = names.get(field, prefix + field.upper() if field else prefix + "*")
        problems.append(f"{var}: {err['msg']}")
    return UserError(
        "invalid IoDM connection settings: " + "; ".join(problems),
        hint="fix the environment variables named (see README, Configuration)",
    )
