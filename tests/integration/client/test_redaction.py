"""No secret and no token in any log line (DEBUG, httpx/httpcore included), error text or repr."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator

import httpx
import pytest

from fleetwave.clock import ManualClock
from fleetwave.platforms.base import PackageKind, TaskPolicy
from fleetwave.platforms.errors import PlatformError
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.sim.testing import SimHandle, run_simulator

from .conftest import SimClock, settings_for

SECRET = "s3cr3t-Value-that-must-never-leak"


class TokenSpy(httpx.AsyncBaseTransport):
    """A real transport that also remembers every token the platform hands out."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.tokens: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.startswith("/iocm/app/sec/"):
            await response.aread()
            try:
                body = json.loads(response.content)
            except ValueError:
                body = {}
            for key in ("accessToken", "refreshToken"):
                if isinstance(body, dict) and body.get(key):
                    self.tokens.add(str(body[key]))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    names = ["httpx", "httpcore", "fleetwave"]
    old = {n: logging.getLogger(n).level for n in names}
    old_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root)
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


async def test_secret_and_tokens_never_appear_in_logs_errors_or_reprs(
    capture: Capture,
) -> None:
    texts: list[str] = []
    spy = TokenSpy()

    def keep(exc: BaseException) -> None:
        texts.append(str(exc))
        texts.append(repr(exc))
        texts.append("".join(traceback.format_exception(exc)))

    with run_simulator(devices=300, groups=2, rate_limit=0, clock="manual", secret=SECRET) as sim:
        settings = settings_for(sim, max_attempts=2)
        async with IoDMPlatform(settings, clock=SimClock(sim), transport=spy) as platform:
            texts += [repr(platform), repr(platform.client), repr(settings), str(settings)]
            texts += [repr(platform.client.auth), repr(settings.model_dump())]
            groups = [g async for g in platform.list_groups()]
            group = groups[0]
            members = [m async for m in platform.group_members(group.group_id)]
            sim.advance(3500)  # refresh with the refreshToken
            device = await platform.get_device(members[0])
            _supersede(sim)  # another login: 403 1010005, re-login, replay
            await platform.get_device(members[1])
            sim.advance(3700)  # expired on both sides
            await platform.get_device(members[2])
            packages = [
                p
                async for p in platform.find_packages(kind=PackageKind.FIRMWARE, model=device.model)
            ]
            sim.set_faults(drop_rate=1.0, drop_after_commit=True, methods=["POST"], count=1)
            try:
                await platform.create_upgrade_task(
                    kind=PackageKind.FIRMWARE,
                    file_id=packages[-1].file_id,
                    device_ids=members[:2],
                    policy=TaskPolicy(),
                )
            except PlatformError as exc:
                keep(exc)
            sim.set_faults(error_rate=1.0, methods=["GET"])
            try:
                await platform.get_task("nope")
            except PlatformError as exc:
                keep(exc)
            sim.clear_faults()
            try:
                await platform.get_task("no-such-task")
            except PlatformError as exc:
                keep(exc)
        bad = settings_for(sim, secret=SECRET + "-wrong")
        async with IoDMPlatform(bad, clock=ManualClock()) as platform:
            try:
                await platform.get_device(members[0])
            except PlatformError as exc:
                keep(exc)
        texts += [json.dumps(sim.stats())]

    assert len(spy.tokens) >= 6, "the scenario should have issued several tokens"
    lines = capture.lines
    assert any(line.startswith("httpcore") for line in lines), "httpcore DEBUG was captured"
    assert any("HTTP Request" in line for line in lines), "httpx INFO was captured"
    assert len(texts) >= 15
    haystack = "\n".join(lines + texts)
    for needle in [SECRET, *spy.tokens]:
        assert needle not in haystack, f"a secret or token leaked ({len(needle)} chars)"


def _supersede(sim: SimHandle) -> None:
    answer = httpx.post(
        f"{sim.base_url}/iocm/app/sec/v1.1.0/login",
        data={"appId": sim.app_id, "secret": sim.secret},
    )
    assert answer.status_code == 200
