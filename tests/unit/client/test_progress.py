"""IoDM task progress at the fewest calls (``IoDMPlatform.task_progress``), on a task list
served by an httpx.MockTransport handler: which lists and single reads a round spends,
what it answers, and the memo it hands the engine for the next round."""

from __future__ import annotations

from collections import Counter

import httpx

from fleetwave.platforms.base import PackageKind, TaskRef, TaskState
from fleetwave.platforms.iodm import IoDMPlatform
from fleetwave.platforms.iodm.progress import Memo, Pages, cover, pages_for, window
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


async def test_reads_only_the_window_that_held_the_tasks_last_round() -> None:
    """The tail of a campaign beside stale tasks: 3 tasks, a list of 3 pages last round."""
    tl = TaskList()
    for i in range(250):
        tl.add(f"stale-{i}", "processing")
    for op in ("a", "b", "c"):
        tl.add(op, "processing")
    tl.status["b"] = "success"
    async with platform_with(tl) as p:
        memos = {op: f"processing#{250 + i}/253" for i, op in enumerate("abc")}
        seen = await _round(p, refs(["a", "b", "c"], memos))
    # one page holding positions 250..252 (not 3 pages), and b, missing from it, read alone
    assert tl.calls == {"list": 1, "get": 1}
    (q,) = tl.asked
    no, size = int(q["pageNo"]), int(q["pageSize"])
    assert no * size <= 250 and (no + 1) * size > 252
    assert seen["a"].state is TaskState.RUNNING and seen["b"].state is TaskState.FINISHED
    assert seen["c"].memo == "processing#251/252"  # b left the list: c moved up


async def test_reads_a_lone_task_by_itself() -> None:
    tl = TaskList()
    for i in range(250):
        tl.add(f"stale-{i}", "processing")
    tl.add("a", "processing")
    async with platform_with(tl) as p:
        seen = await _round(p, refs(["a"], {"a": "processing#250/251"}))
    assert tl.calls == {"get": 1}  # not a list page
    assert seen["a"].memo == "processing#250/251"  # still where it was listed


async def test_a_task_moved_out_of_the_window_is_still_observed() -> None:
    """The list's order is undocumented: a task elsewhere than the memo says is found by a
    single read, reported running (not finished), and its stale place forgotten."""
    tl = TaskList()
    tl.add("moved", "processing")  # now first in the list
    for i in range(250):
        tl.add(f"stale-{i}", "processing")
    for op in ("a", "b"):
        tl.add(op, "processing")
    async with platform_with(tl) as p:
        memos = {"a": "processing#250/253", "b": "processing#251/253"}
        memos["moved"] = "processing#252/253"
        seen = await _round(p, refs(["a", "b", "moved"], memos))
    assert tl.calls == {"list": 1, "get": 1}
    assert seen["moved"].state is TaskState.RUNNING and seen["moved"].memo == "processing"
    assert seen["a"].memo == "processing#251/253"


async def test_many_tasks_missing_from_the_window_read_the_whole_list() -> None:
    """A window that missed most of its tasks (the list reordered): the whole list (3
    pages) costs less than 40 single reads, and a task absent from it has finished."""
    tl = TaskList()
    ours = [f"t{i:02}" for i in range(40)]
    for op in ours:
        tl.add(op, "processing")  # first, where the memos put them last
    for i in range(210):
        tl.add(f"stale-{i}", "processing")
    tl.status["t00"] = "success"
    async with platform_with(tl) as p:
        memos = {op: f"processing#{210 + i}/250" for i, op in enumerate(ours)}
        seen = await _round(p, refs(ours, memos))
    assert tl.calls == {"list": 4}  # the window, then the whole list
    assert set(seen) == set(ours) - {"t00"}
    assert Memo.parse(seen["t01"].memo).index == 0


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


# -- the page choice, as pure functions ----------------------------------------------------

P = Memo.parse("processing").status
W = Memo.parse("wait").status


def test_cover_puts_a_window_on_one_page_whenever_one_exists() -> None:
    for lo, hi in [(250, 252), (157, 199), (1, 99), (99, 100), (4321, 4370), (0, 99)]:
        pages = cover(lo, hi, 100)
        assert pages.count == 1, (lo, hi, pages)
        assert pages.first * pages.size <= lo and (pages.first + 1) * pages.size > hi
    for lo in range(0, 400, 7):
        for span in (1, 20, 56, 83, 100):
            hi = lo + span - 1
            one = any(lo // s == hi // s for s in range(1, 101))
            pages = cover(lo, hi, 100)
            assert (pages.count == 1) == one, (lo, hi, pages)
            assert pages.size <= 100 and pages.count is not None
            assert pages.first * pages.size <= lo
            assert (pages.first + pages.count) * pages.size > hi
    # 157..239 lies on no single page of at most 100 (no multiple of a size in 83..100
    # falls at or below 157 with the next one above 239): two pages
    assert cover(157, 239, 100).count == 2


def test_cover_prefers_room_below_the_window() -> None:
    # 250..252 fits on many pages (of 100 from 200, of 50 from 250, ...): the most room below
    pages = cover(250, 252, 100)
    assert 250 - pages.first * pages.size == max(
        250 - (250 // s) * s for s in range(3, 101) if 250 // s == 252 // s
    )


def test_cover_spans_the_fewest_pages_when_the_window_is_wide() -> None:
    assert cover(0, 199, 100) == Pages(100, 0, 2)
    pages = cover(150, 349, 100)  # 200 places not aligned on a page of 100: 3 pages
    assert pages.count == 3 and pages.size <= 100
    assert pages.first * pages.size <= 150 and (pages.first + 3) * pages.size > 349
    for bad in [(-1, 3), (5, 4)]:
        try:
            cover(*bad, 100)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_window_places_new_tasks_after_the_end_of_the_list() -> None:
    memos = [Memo(P, 210, 240), Memo(P, 230, 240), Memo(), Memo(W)]
    assert window(memos, P) == (210, 241)  # two tasks not placed: positions 240, 241
    assert window([Memo(), Memo(W)], P) is None


def test_pages_for_reads_the_whole_list_when_the_window_saves_nothing() -> None:
    # the list fit in one page: the whole list, complete, no verification needed
    assert pages_for([Memo(P, 3, 60), Memo(P, 40, 60)], P, 100).whole
    # no place known: the whole list
    assert pages_for([Memo(P), Memo()], P, 100).whole
    # stale tasks ahead: one page of the window instead of 4
    pages = pages_for([Memo(P, 310, 390), Memo(P, 389, 390)], P, 100)
    assert not pages.whole and pages.count == 1
