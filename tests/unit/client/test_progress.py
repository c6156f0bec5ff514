"""IoDM task progress at the fewest calls (``IoDMPlatform.task_progress``), on a task list
served by an httpx.MockTransport handler: which lists and single reads a round spends,
what it answers, and the memo it hands the engine for the next round."""

from __future__ import annotations

from collections import Counter

import httpx

from fleetwave.platforms.base import PackageKind, TaskRef, TaskState
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.platforms.iodm.progress import Memo
from tests.unit.client.test_wire import platform_with

NB = "/iodm/northbound/v1.5.0"


class TaskList:
    """A platform's operations, in creation order, with the list filters IoDM documents."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.model: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.asked: list[dict[str, str]] = []

    def add(self, op: str, status: str, model: str = "WM-200") -> None:
        self.status[op], self.model[op] = status, model

    def _json(self, op: str) -> dict[str, object]:
        done = 0 if self.status[op] in ("wait", "processing") else 2
        return {
            "operationId": op,
            "operateType": "firmware_upgrade",
            "status": self.status[op],
            "staResult": {"total": 2, "success": done, "processing": 2 - done},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, request.url.params
        if path == f"{NB}/operations":
            self.calls["list"] += 1
            self.asked.append(dict(q))
            rows = [
                op
                for op, st in self.status.items()
                if st == q.get("operationStatus", st)
                and self.model[op] == q.get("model", self.model[op])
            ]
            no, size = int(q["pageNo"]), int(q["pageSize"])
            page = [self._json(op) for op in rows[no * size : (no + 1) * size]]
            return httpx.Response(200, json={"totalCount": len(rows), "data": page})
        if path.startswith(f"{NB}/operations/"):
            self.calls["get"] += 1
            op = path.rsplit("/", 1)[1]
            if op not in self.status:
                return httpx.Response(404, json={"error_code": "123009", "error_desc": "no task"})
            return httpx.Response(200, json=self._json(op))
        if path == f"{NB}/category/file-1":
            body = {
                "fileId": "file-1",
                "version": "1.5.0",
                "fileType": "firmwarePackage",
                "deviceType": "WaterMeter",
                "model": "WM-200",
                "manufacturerName": "Aquaflow",
            }
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={})


def refs(ops: list[str], memos: dict[str, str | None] | None = None) -> list[TaskRef]:
    memos = memos or {}
    return [TaskRef(op, PackageKind.FIRMWARE, memo=memos.get(op), file_id="file-1") for op in ops]


async def _round(p: IoDMPlatform, tasks: list[TaskRef]):  # type: ignore[no-untyped-def]
    return await p.task_progress(tasks)


async def test_lists_the_live_tasks_and_leaves_finished_ones_out() -> None:
    tl = TaskList()
    for i in range(150):
        tl.add(f"other-{i}", "processing")  # tasks the engine no longer tracks
    for op in ("a", "b", "c"):
        tl.add(op, "processing")
    tl.add("done", "success")
    async with platform_with(tl) as p:
        memos = dict.fromkeys(["a", "b", "c", "done"], "processing")
        seen = await _round(p, refs(["a", "b", "c", "done"], memos))
    assert set(seen) == {"a", "b", "c"}  # absent: finished
    assert seen["a"].state is TaskState.RUNNING and seen["a"].counts.running == 2
    assert tl.calls == {"list": 2}  # 153 processing tasks: two pages, no single read
    assert [q["operationStatus"] for q in tl.asked] == ["processing", "processing"]
    # the memo says where each task was listed and how long the list was
    assert Memo.parse(seen["c"].memo) == Memo(Memo.parse("processing").status, 152, 153)


async def test_reads_tasks_one_by_one_when_the_last_list_was_longer() -> None:
    """The tail of a campaign beside stale tasks: 2 tasks, a list of 3 pages last round."""
    tl = TaskList()
    for i in range(250):
        tl.add(f"stale-{i}", "processing")
    tl.add("a", "processing")
    tl.add("b", "success")
    async with platform_with(tl) as p:
        memos = {"a": "processing#250/252", "b": "processing#251/252"}
        seen = await _round(p, refs(["a", "b"], memos))
    assert tl.calls == {"get": 2}  # not 3 list pages
    assert seen["a"].state is TaskState.RUNNING and seen["b"].state is TaskState.FINISHED
    assert seen["a"].memo == "processing#250/252"  # still where it was listed


async def test_a_new_or_lone_waiting_task_missing_from_processing_is_read_alone() -> None:
    tl = TaskList()
    for op in ("a", "b", "c"):
        tl.add(op, "processing")
    tl.add("new", "wait")
    async with platform_with(tl) as p:
        seen = await _round(p, refs(["a", "b", "c", "new"], dict.fromkeys("abc", "processing")))
    assert tl.calls == {"list": 1, "get": 1}
    assert seen["new"].state is TaskState.PENDING and seen["new"].memo == "wait"


async def test_lists_wait_while_several_tasks_were_seen_waiting() -> None:
    tl = TaskList()
    for op in ("w1", "w2", "p1"):
        tl.add(op, "wait" if op.startswith("w") else "processing")
    async with platform_with(tl) as p:
        memos = {"w1": "wait", "w2": "wait", "p1": "processing"}
        seen = await _round(p, refs(["w1", "w2", "p1"], memos))
    assert [q["operationStatus"] for q in tl.asked] == ["wait", "processing"]
    assert tl.calls == {"list": 2} and set(seen) == {"w1", "w2", "p1"}


async def test_the_package_filters_keep_other_campaigns_tasks_out_of_the_pages() -> None:
    tl = TaskList()
    for i in range(120):
        tl.add(f"other-model-{i}", "processing", model="GM-1")
    for op in ("a", "b", "c"):
        tl.add(op, "processing")
    async with platform_with(tl) as p:
        await p.get_package("file-1")  # the verify stage looks the package up first
        seen = await _round(p, refs(["a", "b", "c"]))
    assert set(seen) == {"a", "b", "c"}
    assert tl.calls["list"] == 1  # 3 tasks, not 123
    q = tl.asked[0]
    assert (q["deviceType"], q["model"], q["manufacturerName"]) == (
        "WaterMeter",
        "WM-200",
        "Aquaflow",
    )
    assert q["operationType"] == "firmware_upgrade"


async def test_memos_an_older_engine_stored_read_as_none() -> None:
    assert Memo.parse("push") == Memo() and Memo.parse(None) == Memo()
    assert Memo.parse("processing#x/3") == Memo(Memo.parse("processing").status)
    assert Memo.parse("wait").text() == "wait"
