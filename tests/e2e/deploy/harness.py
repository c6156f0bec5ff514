"""Deploy from a prefect.yaml to a real Prefect server and let a process worker run a flow run.

Shared by the deployment tests: the same steps the README gives an operator
(work-pool create, deploy, trigger, worker), each one a real ``prefect`` subprocess.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from fleetwave.sim.testing import SimProcess
from tests.e2e.conftest import PREFECT_QUIET_ENV, PrefectServer

POOL = "fleetwave"


@dataclass
class Timings:
    """Seconds spent in each step (reported by the test, never asserted)."""

    deploy: float = 0.0
    worker: float = 0.0


def prefect_cli(
    server: PrefectServer,
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``prefect ARGS`` against ``server``; raise with its output if it fails."""
    full_env = server.env()
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"prefect {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def ensure_pool(server: PrefectServer, cwd: Path) -> None:
    """Create the process work pool (idempotent)."""
    prefect_cli(server, "work-pool", "create", POOL, "--type", "process", "--overwrite", cwd=cwd)


def deploy(server: PrefectServer, project: Path, *names: str, timings: Timings) -> str:
    """``prefect deploy --all`` (or ``--name`` each of ``names``) from ``project``."""
    t0 = time.monotonic()
    selection = [a for n in names for a in ("--name", n)] if names else ["--all"]
    out = prefect_cli(server, "deploy", *selection, cwd=project).stdout
    timings.deploy = time.monotonic() - t0
    return out


def trigger(deployment: str, parameters: Mapping[str, Any]) -> UUID:
    """Create a flow run of ``deployment`` ("flow-name/deployment-name") through the API."""
    flow_run = run_deployment(deployment, parameters=dict(parameters), timeout=0)
    assert isinstance(flow_run, FlowRun)
    return flow_run.id


def run_worker_once(
    server: PrefectServer,
    cwd: Path,
    *,
    env: Mapping[str, str],
    timings: Timings,
    timeout: float = 240.0,
) -> str:
    """``prefect worker start --pool fleetwave --run-once``: executes the runs that are due."""
    t0 = time.monotonic()
    proc = prefect_cli(
        server,
        "worker",
        "start",
        "--pool",
        POOL,
        "--type",
        "process",
        "--run-once",
        "--limit",
        "2",
        cwd=cwd,
        env={**PREFECT_QUIET_ENV, **env},
        timeout=timeout,
    )
    timings.worker = time.monotonic() - t0
    return proc.stdout + proc.stderr


def group_members(sim: SimProcess, group: str) -> list[str]:
    """The members of the simulator's ``group``, read through the platform driver."""
    from fleetwave.platforms.iodm import IoDMPlatform, IoDMSettings

    async def _read() -> list[str]:
        settings = IoDMSettings.from_env(environ=sim.driver_env())
        async with IoDMPlatform(settings) as platform:
            groups = [g async for g in platform.list_groups(name=group)]
            return sorted({d for g in groups async for d in platform.group_members(g.group_id)})

    return asyncio.run(_read())


def read_flow_run(flow_run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def deployment_names(server: PrefectServer) -> dict[str, Any]:
    """Deployments on the server by name, with their schedules and parameters."""
    with get_client(sync_client=True) as client:
        return {d.name: d for d in client.read_deployments()}
