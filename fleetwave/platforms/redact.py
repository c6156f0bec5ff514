"""Keeps secrets and access tokens out of log records, for every platform client.

Whoever handles a secret (a platform client's credentials and tokens, the push channel's
callback token) registers it with :func:`register_secret`; :class:`RedactingFilter`
replaces those strings, and anything shaped like a bearer token or a token field, in the
formatted message before any handler sees it. Each platform package attaches the filter
to its own loggers with :func:`install_redaction`.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["REDACTED", "RedactingFilter", "install_redaction", "redact", "register_secret"]

REDACTED = "**redacted**"

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


_filter = RedactingFilter()
_installed: set[str] = set()


def install_redaction(loggers: Iterable[str]) -> None:
    """Attach the filter to each named logger once (a filter applies only to records
    created on that exact logger, so name each one)."""
    with _lock:
        names = [n for n in loggers if n not in _installed]
        _installed.update(names)
    for name in names:
        logging.getLogger(name).addFilter(_filter)
