"""The production topology, live: a Prefect server on PostgreSQL, the fleetwave store on
PostgreSQL, two process workers, three campaigns triggered together through a deployment
against one simulator app, and the app's budget shared as a Prefect global concurrency
rate limit (``IODM_PREFECT_RATE_LIMIT``). One worker is killed (SIGKILL) mid-run and its
campaigns continue on the other once their leases lapse.

Each worker runs in its own PID namespace (``unshare``), as on two machines or containers:
the survivor cannot see the dead worker's processes, so it must wait for the lease to lapse
(``FLEETWAVE_LEASE_TTL``, short here). Killing the namespace's first process kills every
process in it (the worker and its flow runs), as a lost machine would.

Time: the simulator's clock runs 60 times real time, so a device's upgrade takes seconds
and the app's budget (``BUDGET`` calls a simulated minute) is ``BUDGET`` calls a real
second. The engine runs on real time. The global limit (``GCL_LIMIT`` slots, decaying at
``GCL_DECAY`` a second) admits at most GCL_LIMIT + GCL_DECAY calls in any second, below the
budget; the workers' own per-process limit (``IODM_RATE_LIMIT``, per real minute) is off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from fleetwave import store
from fleetwave.serving import stop_process_group
from fleetwave.sim import DEMO_APP_ID, DEMO_SECRET
from fleetwave.sim.testing import SimProcess, start_simulator_process
from tests.e2e.conftest import PREFECT_QUIET_ENV, PrefectServer, start_prefect_server
from tests.e2e.deploy.harness import POOL, Timings, deploy, ensure_pool, prefect_cli, trigger

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
PG_ENV = "FLEETWAVE_TEST_PG_URL"

SIM_SCALE = 60  # simulated seconds per real second
BUDGET = 4  # the app's calls a simulated minute (= a real second here)
GCL_LIMIT, GCL_DECAY = 1, 2.0  # at most 1 + 2 x 1.3 s (jitter) = 3.6 calls in any second
LEASE_TTL = 20  # seconds: how soon the survivor may take a dead worker's campaign
DEADLINE = 420.0  # seconds from the first worker's start to the end of every campaign

# Three campaigns on three groups of one app (sim seed 3, 900 devices in 18 groups); only
# devices online now (one reachable once a simulated day would hold its task for 24 minutes).
CAMPAIGNS = {
    "topo-meters-helsinki": ("meters-helsinki", "1.5.0", "WaterMeter", "WM-200", "Aquaflow"),
    "topo-meters-madrid": ("meters-madrid-2", "1.5.0", "WaterMeter", "WM-200", "Aquaflow"),
    "topo-trackers-warsaw": ("trackers-warsaw", "1.0.0", "Tracker", "TRK-9", "Roamly"),
}

CAMPAIGN = """\
name: {name}
kind: firmware
package: {{version: "{version}", device_type: {dtype}, model: {model}, manufacturer_name: {mfr}}}
targets: {{groups: [{{name: {group}}}], connectivity: [ONLINE]}}
waves:
  - count: 5
  - percent: 50
  - percent: 100
policy: {{execute: now, poll_interval: 10s, task_timeout: 1h, max_devices_per_task: 8}}
thresholds: {{max_failure_percent: 50, min_finished: 5, wave_success_percent: 50}}
"""


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.skip(f"{PG_ENV} is not set (the topology test needs PostgreSQL)")
    return url


@contextmanager
def pg_database(admin_url: str, name: str) -> Iterator[sa.URL]:
    """A new, empty database ``name`` on the server of ``admin_url``, dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(admin_url).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _url(url: sa.URL, driver: str) -> str:
    return url.set(drivername=driver).render_as_string(hide_password=False)


