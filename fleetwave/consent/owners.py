"""Reading who owns which device from a CSV or JSON file, with FILE:LINE errors.

CSV: a header with ``device_id`` and ``owner_id`` columns, one device a row. JSON: a list
of ``{"device_id": ..., "owner_id": ...}`` objects (or an object mapping device IDs to
owner IDs). Streams the rows; nothing is written before the whole file is read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fleetwave.errors import UserError

__all__ = ["OwnershipFileError", "read_ownership"]

_MAX_ID = 128
_MAX_OWNER = 200


class OwnershipFileError(UserError):
    """An ownership file that cannot be read; the message names FILE:LINE."""


def _check(path: Path, line: int, device_id: object, owner_id: object) -> tuple[str, str]:
    where = f"{path}:{line}"
    if not isinstance(device_id, str) or not device_id.strip():
        raise OwnershipFileError(
            f"{where}: device_id is missing or empty", hint="give every row a device ID"
        )
    if not isinstance(owner_id, str) or not owner_id.strip():
        raise OwnershipFileError(
            f"{where}: owner_id of device {device_id.strip()} is missing or empty",
            hint="give every device an owner ID",
        )
    d, o = device_id.strip(), owner_id.strip()
    if len(d) > _MAX_ID or len(o) > _MAX_OWNER:
        raise OwnershipFileError(
            f"{where}: device_id longer than {_MAX_ID} or owner_id longer than {_MAX_OWNER}"
        )
    return d, o


def read_ownership(path: Path) -> list[tuple[str, str]]:
    """``(device_id, owner_id)`` pairs from a ``.csv`` or ``.json`` file (a device listed
    twice with two owners is an error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OwnershipFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise OwnershipFileError(f"{path}: not UTF-8 text") from exc
    pairs: list[tuple[str, str, int]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OwnershipFileError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
        if isinstance(data, dict):
            pairs = [(*_check(path, 1, d, o), 1) for d, o in data.items()]
        elif isinstance(data, list):
            for i, row in enumerate(data):
                if not isinstance(row, dict):
                    raise OwnershipFileError(
                        f"{path}: item {i} is not an object with device_id and owner_id"
                    )
                pairs.append((*_check(path, 1, row.get("device_id"), row.get("owner_id")), 1))
        else:
            raise OwnershipFileError(
                f"{path}:1: expected a list of objects or an object of device_id: owner_id"
            )
    else:
        reader = csv.DictReader(text.splitlines())
        fields = set(reader.fieldnames or [])
        if not {"device_id", "owner_id"} <= fields:
            raise OwnershipFileError(
                f"{path}:1: the header must name device_id and owner_id "
                f"(found {', '.join(sorted(fields)) or 'nothing'})"
            )
        for row in reader:
            d, o = _check(path, reader.line_num, row["device_id"], row["owner_id"])
            pairs.append((d, o, reader.line_num))
    seen: dict[str, str] = {}
    for device_id, owner_id, line in pairs:
        if seen.setdefault(device_id, owner_id) != owner_id:
            raise OwnershipFileError(
                f"{path}:{line}: device {device_id} is listed with two owners "
                f"({seen[device_id]} and {owner_id})",
                hint="keep one row per device",
            )
    return list(seen.items())
