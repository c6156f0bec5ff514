"""Keeps secrets and access tokens out of the IoDM client's log records (and httpx's).

The redaction itself is platform-neutral (:mod:`fleetwave.platforms.redact`); this module
names the loggers it must be attached to.
"""

from __future__ import annotations

from fleetwave.platforms import redact as _neutral
from fleetwave.platforms.redact import REDACTED, RedactingFilter, redact, register_secret

__all__ = ["REDACTED", "RedactingFilter", "install_redaction", "redact", "register_secret"]

# logger filters apply only to records created on that exact logger, so name each one
_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.connection_pool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "fleetwave.platforms.iodm",
    "fleetwave.platforms.iodm.client",
    "fleetwave.platforms.iodm.auth",
    "fleetwave.platforms.iodm.adapter",
    "fleetwave.platforms.iodm.limiter",
    "fleetwave.platforms.limiter",
    "fleetwave.platforms.iodm.models",
    "fleetwave.platforms.iodm.progress",
)


def install_redaction() -> None:
    """Attach the filter to the httpx/httpcore/fleetwave IoDM loggers (idempotent)."""
    _neutral.install_redaction(_LOGGERS)
