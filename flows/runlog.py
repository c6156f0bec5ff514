"""Which engine progress events a flow run writes to its Prefect log, and how.

A person reads the flow run's log in the UI: each decision, submission and stage once,
a repeated decision only when its text changes, a failure rate that stays within its
limit (``failure rate 0.0% within 5.0% in wave 1``, every monitoring round) only when it
moved by a whole percentage point or its scope changed, a wait (``wave 1 soaking until
...``) when it starts, and the outcome once. Plain code: tests call it without Prefect.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetwave.engine.progress import ProgressEvent

__all__ = ["RunLog"]


class RunLog:
    """A progress sink that writes the lines worth reading to ``write`` (a logger's info)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.outcome_logged = False
        self._last: dict[str, str] = {}
        self._rates: dict[str, float] = {}

    def line(self, event: ProgressEvent) -> str | None:
        """The line to log for ``event``, or None (nothing new to say)."""
        text = event.message or event.stage or ""
        if event.kind == "outcome":
            if self.outcome_logged:
                return None
            self.outcome_logged = True
            return f"campaign {text or event.kind}"
        if event.kind == "round":
            # rounds are in the progress artifact; only a wait (soak, backoff) is said, once
            return self._changed("round", text) if text else None
        if event.kind not in ("decision", "submitted", "stage") or not text:
            return None
        if event.kind == "decision":
            detail = event.detail or {}
            name = str(detail.get("decision", "decision"))
            if name == "failure_threshold" and detail.get("verdict") == "continue":
                return self._rate_moved(text, detail.get("inputs") or {})
            return self._changed(f"decision:{name}", text)
        return text

    def _rate_moved(self, text: str, inputs: dict[str, object]) -> str | None:
        """A failure rate within its limit: said when it first shows, when its scope or
        limit changes, and when it moved by a whole percentage point since last said."""
        rate = inputs.get("failure_rate")
        key = f"{inputs.get('scope')}|{inputs.get('max_failure_rate')}"
        if not isinstance(rate, int | float):
            return self._changed(f"rate:{key}", text)
        last = self._rates.get(key)
        if last is not None and abs(float(rate) - last) < 0.01:
            return None
        self._rates[key] = float(rate)
        return text

    def _changed(self, key: str, text: str) -> str | None:
        if self._last.get(key) == text:
            return None
        self._last[key] = text
        return text

    def __call__(self, event: ProgressEvent) -> None:
        line = self.line(event)
        if line is not None:
            self.write(line)
