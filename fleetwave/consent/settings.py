"""Where the end-user consent API listens, from code or ``FLEETWAVE_CONSENT_*`` environment
variables: ``SERVE`` (a flow run of a consent campaign serves it: on by default), ``HOST``
and ``PORT`` (default 127.0.0.1:8780, also the defaults of ``fleetwave consent serve``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleetwave.errors import UserError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ENV_PREFIX", "ConsentServeSettings"]

ENV_PREFIX = "FLEETWAVE_CONSENT_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8780

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class ConsentServeSettings:
    """Whether flow runs serve the consent API, and on which address (port 0: any free
    one, for tests: owners could not find it)."""

    serve: bool = True
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise UserError(
                f"{ENV_PREFIX}HOST is empty: it must be an address to listen on such as "
                f"{DEFAULT_HOST}",
                hint="fix the variable or unset it",
            )
        if not 0 <= self.port <= 65535:
            raise UserError(
                f"{ENV_PREFIX}PORT is {self.port}: it must be a TCP port 0..65535",
                hint=f"fix the variable or unset it to use {DEFAULT_PORT}",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsentServeSettings:
        """Read ``FLEETWAVE_CONSENT_*``; unset variables keep their defaults."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        if (raw := get("SERVE")) is not None:
            if raw.lower() not in _TRUE + _FALSE:
                raise UserError(
                    f"{ENV_PREFIX}SERVE is {raw!r}: it must be true or false",
                    hint="false: flow runs never serve the consent API (serve it with "
                    "`fleetwave consent serve`); unset it to serve",
                )
            kwargs["serve"] = raw.lower() in _TRUE
        if (host := get("HOST")) is not None:
            kwargs["host"] = host
        if (port := get("PORT")) is not None:
            try:
                kwargs["port"] = int(port)
            except ValueError:
                raise UserError(
                    f"{ENV_PREFIX}PORT is {port!r}: it must be a number",
                    hint=f"unset it to use {DEFAULT_PORT}",
                ) from None
        return cls(**kwargs)  # type: ignore[arg-type]
