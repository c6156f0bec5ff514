"""How the CLI numbers waves for people: from 1, as ``fleetwave plan`` shows them.

The store keeps the 0-based wave index; every command shows ``index + 1`` and reads a
``--wave N`` option as that number. ``--wave 0`` (the old 0-based form of ``approve``) is
read as the first wave with a note on stderr, since 0 cannot mean anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from fleetwave.errors import UserError
from fleetwave.report.model import event_subject

__all__ = ["event_subject", "wave_index", "wave_label", "wave_number"]


def wave_number(index: int) -> str:
    """The wave's number as people read it (``"1"`` for index 0; ``"-"`` for devices
    skipped when the targets were resolved, which are in no wave)."""
    return str(index + 1) if index >= 0 else "-"


def wave_label(index: int, names: dict[int, str], total: int | None = None) -> str:
    """``"wave 2 of 4 (wave-2)"``; ``"skipped at resolve"`` for index -1."""
    if index < 0:
        return "skipped at resolve"
    of = f" of {total}" if total else ""
    name = names.get(index)
    return f"wave {index + 1}{of}" + (f" ({name})" if name else "")


def wave_index(
    number: int | None, names: Sequence[str], *, option: str = "--wave", old_zero: bool = False
) -> int | None:
    """The store's 0-based index of wave ``number`` (1-based, as ``plan`` shows it).

    ``old_zero``: accept 0 as the first wave (the command took 0-based indexes before) and
    say so on stderr; otherwise 0 is an error naming the waves there are.
    """
    if number is None:
        return None
    listing = ", ".join(f"{i + 1} {n}" for i, n in enumerate(names)) or "none planned yet"
    if number == 0 and old_zero and names:
        typer.secho(
            f"note: waves count from 1 now (as in `fleetwave plan`); {option} 0 is read as "
            f"wave 1 ({names[0]})",
            err=True,
            fg=typer.colors.YELLOW,
        )
        return 0
    if not 1 <= number <= len(names):
        raise UserError(
            f"{option} {number}: there is no wave {number}",
            hint=f"waves count from 1 as `fleetwave plan` shows them: {listing}",
        )
    return number - 1
