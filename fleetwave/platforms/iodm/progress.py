"""Task progress on IoDM at the fewest calls: task-list pages or single task reads.

Progress comes from task-list pages (per-task statistics), filtered to the live statuses
and, when every task asked about belongs to one known package, to that package's
``deviceType``/``model``/``manufacturerName`` (other campaigns' tasks stay out of the
pages). A task's status only moves forward (wait, processing, final), so the ``wait`` list
is read only while several tasks were last seen waiting; a new task (or a lone waiting
one) missing from the ``processing`` list is read by itself.

Each answer carries a memo per task (handed back by the engine next round): the status
word it was seen with and, when it came from a list, its position and the list's length
(``processing#157/240``). From those the next round reads only the window of the
``processing`` list that held the tasks last round (``pageNo``/``pageSize`` chosen so the
window lands on as few pages as possible: :func:`cover`), instead of the whole list, which
also holds tasks the engine closed at its timeout that the platform keeps
``processing``. The reference documents no order for the list, so the window is only a
guess about cost: a task missing from a window read is verified (read by itself, or the
whole list when that is cheaper) before it is reported finished; a task absent from a
whole-list read has left it. When single reads cost no more than the pages, the tasks
are read one by one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from fleetwave.platforms.base import (
    MEMO_MAX_LENGTH,
    OutcomeCounts,
    PackageKind,
    TaskProgress,
    TaskRef,
    TaskState,
)
from fleetwave.platforms.errors import TaskNotFound

from .models import IoDMStatus, OperationInfo, OperationPage

__all__ = [
    "Memo",
    "Pages",
    "ProgressReader",
    "counts_of",
    "cover",
    "pages_for",
    "state_of",
    "window",
]

log = logging.getLogger(__name__)

_LIVE = (IoDMStatus.WAIT, IoDMStatus.PROCESSING)

_STATE_OF = {IoDMStatus.WAIT: TaskState.PENDING, IoDMStatus.PROCESSING: TaskState.RUNNING}


def state_of(status: IoDMStatus | None) -> TaskState:
    """The neutral task state of an IoDM operation status (no status: still running)."""
    if status is None:
        return TaskState.RUNNING
    return _STATE_OF.get(status, TaskState.FINISHED)


def counts_of(o: OperationInfo) -> OutcomeCounts:
    """Neutral per-outcome counts of an operation's ``staResult``."""
    st = o.sta_result
    total = st.total or (st.wait + st.processing + st.success + st.fail + st.stop + st.timeout)
    return OutcomeCounts(
        total=total,
        pending=st.wait,
        running=st.processing,
        succeeded=st.success,
        failed=st.fail,
        cancelled=st.stop,
        timed_out=st.timeout,
    )


@dataclass(frozen=True, slots=True)
class Memo:
    """What the last progress read saw of a task: its status word, and where it was listed."""

    status: IoDMStatus | None = None
    index: int | None = None
    listed: int | None = None  # the length of the list it was seen in

    @classmethod
    def parse(cls, text: str | None) -> Memo:
        """Read a memo; anything unknown (an older engine's word, junk) reads as no memo."""
        if not text:
            return cls()
        word, _, where = text.partition("#")
        try:
            status = IoDMStatus(word)
        except ValueError:
            return cls()
        index = listed = None
        if where:
            i, _, n = where.partition("/")
            if i.isdigit() and n.isdigit():
                index, listed = int(i), int(n)
        return cls(status, index, listed)

    def text(self) -> str | None:
        if self.status is None:
            return None
        out = self.status.value
        if self.index is not None and self.listed is not None:
            placed = f"{out}#{self.index}/{self.listed}"
            if len(placed) <= MEMO_MAX_LENGTH:
                return placed
        return out


FetchPage = Callable[[Mapping[str, str | None], int, int], Awaitable[OperationPage]]
GetTask = Callable[[str], Awaitable[OperationInfo]]


