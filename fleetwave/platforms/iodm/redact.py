"""Keeps secrets and access tokens out of log records: a filter for httpx, httpcore and us.

The client registers every secret and token it handles with :func:`register_secret`; the
filter replaces those strings, and anything shaped like a bearer token or a token field,
in the formatted message before any handler sees it.
"""

from __future__ import annotations

import collections
import logging
import re
import threading

__all__ = ["REDACTED", "RedactingFilter", "install_redaction", "redact", "register_secret"]

REDACTED = "**redacted**"

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
    "fleetwave.platforms.iodm.models",
)

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",)\]]+"),
    re.compile(
        r"(?i)((?:access_?token|refresh_?token|secret|authorization)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s'\"&,)}\]]+"
    ),
    re.compile(r"(?i)((?:b')?authorization(?:')?,\s*b?')[^']+"),
)

_secrets: collections.deque[str] = collections.deque(maxlen=256)
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret or token so every later log record has it removed."""
    if value and len(value) >= 4:
        with _lock:
            if value not in _secrets:
                _secrets.append(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and token-shaped value replaced."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact` (the record is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw template only
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_installed = False
_filter = RedactingFilter()


def install_redaction() -> None:
    """Attach the filter to the httpx/httpcore/fleetwave IoDM loggers (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(_filter)
