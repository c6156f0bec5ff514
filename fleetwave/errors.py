"""The base of every error a user can hit: says what was wrong, where, and what to do.

The CLI prints a :class:`UserError` as one line (no traceback) and exits with its
``exit_code``; flows log it the same way. Platform errors live in
``fleetwave.platforms.errors``; spec errors in ``fleetwave.spec``.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error caused by input or environment that the user can fix; printed without traceback."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