def namespaces_available() -> bool:
    """Whether ``unshare`` may give a worker its own PID namespace (user namespaces allowed)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-Urpf", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


@dataclass
class Worker:
    """``prefect worker start`` in its own process group (and PID namespace when possible)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    namespaced: bool

    def first_process(self) -> int:
        """The worker's namespace's first process (``unshare`` forks it), else the worker."""
        if not self.namespaced:
            return self.process.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            kids = _children(self.process.pid)
            if kids:
                return kids[0]
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: unshare started no process")

    def host(self) -> str:
        """The host part of the lease holder names its flow runs write (``HOST/PIDNS``)."""
        ns = os.stat(f"/proc/{self.first_process()}/ns/pid").st_ino
        return f"{os.uname().nodename}/{ns}"

    def owns(self, holder: str) -> bool:
        """Whether the lease holder name ``holder`` is one of this worker's flow runs."""
        host, pid = holder.rsplit(":", 3)[:2]
        if self.namespaced:
            return host == self.host()
        return int(pid) in _tree(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the worker and every flow run it started: the machine is gone."""
        for pid in reversed(_tree(self.first_process())):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_process_group(self.process)


def start_worker(
    server: PrefectServer,
    name: str,
    cwd: Path,
    env: Mapping[str, str],
    namespaced: bool,
    *,
    limit: int,
) -> Worker:
    full_env = server.env()
    full_env.update(PREFECT_QUIET_ENV)
    full_env.update(env)
    full_env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    cmd = [
        sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
        "--type", "process", "--name", name, "--limit", str(limit),
    ]  # fmt: skip
    if namespaced:
        cmd = ["unshare", "-Urpf", "--mount-proc", *cmd]
    log = cwd / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Worker(name, proc, log, namespaced)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the deployable project with the three campaigns."""
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copy2(ROOT / "prefect.yaml", proj / "prefect.yaml")
    shutil.copytree(ROOT / "flows", proj / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "campaigns" / "topo").mkdir(parents=True)
    for name, (group, version, dtype, model, mfr) in CAMPAIGNS.items():
        (proj / "campaigns" / "topo" / f"{name}.yaml").write_text(
            CAMPAIGN.format(
                name=name, group=group, version=version, dtype=dtype, model=model, mfr=mfr
            )
        )
    return proj


def _sim_stats(sim: SimProcess) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{sim.base_url}/sim/stats", timeout=30).json()
    return result


def _campaigns(db: sa.Engine) -> dict[str, store.Campaign]:
    with store.session_scope(db, read_only=True) as s:
        return {n: store.get_campaign(s, name=n) for n in CAMPAIGNS if _exists(s, n)}


def _exists(s: Any, name: str) -> bool:
    try:
        store.get_campaign(s, name=name)
    except store.NotFoundError:
        return False
    return True


def _sent_chunks(db: sa.Engine, name: str) -> int:
    with store.session_scope(db, read_only=True) as s:
        campaign = store.get_campaign(s, name=name)
        assert campaign.id is not None
        return sum(1 for c in store.list_chunks(s, campaign_id=campaign.id) if c.operation_id)


def _wait(what: str, check: Any, deadline: float, workers: list[Worker]) -> Any:
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}\n{w.log.read_text(errors='replace')[-4000:]}" for w in workers)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


@pytest.mark.timeout(900)
def test_three_campaigns_two_workers_one_budget_and_a_lost_worker(
    project: Path, tmp_path: Path
) -> None:
    admin_url = _pg_admin_url()
    token = uuid.uuid4().hex[:8]
    namespaced = namespaces_available()
    t_start = time.monotonic()
    with (
        pg_database(admin_url, f"fleetwave_prefect_topo_{token}") as prefect_db,
        pg_database(admin_url, f"fleetwave_store_topo_{token}") as store_db,
    ):
        server = start_prefect_server(
            tmp_path / "prefect-home", database_url=_url(prefect_db, "postgresql+asyncpg")
        )
        sim = start_simulator_process(
            tmp_path / "sim", devices=900, groups=18, seed=3, clock=f"scaled:{SIM_SCALE}",
            rate_limit=BUDGET, failure_rate=0.0,
        )  # fmt: skip
        workers: list[Worker] = []
        db = store.get_engine(_url(store_db, "postgresql+psycopg"))
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                store.upgrade_schema(db)
                _run(server, sim, db, store_db, project, tmp_path, workers, namespaced)
        finally:
            for w in workers:
                w.stop()
            sim.stop()
            db.dispose()
            stop_process_group(server.process)
    print(f"\ntopology test: {time.monotonic() - t_start:.0f} s, namespaces {namespaced}")


