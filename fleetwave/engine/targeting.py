"""The campaign's exclusions and explicit device list, re-read before every submission.

A campaign's devices are fixed when it is planned, but an operator may exclude devices
later (``exclude``/``exclude_file``, applied from the next round) or, after accepting the
change, remove them from ``devices``/``devices_file``. The runner screens every batch
against what these files say *now* (:func:`fleetwave.engine.decide.screen_targets`), so
an excluded device is never sent. Files are re-read when their size, inode or mtime
changed; a missing or unreadable file is a :class:`TargetProblem` (nothing is sent).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

from fleetwave.engine.resolve import TargetProblem, read_id_file
from fleetwave.spec.loader import SpecError, ids_file_fingerprint
from fleetwave.spec.model import CampaignSpec

__all__ = ["Targeting", "TargetingReader", "explicit_ids"]

#: Device IDs shown in an event before "and N more".
SHOWN = 20


@dataclass(frozen=True, slots=True)
class Targeting:
    """What the campaign's target lists say now.

    ``excluded``: ``exclude`` + ``exclude_file``. ``targeted``: ``devices`` +
    ``devices_file`` when the campaign names no groups (then every device comes from
    them), else None (a group member's source is not stored, so removal from the file
    cannot be told apart; exclude it instead). ``explicit_key``: the explicit list's
    content fingerprint (None without ``devices_file``).
    """

    excluded: frozenset[str]
    targeted: frozenset[str] | None
    explicit_key: str | None


def explicit_ids(spec: CampaignSpec) -> Iterator[str]:
    """``targets.devices`` then the IDs of ``targets.devices_file``, streamed."""
    t = spec.targets
    files = read_id_file(t.devices_file) if t.devices_file else iter(())
    return itertools.chain(t.devices, files)


def _stat_key(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TargetProblem(
            f"cannot read device ID file {path}: {exc.strerror or exc}",
            hint="restore the file (or remove it from the campaign file); nothing was sent",
        ) from None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class TargetingReader:
    """Reads a spec's target lists, again only for files that changed since the last read."""

    def __init__(self, spec: CampaignSpec) -> None:
        self.spec = spec
        self._key: tuple[object, ...] | None = None
        self._last: Targeting | None = None

    def read(self) -> Targeting:
        """The lists as the files say now (raises :class:`TargetProblem` if unreadable)."""
        t = self.spec.targets
        key = (_stat_key(t.exclude_file), _stat_key(t.devices_file))
        if self._last is not None and key == self._key:
            return self._last
        excluded = set(t.exclude)
        if t.exclude_file:
            excluded.update(read_id_file(t.exclude_file))
        targeted = None if t.groups else frozenset(explicit_ids(self.spec))
        explicit_key = None
        if t.devices_file:
            try:
                explicit_key = ids_file_fingerprint(t.devices_file)
            except SpecError as exc:  # same message, as a target problem
                raise TargetProblem(str(exc)) from None
        self._key = key
        self._last = Targeting(frozenset(excluded), targeted, explicit_key)
        return self._last
