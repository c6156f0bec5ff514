"""The test harness: run a simulator on an ephemeral port and drive its admin API.

``with run_simulator(devices=200, clock="manual") as sim:`` serves it in-process (a daemon
thread) and gives a :class:`SimHandle` with the base URL, the credentials, and thin
wrappers over ``/sim/`` (clock, faults, device overrides, statistics). Usable from sync
and async tests alike. With ``tls_cert=``/``tls_key=`` it serves HTTPS (``sim.base_url``
starts with ``https://``).

``start_simulator_process(...)`` / ``with run_simulator_process(...)`` run it in its own
process (``python -m fleetwave.sim``), so a test can kill the engine without killing the
simulator and a benchmark's figures are not the simulator's: the one launcher the e2e
tests and bench/ use.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pendulum

from fleetwave.sim.config import DEMO_APP_ID, DEMO_SECRET, SimConfig
from fleetwave.sim.linked_clock import parse_sim_time
from fleetwave.sim.server import SimServer
from fleetwave.sim.thingspace.testing import TSHandle, run_thingspace_simulator

__all__ = [
    "DEMO_APP_ID",
    "DEMO_SECRET",
    "SimConfig",
    "SimHandle",
    "SimProcess",
    "TSHandle",
    "run_simulator",
    "run_simulator_process",
    "run_thingspace_simulator",
    "start_simulator_process",
]


class SimHandle:
    """A running simulator: where it is, whom it lets in, and its admin API."""

    def __init__(self, base_url: str, config: SimConfig) -> None:
        self.base_url = base_url
        self.app_id = config.app_id
        self.secret = config.secret
        self.config = config
        # over HTTPS the admin API trusts the served certificate itself (self-signed in tests)
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(config.tls_cert)) if config.tls_cert else True
        )
        self._http = httpx.Client(base_url=base_url, timeout=30.0, verify=verify)

    def __repr__(self) -> str:
        return f"SimHandle({self.base_url!r}, app_id={self.app_id!r})"

    def driver_env(self, *, rate_limit: int = 0, profile: str = "default") -> dict[str, str]:
        """The IoDM driver's environment variables pointing at this simulator (its
        certificate as the CA bundle over HTTPS); ``rate_limit`` 0: no client-side pacing."""
        return _driver_env(
            self.base_url, self.app_id, self.secret, self.config.tls_cert, rate_limit, profile
        )

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} failed: HTTP {resp.status_code} {resp.text}")
        return resp.json()

    def clock(self) -> pendulum.DateTime:
        """The simulator's now (GET /sim/clock)."""
        return parse_sim_time(self._call("GET", "/sim/clock"))

    def advance(self, seconds: float) -> pendulum.DateTime:
        """Move a manual clock forward (POST /sim/clock/advance) and return the new now."""
        return parse_sim_time(self._call("POST", "/sim/clock/advance", json={"seconds": seconds}))

    def set_faults(self, **faults: Any) -> None:
        """Replace the fault set (POST /sim/faults); see the README for the fields."""
        self._call("POST", "/sim/faults", json=faults)

    def clear_faults(self) -> None:
        self._call("POST", "/sim/faults", json={})

    def set_devices(self, **body: Any) -> None:
        """Failure probability / connectivity overrides (POST /sim/devices)."""
        self._call("POST", "/sim/devices", json=body)

    def stats(self, *, tasks: bool = True) -> dict[str, Any]:
        """Call counts, tasks created and per-device task counts (GET /sim/stats)."""
        params = None if tasks else {"tasks": "false"}
        result: dict[str, Any] = self._call("GET", "/sim/stats", params=params)
        return result

    def close(self) -> None:
        self._http.close()


@contextmanager
def run_simulator(config: SimConfig | None = None, **overrides: Any) -> Iterator[SimHandle]:
    """Serve a simulator on 127.0.0.1 with an ephemeral port in a daemon thread; stop on exit."""
    config = dataclasses.replace(config or SimConfig(), **overrides)
    server = SimServer(config, "127.0.0.1", 0)
    server.start_in_thread()
    handle = SimHandle(server.base_url, config)
    try:
        yield handle
    finally:
        handle.close()
        server.stop()


