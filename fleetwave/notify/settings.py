"""Settings of the push receiver, from code or ``FLEETWAVE_NOTIFY_*`` environment variables.

``HOST``/``PORT`` are where it listens (default 127.0.0.1 and a free port); ``PUBLIC_URL``
is the base URL the platform must call when that differs (NAT, a proxy, another host).
``TLS_CERT``/``TLS_KEY`` (PEM, both or neither) make it serve HTTPS only, for platforms
that post only to ``https://`` callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleetwave.errors import UserError

__all__ = ["ENV_PREFIX", "NotifySettings"]

ENV_PREFIX = "FLEETWAVE_NOTIFY_"


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Where the receiver listens, how the platform reaches it, and how it batches writes."""

    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None
    quiet_after: float = 600.0
    batch_size: int = 500
    flush_ms: int = 200
    max_queue: int = 100_000
    park_seconds: float = 5.0
    max_body_bytes: int = 65_536
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        def bad(name: str, value: object, want: str) -> UserError:
            return UserError(
                f"{ENV_PREFIX}{name} is {value!r}: it must be {want}",
                hint=f"fix the variable or the NotifySettings({name.lower()}=...) argument",
            )

        if not self.host.strip():
            raise bad("HOST", self.host, "an address to listen on such as 127.0.0.1")
        if not 0 <= self.port <= 65535:
            raise bad("PORT", self.port, "a TCP port 0..65535 (0 picks a free one)")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise bad("PUBLIC_URL", self.public_url, "an http(s)://host[:port][/path] URL")
            if parts.query or parts.fragment:
                raise bad("PUBLIC_URL", self.public_url, "a URL without ?query or #fragment")
        elif self.host in ("0.0.0.0", "::", ""):
            raise UserError(
                f"{ENV_PREFIX}HOST={self.host} listens on every interface, so the callback "
                "address the platform must call is unknown",
                hint=f"set {ENV_PREFIX}PUBLIC_URL, e.g. http://engine.example.net:8790",
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserError(
                f"{ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY go together: the receiver "
                "serves HTTPS with both, plain HTTP with neither",
                hint="set both (PEM certificate chain and its unencrypted key) or unset both",
            )
        for name, path in (("TLS_CERT", self.tls_cert), ("TLS_KEY", self.tls_key)):
            if path is not None and not os.path.isfile(path):
                raise bad(name, path, "a readable PEM file")
        if self.quiet_after <= 0:
            raise bad("QUIET_AFTER", self.quiet_after, "a positive number of seconds")
        if self.batch_size < 1:
            raise bad("BATCH_SIZE", self.batch_size, "at least 1")
        if self.flush_ms < 1:
            raise bad("FLUSH_MS", self.flush_ms, "at least 1 millisecond")
        if self.max_queue < 1:
            raise bad("MAX_QUEUE", self.max_queue, "at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifySettings:
        """Read ``FLEETWAVE_NOTIFY_*``; unset variables keep their defaults."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        def number(name: str, kind: type[int] | type[float]) -> None:
            raw = get(name)
            if raw is None:
                return
            try:
                kwargs[name.lower()] = kind(raw)
            except ValueError:
                raise UserError(
                    f"{ENV_PREFIX}{name} is {raw!r}: it must be a number",
                    hint="unset it to use the default",
                ) from None

        if (host := get("HOST")) is not None:
            kwargs["host"] = host
        if (url := get("PUBLIC_URL")) is not None:
            kwargs["public_url"] = url
        for name in ("TLS_CERT", "TLS_KEY"):
            if (path := get(name)) is not None:
                kwargs[name.lower()] = path
        number("PORT", int)
        number("QUIET_AFTER", float)
        number("BATCH_SIZE", int)
        number("FLUSH_MS", int)
        number("MAX_QUEUE", int)
        return cls(**kwargs)  # type: ignore[arg-type]
