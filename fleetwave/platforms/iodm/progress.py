"""Task progress on IoDM at the fewest calls: task-list pages or single task reads.

Progress comes from task-list pages (100 tasks a call, with per-task statistics), filtered
to the live statuses and, when every task asked about belongs to one known package, to
that package's ``deviceType``/``model``/``manufacturerName`` (other campaigns' tasks stay
out of the pages). A task that no longer shows up there has finished, and is left out of
the answer. A task's status only moves forward (wait, processing, final), so the ``wait``
list is read only while several tasks were last seen waiting; a new task (or a lone
waiting one) missing from the ``processing`` list is read by itself.

Each answer carries a memo per task (handed back by the engine next round): the status
word it was seen with and, when it came from a list, its position and the list's length
(``processing#157/240``). From those the next round estimates what the lists will cost,
and reads the tasks one by one instead when that is cheaper (a campaign's tail, beside
tasks the engine closed at its timeout that the platform keeps ``processing``).
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

__all__ = ["Memo", "ProgressReader", "counts_of", "state_of"]

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
        plans = {kind: self._statuses(group, memos) for kind, group in by_kind.items()}
        list_cost = sum(
            self._pages(group, memos, status)
            for kind, group in by_kind.items()
            for status in plans[kind]
        )
        if len(refs) <= list_cost:  # reading them one by one costs no more than the lists
            await self._singles(list(refs), refs, memos, out)
            return out
        for kind in sorted(by_kind, key=lambda k: k.value):
            group = by_kind[kind]
            params = self._list_params(kind, group)
            wanted = {t.operation_id for t in group}
            for status in plans[kind]:  # wait before processing: a task moving on is not missed
                await self._list(params, status, wanted, refs, out)
            if IoDMStatus.WAIT not in plans[kind]:
                # absent from the processing list: finished, unless it may still wait (never
                # read, or last seen waiting); those few are read one by one
                maybe = [
                    op
                    for op in sorted(wanted)
                    if op not in out and memos[op].status in (None, IoDMStatus.WAIT)
                ]
                await self._singles(maybe, refs, memos, out)
        return out

    # -- choices ------------------------------------------------------------------------

    @staticmethod
    def _statuses(group: Sequence[TaskRef], memos: Mapping[str, Memo]) -> tuple[IoDMStatus, ...]:
        """The live statuses worth listing: ``wait`` only while several tasks were seen
        waiting (a new task, or a single waiting one, absent from processing is read alone)."""
        waiting = sum(1 for t in group if memos[t.operation_id].status is IoDMStatus.WAIT)
        return _LIVE if waiting > 1 else (IoDMStatus.PROCESSING,)

    def _pages(
        self, group: Sequence[TaskRef], memos: Mapping[str, Memo], status: IoDMStatus
    ) -> int:
        """Pages the list of ``status`` is expected to take: its length when last read (at
        least one page per task seen there), else one page."""
        seen = [memos[t.operation_id] for t in group]
        listed = [m.listed for m in seen if m.status is status and m.listed is not None]
        in_it = sum(1 for m in seen if m.status is status)
        return max(1, math.ceil(max([in_it, *listed]) / self._page))

    # -- reads ----------------------------------------------------------------------------

    async def _list(
        self,
        params: Mapping[str, str | None],
        status: IoDMStatus,
        wanted: set[str],
        refs: Mapping[str, TaskRef],
        out: dict[str, TaskProgress],
    ) -> None:
        query = {**params, "operationStatus": status.value}
        page_no = seen = 0
        while True:
            page = await self._fetch_page(query, page_no, self._page)
            total = page.total_count
            for i, o in enumerate(page.items):
                if o.operation_id in wanted and o.status in (None, status):
                    index = seen + i
                    memo = Memo(status, index, total if total is not None else None)
                    out[o.operation_id] = self._progress(o, memo)
            count = len(page.items)
            seen += count
            if count == 0 or (total is not None and seen >= total):
                return
            if total is None and count < self._page:
                return
            page_no += 1

    async def _singles(
        self,
        ops: Sequence[str],
        refs: Mapping[str, TaskRef],
        memos: Mapping[str, Memo],
        out: dict[str, TaskProgress],
    ) -> None:
        for op in ops:
            try:
                o = await self._get_task(op)
            except TaskNotFound:
                log.warning("task %s not found on the platform", op)
                continue
            old = memos[op]
            memo = (
                Memo(o.status, old.index, old.listed) if o.status is old.status else Memo(o.status)
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
