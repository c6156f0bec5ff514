"""Retry waits honour the platform's ``Retry-After`` and the time budget (MockTransport)."""

from __future__ import annotations

import logging

import httpx
import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.iodm import IoDMPlatform, IoDMServerError, IoDMSettings, reset_limiters

LOGIN = {"accessToken": "tok-abcdef", "refreshToken": "ref-abcdef", "expiresIn": "3600"}
TASK = {"operationId": "op-1", "operationType": "FIRMWARE_UPGRADE", "status": "PROCESSING"}


def _platform(answers: list[httpx.Response], **overrides: object) -> IoDMPlatform:
    reset_limiters()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/login"):
            return httpx.Response(200, json=LOGIN)
        return answers.pop(0)

    values: dict[str, object] = {
        "base_url": "https://iodm.test:8743",
        "app_id": "app",
        "secret": "secret-xyz",
        "rate_limit": 0,
        "backoff_base": 0.01,
        "backoff_cap": 0.02,
    }
    values.update(overrides)
    return IoDMPlatform(
        IoDMSettings(**values),  # type: ignore[arg-type]
        clock=ManualClock(),
        transport=httpx.MockTransport(route),
    )


def _unavailable(retry_after: str) -> httpx.Response:
    return httpx.Response(
        503,
        json={"error_code": "50252", "error_desc": "busy"},
        headers={"Retry-After": retry_after},
    )


async def test_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    answers = [_unavailable("42"), httpx.Response(200, json=TASK)]
    with caplog.at_level(logging.WARNING, logger="fleetwave.platforms.iodm.client"):
        async with _platform(answers) as p:
            task = await p.get_task("op-1")
    assert task.operation_id == "op-1"
    assert answers == []
    [line] = [r.getMessage() for r in caplog.records]
    assert "HTTP 503 (attempt 1); waiting 42.0 s for the platform to recover" in line


async def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    answers = [_unavailable("600"), httpx.Response(200, json=TASK)]
    async with _platform(answers, max_retry_seconds=120) as p:
        with pytest.raises(IoDMServerError, match="gave up after 1 attempt in 0 s") as caught:
            await p.get_task("op-1")
    assert len(answers) == 1  # the healthy answer was never asked for
    assert "retry budget 120 s" in str(caught.value)