#: Quiet settings for the simulator's process (it imports no Prefect, but its
#: dependencies may read them).
_QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_TELEMETRY_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


def _driver_env(
    base_url: str,
    app_id: str,
    secret: str,
    ca_bundle: Path | None,
    rate_limit: int,
    profile: str,
) -> dict[str, str]:
    from fleetwave.platforms.iodm.settings import IoDMSettings

    settings = IoDMSettings(
        base_url=base_url,
        app_id=app_id,
        secret=secret,
        rate_limit=rate_limit,
        ca_bundle=ca_bundle,
    )
    return settings.to_env(profile)


@dataclass
class SimProcess:
    """The simulator running in its own process group (``python -m fleetwave.sim``), with
    the demo application's credentials."""

    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    _tmp: Path | None = None  # removed on stop: the launcher made it

    def driver_env(self, *, rate_limit: int = 0, profile: str = "default") -> dict[str, str]:
        """The IoDM driver's environment variables pointing at this simulator; ``rate_limit``
        0: no client-side pacing."""
        return _driver_env(self.base_url, DEMO_APP_ID, DEMO_SECRET, None, rate_limit, profile)

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL); idempotent."""
        from fleetwave.serving import stop_process_group

        stop_process_group(self.process)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_simulator_process(
    workdir: Path | None = None,
    *,
    log: Path | None = None,
    timeout: float = 60.0,
    **options: object,
) -> SimProcess:
    """Run ``python -m fleetwave.sim --port 0 --port-file F`` with ``--option value`` pairs
    and wait until it answers ``GET /sim/clock``.

    Option names are SimConfig's fields (``devices=500, clock="manual", rate_limit=0``);
    underscores become dashes; ``True`` passes a bare flag, ``False``/``None`` is omitted.
    The port file goes in ``workdir`` (a temporary directory, removed on stop, when None);
    stdout and stderr go to ``log`` (default ``workdir/sim.log``). The child imports the
    same ``fleetwave`` as the caller. Raises RuntimeError with the log's tail when it does
    not answer within ``timeout`` seconds.
    """
    from fleetwave.serving import stop_process_group

    tmp = Path(tempfile.mkdtemp(prefix="fleetwave-sim-")) if workdir is None else None
    work = tmp if tmp is not None else workdir
    assert work is not None
    work.mkdir(parents=True, exist_ok=True)
    port_file = work / "sim.port"
    port_file.unlink(missing_ok=True)
    log = log if log is not None else work / "sim.log"
    args = [sys.executable, "-m", "fleetwave.sim", "--port", "0", "--port-file", str(port_file)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    env = {**os.environ, **_QUIET_ENV}
    root = str(Path(__file__).resolve().parents[2])  # where this fleetwave is imported from
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cert = options.get("tls_cert")
    scheme = "https" if cert else "http"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cert)) if cert else True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        text = port_file.read_text().strip() if port_file.exists() else ""
        if text.isdigit():
            port = int(text)
            base = f"{scheme}://127.0.0.1:{port}"
            try:
                httpx.get(f"{base}/sim/clock", timeout=2.0, verify=verify)
                return SimProcess(base, port, proc, log, tmp)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    stop_process_group(proc)
    why = f"exit code {proc.returncode}" if proc.poll() is not None else f"{timeout:.0f} s"
    tail = _tail(log)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError(f"the simulator did not start ({why}; {' '.join(args)}); log:\n{tail}")


@contextmanager
def run_simulator_process(
    workdir: Path | None = None,
    *,
    log: Path | None = None,
    timeout: float = 60.0,
    **options: object,
) -> Iterator[SimProcess]:
    """:func:`start_simulator_process`, stopped on exit."""
    sim = start_simulator_process(workdir, log=log, timeout=timeout, **options)
    try:
        yield sim
    finally:
        sim.stop()