@dataclass(frozen=True, slots=True)
class Pages:
    """Pages of one list to read: ``count`` pages of ``size`` from ``first`` (``count``
    None: every page to the end of the list, i.e. the whole list)."""

    size: int
    first: int = 0
    count: int | None = None

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.count is None


def cover(lo: int, hi: int, max_size: int) -> Pages:
    """The fewest pages (of one size, at most ``max_size``) that hold list positions
    ``lo``..``hi``; among those, the one leaving most room below ``lo`` (tasks ahead of
    the window that leave the list shift it down), then the largest page."""
    if lo < 0 or hi < lo or max_size < 1:
        raise ValueError(f"no window {lo}..{hi} in pages of at most {max_size}")
    span = hi - lo + 1
    need = math.ceil(span / max_size)
    while True:
        best: tuple[int, int, Pages] | None = None
        for size in range(max_size, math.ceil(span / need) - 1, -1):
            first, last = lo // size, hi // size
            if last - first + 1 != need:
                continue
            key = (lo - first * size, size)
            if best is None or key > best[:2]:
                best = (*key, Pages(size, first, need))
        if best is not None:
            return best[2]
        need += 1


def window(memos: Sequence[Memo], status: IoDMStatus) -> tuple[int, int] | None:
    """The positions of the ``status`` list expected to hold the tasks: where those seen
    there last round were, and just after the list's last end for the others (new tasks,
    tasks last seen in another list); None when no task has a known position."""
    placed = [m for m in memos if m.status is status and m.index is not None]
    if not placed:
        return None
    lo = min(m.index for m in placed if m.index is not None)
    hi = max(m.index for m in placed if m.index is not None)
    fresh = len(memos) - len(placed)
    if fresh:
        end = max(m.listed for m in placed if m.listed is not None)
        hi = max(hi, end - 1 + fresh)
    return lo, hi


def pages_for(memos: Sequence[Memo], status: IoDMStatus, page: int) -> Pages:
    """What to read of the ``status`` list: the window's pages (:func:`cover`) when they
    are fewer than the whole list's as last seen, else the whole list."""
    span = window(memos, status)
    listed = [m.listed for m in memos if m.status is status and m.listed is not None]
    whole = math.ceil(max([len(memos), *listed]) / page)
    if span is None:
        return Pages(page)
    pages = cover(*span, page)
    if pages.count is not None and pages.count >= whole:
        return Pages(page)
    return pages


def expected_cost(pages: Pages, memos: Sequence[Memo], status: IoDMStatus, page: int) -> int:
    """Calls a read of ``pages`` is expected to take (the whole list: its length when
    last seen, at least one page per task seen there)."""
    if pages.count is not None:
        return pages.count
    listed = [m.listed for m in memos if m.status is status and m.listed is not None]
    in_it = sum(1 for m in memos if m.status is status)
    return max(1, math.ceil(max([in_it, *listed]) / page))