def _run(
    server: PrefectServer,
    sim: SimProcess,
    db: sa.Engine,
    store_db: sa.URL,
    project: Path,
    tmp_path: Path,
    workers: list[Worker],
    namespaced: bool,
) -> None:
    gcl = f"fleetwave-iodm-{uuid.uuid4().hex[:6]}"
    prefect_cli(
        server, "gcl", "create", gcl, "--limit", str(GCL_LIMIT),
        "--slot-decay-per-second", str(GCL_DECAY), cwd=project,
    )  # fmt: skip
    ensure_pool(server, project)
    deploy(server, project, "run-campaign", timings=Timings())
    env = {
        "FLEETWAVE_DB_URL": _url(store_db, "postgresql+psycopg"),
        "FLEETWAVE_LEASE_TTL": str(LEASE_TTL),
        "IODM_BASE_URL": sim.base_url,
        "IODM_APP_ID": DEMO_APP_ID,
        "IODM_SECRET": DEMO_SECRET,
        "IODM_RATE_LIMIT": "0",
        "IODM_PREFECT_RATE_LIMIT": gcl,
    }
    work = tmp_path / "work"
    work.mkdir()
    deadline = time.monotonic() + DEADLINE  # from the first worker's start
    params = {"clock": "real", "wait_for_lease": True}
    runs = {
        n: trigger("advance-campaign/run-campaign", {**params, "campaign": _path(n)})
        for n in CAMPAIGNS
    }
    # worker A (at most 2 runs) takes two campaigns, worker B the third and, later, A's
    first = start_worker(server, "worker-a", work, env, namespaced, limit=2)
    workers.append(first)

    def holders() -> dict[str, str]:
        return {n: r.lease_holder for n, r in _campaigns(db).items() if r.lease_holder}

    _wait("worker A to start two campaigns", lambda: len(holders()) >= 2, deadline, workers)
    workers.append(start_worker(server, "worker-b", work, env, namespaced, limit=3))
    dead, survivor = workers

    # mid-run: one of worker A's campaigns has tasks out and is not done
    def victim() -> str | None:
        for name, row in _campaigns(db).items():
            if (
                row.lease_holder is not None
                and dead.owns(row.lease_holder)
                and row.status is store.CampaignStatus.RUNNING
                and _sent_chunks(db, name) >= 1
            ):
                return name
        return None

    _wait("a campaign of worker A with tasks out", victim, deadline, workers)
    held = holders()
    lost = {n for n, h in held.items() if dead.owns(h)}
    dead.kill()
    # the lost runs stay "Running" in Prefect (this test makes no lost-run automation; see
    # test_lost_worker.py): the operator's (or the next schedule's) new run continues each
    # campaign once its lease lapses
    again = {
        n: trigger("advance-campaign/run-campaign", {**params, "campaign": _path(n)}) for n in lost
    }

    def all_done() -> bool:
        rows = _campaigns(db)
        return all(r.status in _FINAL for r in rows.values()) and len(rows) == len(CAMPAIGNS)

    _wait("every campaign to end", all_done, deadline, workers)
    rows = _campaigns(db)
    assert {n: r.status for n, r in rows.items()} == {
        n: store.CampaignStatus.COMPLETED for n in CAMPAIGNS
    }, {n: (r.status, r.status_reason) for n, r in rows.items()}

    # the final flow runs completed: the surviving worker's first runs and every new run
    final = {n: again.get(n, runs[n]) for n in CAMPAIGNS}

    def final_states() -> dict[str, Any] | None:
        with get_client(sync_client=True) as client:
            states = {n: client.read_flow_run(fid).state for n, fid in final.items()}
        return states if all(s is not None and s.is_final() for s in states.values()) else None

    states = _wait("the last flow runs to end", final_states, deadline, workers)
    assert all(s.is_completed() for s in states.values()), states

    # the lost campaigns moved to the survivor only after their leases lapsed
    with store.session_scope(db, read_only=True) as s:
        for n in lost:
            row = store.get_campaign(s, name=n)
            assert row.id is not None
            taken = store.recent_events(s, campaign_id=row.id, limit=10, kinds=["lease_taken_over"])
            assert len(taken) == 1, (n, [e.data for e in taken])
            assert taken[0].data["from"] == held[n]
            assert taken[0].data["to"] != held[n]
            if namespaced:  # another "host": it waited for the lease to lapse
                assert survivor.owns(taken[0].data["to"])
                assert "expired" in taken[0].data["why"], taken[0].data
            else:  # this host: it saw the process gone
                assert "no longer running" in taken[0].data["why"], taken[0].data

    # exactly once, from the platform's side: no device got two tasks
    stats = _sim_stats(sim)
    per_device = Counter(stats["device_task_counts"])
    assert per_device and max(per_device.values()) == 1, per_device.most_common(3)
    with store.session_scope(db, read_only=True) as s:
        in_store: set[str] = set()
        for n in CAMPAIGNS:
            row = store.get_campaign(s, name=n)
            assert row.id is not None
            for chunk in store.list_chunks(s, campaign_id=row.id):
                if chunk.operation_id:
                    in_store.update(chunk.device_ids)
    assert in_store == set(per_device)
    # the workers together never exceeded the app's budget
    assert stats["throttled"] == 0, stats["calls"]
    assert stats["throttle_peak"] <= BUDGET
    print(
        f"\nlost {sorted(lost)} with {dead.name}; {stats['calls_total']} platform calls, "
        f"busiest simulated minute {stats['throttle_peak']} of {BUDGET}, "
        f"{len(per_device)} devices, one task each"
    )


_FINAL = {
    store.CampaignStatus.COMPLETED,
    store.CampaignStatus.HALTED,
    store.CampaignStatus.ROLLED_BACK,
    store.CampaignStatus.FAILED,
}


def _path(name: str) -> str:
    return f"campaigns/topo/{name}.yaml"