class ProgressReader:
    """One progress read over the tasks asked about (see the module docstring)."""

    def __init__(
        self,
        *,
        fetch_page: FetchPage,
        get_task: GetTask,
        list_params: Callable[[PackageKind, Sequence[TaskRef]], dict[str, str | None]],
        page_size: int,
    ) -> None:
        self._fetch_page = fetch_page
        self._get_task = get_task
        self._list_params = list_params
        self._page = page_size

    async def read(self, tasks: Sequence[TaskRef]) -> dict[str, TaskProgress]:
        refs = {t.operation_id: t for t in tasks}
        memos = {op: Memo.parse(t.memo) for op, t in refs.items()}
        out: dict[str, TaskProgress] = {}
        if not refs:
            return out
        by_kind: dict[PackageKind, list[TaskRef]] = {}
        for t in refs.values():
            by_kind.setdefault(t.kind, []).append(t)
        plans: dict[PackageKind, list[tuple[IoDMStatus, Pages]]] = {}
        list_cost = 0
        for kind, group in by_kind.items():
            seen = [memos[t.operation_id] for t in group]
            plans[kind] = []
            for status in self._statuses(group, memos):
                pages = (
                    pages_for(seen, status, self._page)
                    if status is IoDMStatus.PROCESSING
                    else Pages(self._page)
                )
                plans[kind].append((status, pages))
                list_cost += expected_cost(pages, seen, status, self._page)
        if len(refs) <= list_cost:  # reading them one by one costs no more than the lists
            await self._singles(list(refs), memos, out)
            return out
        for kind in sorted(by_kind, key=lambda k: k.value):
            group = by_kind[kind]
            params = self._list_params(kind, group)
            wanted = {t.operation_id for t in group}
            plan = plans[kind]
            unverified: list[str] = []
            total: int | None = None
            for status, pages in plan:  # wait before processing: a task moving on is not missed
                total = await self._list(params, status, pages, wanted, out)
                if not pages.whole:
                    # the list's order is undocumented: a task outside the window may
                    # still be processing somewhere else in the list
                    unverified = [op for op in sorted(wanted) if op not in out]
            if unverified:
                whole = math.ceil((total or 0) / self._page)
                if len(unverified) > whole:  # fewer calls than reading them one by one
                    whole_list = Pages(self._page)
                    await self._list(
                        params, IoDMStatus.PROCESSING, whole_list, set(unverified), out
                    )
                    unverified = []
            if not any(status is IoDMStatus.WAIT for status, _ in plan):
                # absent from the processing list: finished, unless it may still wait (never
                # read, or last seen waiting); those few are read one by one
                unverified += [
                    op
                    for op in sorted(wanted)
                    if op not in out
                    and op not in unverified
                    and memos[op].status in (None, IoDMStatus.WAIT)
                ]
            # a task found this way was not where the memo said: its place is forgotten
            await self._singles(sorted(unverified), memos, out, keep_place=False)
        return out

    # -- choices ------------------------------------------------------------------------

    @staticmethod
    def _statuses(group: Sequence[TaskRef], memos: Mapping[str, Memo]) -> tuple[IoDMStatus, ...]:
        """The live statuses worth listing: ``wait`` only while several tasks were seen
        waiting (a new task, or a single waiting one, absent from processing is read alone)."""
        waiting = sum(1 for t in group if memos[t.operation_id].status is IoDMStatus.WAIT)
        return _LIVE if waiting > 1 else (IoDMStatus.PROCESSING,)

    # -- reads ----------------------------------------------------------------------------

    async def _list(
        self,
        params: Mapping[str, str | None],
        status: IoDMStatus,
        pages: Pages,
        wanted: set[str],
        out: dict[str, TaskProgress],
    ) -> int | None:
        """Read ``pages`` of the ``status`` list; return the list's length."""
        query = {**params, "operationStatus": status.value}
        page_no, left = pages.first, pages.count
        total: int | None = None
        while left is None or left > 0:
            page = await self._fetch_page(query, page_no, pages.size)
            total = page.total_count if page.total_count is not None else total
            start = page_no * pages.size
            for i, o in enumerate(page.items):
                if o.operation_id in wanted and o.status in (None, status):
                    out[o.operation_id] = self._progress(o, Memo(status, start + i, total))
            count = len(page.items)
            seen = start + count
            if count == 0 or (total is not None and seen >= total):
                break
            if total is None and count < pages.size:
                break
            page_no += 1
            left = None if left is None else left - 1
        return total

    async def _singles(
        self,
        ops: Sequence[str],
        memos: Mapping[str, Memo],
        out: dict[str, TaskProgress],
        *,
        keep_place: bool = True,
    ) -> None:
        for op in ops:
            try:
                o = await self._get_task(op)
            except TaskNotFound:
                log.warning("task %s not found on the platform", op)
                continue
            old = memos[op]
            memo = (
                Memo(o.status, old.index, old.listed)
                if keep_place and o.status is old.status
                else Memo(o.status)
            )
            out[op] = self._progress(o, memo)

    @staticmethod
    def _progress(o: OperationInfo, memo: Memo) -> TaskProgress:
        return TaskProgress(
            operation_id=o.operation_id,
            state=state_of(o.status),
            counts=counts_of(o),
            memo=memo.text(),
        )
