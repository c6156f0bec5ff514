"""Campaign files -> :class:`CampaignSpec`, with every error as ``FILE:LINE:COL: message``.

YAML is read with ruamel.yaml (YAML 1.2: ``22:00`` and ``on`` stay strings) keeping the
position of every key and value; pydantic errors and cross-field issues are mapped back
to those positions. Unknown keys get a did-you-mean.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

from fleetwave.errors import UserError
from fleetwave.spec.model import DEFER_CHECKS, CampaignSpec, Issue, iter_issues

__all__ = [
    "SpecError",
    "SpecProblem",
    "SpecSource",
    "check_file",
    "check_file_with_source",
    "check_text",
    "ids_file_fingerprint",
    "key_position",
    "load_spec",
    "load_spec_text",
    "load_spec_with_source",
    "spec_snapshot",
]

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One problem in a campaign file; ``line``/``col`` are 1-based, 0 when file-level."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class SpecError(UserError):
    """A campaign file is invalid; ``problems`` lists every error found, in file order."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid campaign"
        more = len(self.problems) - 1
        super().__init__(
            first + (f" (and {more} more; run 'fleetwave validate FILE')" if more > 0 else "")
        )


@dataclass(frozen=True, slots=True)
class SpecSource:
    """Where a loaded spec came from: its file name and parsed YAML (with positions), so
    checks made after loading (e.g. against a platform's capabilities) still report
    FILE:LINE:COL. ``data`` None: no file (a spec built in code)."""

    file: str
    data: Any = None

    def problem(self, loc: Loc, message: str) -> SpecProblem:
        """One problem at ``loc`` (a path of keys/indexes), rendered ``where: message``."""
        where = _render_loc(loc)
        text = f"{where}: {message}" if where else message
        if self.data is None:
            return SpecProblem(self.file, 0, 0, text)
        line, col = _position(self.data, loc)
        return SpecProblem(self.file, line, col, text)


# --------------------------------------------------------------------------- YAML


def _plain(node: Any) -> Any:
    """ruamel's round-trip nodes -> plain Python (dict, list, str, int, float, bool, date)."""
    if isinstance(node, CommentedMap):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int) and type(node).__name__ == "ScalarBoolean":
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.datetime):
        return dt.datetime(*node.timetuple()[:6], node.microsecond, tzinfo=node.tzinfo)
    if isinstance(node, str):
        return str(node)
    return node


def _position(data: Any, loc: Loc, *, key: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the deepest node of ``loc`` present in ``data``.

    ``key=True`` points at the last key itself (for unknown keys) instead of its value."""
    line, col = 1, 1
    if isinstance(data, CommentedMap | CommentedSeq):
        line, col = data.lc.line + 1, data.lc.col + 1
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap):
            match = _find_key(node, part)
            if match is None:
                break
            ln, cl = node.lc.key(match) if (key and last) else node.lc.value(match)
            if not key or not last:
                kl, kc = node.lc.key(match)
                # a nested block mapping's "value" position is its first key; the key
                # line reads better for errors about the whole section
                if isinstance(node[match], CommentedMap | CommentedSeq) and ln != kl:
                    ln, cl = kl, kc
            line, col = ln + 1, cl + 1
            node = node[match]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            ln, cl = node.lc.item(part)
            line, col = ln + 1, cl + 1
            node = node[part]
        else:
            break
    return line, col


def _find_key(node: CommentedMap, part: str | int) -> Any:
    if part in node:
        return part
    for k in node:
        if str(k) == str(part) or (isinstance(k, str) and k.lower() == str(part).lower()):
            return k
    return None


# --------------------------------------------------------------------------- model walking


def _unwrap(tp: Any) -> list[Any]:
    """Model classes reachable from an annotation (through Optional, list, dict, Annotated)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _unwrap(a)]
    if origin in (list, tuple, Sequence):
        return [m for a in typing.get_args(tp) for m in _unwrap(a)]
    if origin is dict:
        return _unwrap(typing.get_args(tp)[1])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose fields are the keys allowed at ``loc`` (None if not a model)."""
    model: type[BaseModel] = CampaignSpec
    i = 0
    while i < len(loc):
        part = loc[i]
        if isinstance(part, int):
            i += 1
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        found = _unwrap(ann)
        if not found:
            return None
        model = found[0]
        # a dict-valued field consumes one more part (the key)
        if typing.get_origin(ann) is dict or any(
            typing.get_origin(a) is dict for a in typing.get_args(ann)
        ):
            i += 1
        i += 1
    return model


def _allowed_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _render_loc(loc: Loc) -> str:
    return Issue(loc, "").render().removesuffix(": ")


def _did_you_mean(word: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    type(None): "empty",
}


def _describe(value: Any) -> str:
    for tp, name in _TYPE_NAMES.items():
        if type(value) is tp:
            return name
    if isinstance(value, dt.date):
        return "a date"
    return type(value).__name__


def _message(err: ErrorDetails) -> tuple[Loc, str, bool]:
    """(location, message, point at key) for one pydantic error."""
    loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    where = _render_loc(loc)
    if kind == "missing":
        field = str(loc[-1])
        model = _model_at(loc[:-1])
        desc = ""
        if model and field in model.model_fields:
            desc = model.model_fields[field].description or ""
        return loc, f"missing required key '{field}'" + (f" ({desc})" if desc else ""), False
    if kind == "extra_forbidden":
        bad = str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        hint = _did_you_mean(bad, allowed)
        prefix = _render_loc(loc[:-1])
        where_txt = f" in {prefix}" if prefix else ""
        if hint:
            return loc, f"unknown key '{bad}'{where_txt}; did you mean '{hint}'?", True
        return loc, f"unknown key '{bad}'{where_txt}; allowed: {', '.join(allowed)}", True
    if "[key]" in err["loc"] and kind == "enum":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _did_you_mean(str(value), expected)
        extra = f"; did you mean '{hint}'?" if hint else ""
        return (
            loc,
            f"{where}: unknown key '{value}'; allowed: {', '.join(expected)}{extra}",
            True,
        )
    if kind == "enum" or kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _did_you_mean(str(value), expected)
        extra = f"; did you mean '{hint}'?" if hint else ""
        return (
            loc,
            f"{where}: {value!r} is not allowed; use one of {', '.join(expected)}{extra}",
            False,
        )
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return loc, f"{where}: must be a mapping of keys, not {_describe(value)}", False
    if kind in ("list_type", "tuple_type"):
        return loc, f"{where}: must be a list, not {_describe(value)}", False
    if kind == "string_type":
        hint = f"; quote it: '{value}'" if isinstance(value, int | float | dt.date) else ""
        return loc, f"{where}: must be a string, not {_describe(value)}{hint}", False
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        return (
            loc,
            f"{where}: {value!r} is not a valid campaign name; use lower case letters, digits, "
            "'.', '_' and '-', starting with a letter or digit, at most 63 characters",
            False,
        )
    if kind == "string_pattern_mismatch" and loc[-2:] == ("platform", "profile"):
        return (
            loc,
            f"{where}: {value!r} is not a profile name; use letters, digits and '_'",
            False,
        )
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return loc, f"{where}: {msg}", False
    msg = err["msg"]
    msg = msg[:1].lower() + msg[1:]
    if kind in (
        "bool_type",
        "bool_parsing",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "int_from_float",
        "date_type",
        "date_parsing",
        "date_from_datetime_inexact",
    ):
        return loc, f"{where}: {msg}, not {value!r}", False
    if kind.startswith(("greater", "less", "too_short", "too_long")):
        return loc, f"{where}: {msg} (got {value!r})", False
    return loc, f"{where}: {msg}", False


# --------------------------------------------------------------------------- public


def _read_ids_file_check(
    spec: CampaignSpec, base: Path, data: Any, file: str
) -> tuple[CampaignSpec, list[SpecProblem]]:
    problems: list[SpecProblem] = []
    updates: dict[str, str] = {}
    for key in ("devices_file", "exclude_file"):
        value = getattr(spec.targets, key)
        if value is None:
            continue
        path = Path(value)
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            line, col = _position(data, ("targets", key))
            problems.append(
                SpecProblem(
                    file,
                    line,
                    col,
                    f"targets.{key}: no file {value!r} (paths are relative to the campaign "
                    f"file's directory, here {base})",
                )
            )
        else:
            updates[key] = str(path.resolve())
    if updates and not problems:
        spec = spec.model_copy(update={"targets": spec.targets.model_copy(update=updates)})
    return spec, problems


def _validate(
    data: Any, file: str, base: Path | None
) -> tuple[CampaignSpec | None, list[SpecProblem]]:
    if data is None:
        return None, [
            SpecProblem(
                file,
                0,
                0,
                "the file is empty; a campaign is a mapping with name, kind, package, targets "
                "and waves (see docs/campaign-format.md)",
            )
        ]
    if not isinstance(data, dict):
        line, col = _position(data, ())
        return None, [
            SpecProblem(
                file,
                line,
                col,
                f"the top level must be a mapping of keys (name: ..., kind: ...), not "
                f"{_describe(_plain(data))}",
            )
        ]
    plain = _plain(data)
    problems: list[SpecProblem] = []
    try:
        spec = CampaignSpec.model_validate(plain, context={DEFER_CHECKS: True})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc, msg, at_key = _message(err)
            line, col = _position(data, loc, key=at_key)
            problems.append(SpecProblem(file, line, col, msg))
        return None, _sorted(problems)
    for issue in iter_issues(spec):
        line, col = _position(data, issue.loc)
        problems.append(SpecProblem(file, line, col, issue.render()))
    if base is not None and not problems:
        spec, problems = _read_ids_file_check(spec, base, data, file)
    return (None if problems else spec), _sorted(problems)


def _sorted(problems: list[SpecProblem]) -> list[SpecProblem]:
    seen: set[SpecProblem] = set()
    out = []
    for p in sorted(problems, key=lambda p: (p.line, p.col)):
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


#: Most aliases (``*name``) a campaign file may use.
MAX_ALIASES = 500
#: Most values aliases may add to a campaign file once expanded (each alias adds the size
#: of what its anchor holds). Caps "billion laughs" documents, whose nested aliases
#: expand exponentially, before anything is built from them.
MAX_ALIAS_EXPANSION = 10_000


def _alias_problem(text: str, file: str) -> SpecProblem | None:
    """A problem if the YAML's aliases are too many or expand too far, else None.

    Reads the event stream once (linear in the text) and sizes each anchored node as its
    expanded value count, so nothing exponential is ever built."""
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, values so far) per collection
    aliases = added = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, AliasEvent):
            aliases += 1
            size = sizes.get(event.anchor or "", 1)
            added += size
            mark = event.start_mark
            if aliases > MAX_ALIASES or added > MAX_ALIAS_EXPANSION:
                what = (
                    f"more than {MAX_ALIASES} aliases"
                    if aliases > MAX_ALIASES
                    else f"aliases that expand to more than {MAX_ALIAS_EXPANSION} values"
                )
                return SpecProblem(
                    file,
                    mark.line + 1 if mark else 0,
                    mark.column + 1 if mark else 0,
                    f"YAML error: {what} (at *{event.anchor}); a campaign file needs no such "
                    "repetition: write the values out, or use anchors sparingly",
                )
        elif isinstance(event, ScalarEvent):
            size = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, CollectionStartEvent):
            open_nodes.append((event.anchor, 1))
            continue
        elif isinstance(event, CollectionEndEvent) and open_nodes:
            anchor, size = open_nodes.pop()
            if anchor:
                sizes[anchor] = size
        else:
            continue
        if open_nodes:
            anchor, count = open_nodes[-1]
            open_nodes[-1] = (anchor, count + size)
    return None


def _parse(text: str, file: str) -> tuple[Any, list[SpecProblem]]:
    yaml = YAML(typ="rt")
    try:
        bomb = _alias_problem(text, file)
        if bomb is not None:
            return None, [bomb]
        return yaml.load(text), []
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        col = mark.column + 1 if mark else 0
        what = exc.problem or "invalid YAML"
        if "duplicate key" in what:
            what = what.split(" with value")[0]
        ctx = f" ({exc.context})" if exc.context and "duplicate" not in what else ""
        return None, [SpecProblem(file, line, col, f"YAML syntax error: {what}{ctx}")]
    except YAMLError as exc:
        return None, [SpecProblem(file, 0, 0, f"YAML error: {exc}")]


def check_text(
    text: str, file: str = "<string>", *, base: Path | None = None
) -> tuple[CampaignSpec | None, list[SpecProblem]]:
    """Parse and validate campaign YAML text; returns the spec or the problems (never raises
    for bad input). ``base`` is the directory for ``devices_file`` paths (unchecked if None)."""
    spec, problems, _ = _check_text(text, file, base)
    return spec, problems


def _check_text(
    text: str, file: str, base: Path | None
) -> tuple[CampaignSpec | None, list[SpecProblem], SpecSource]:
    data, problems = _parse(text, file)
    if problems:
        return None, problems, SpecSource(file)
    spec, problems = _validate(data, file, base)
    return spec, problems, SpecSource(file, data)


def check_file(path: str | Path) -> tuple[CampaignSpec | None, list[SpecProblem]]:
    """Like :func:`check_text` for a file, with readable errors for unreadable files."""
    spec, problems, _ = check_file_with_source(path)
    return spec, problems


def check_file_with_source(
    path: str | Path,
) -> tuple[CampaignSpec | None, list[SpecProblem], SpecSource]:
    """:func:`check_file`, plus the file's :class:`SpecSource` for later checks."""
    p = Path(path)
    file = str(path)
    none = SpecSource(file)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [SpecProblem(file, 0, 0, "no such file")], none
    except IsADirectoryError:
        return None, [SpecProblem(file, 0, 0, "is a directory, not a campaign file")], none
    except UnicodeDecodeError as exc:
        why = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        return None, [SpecProblem(file, 0, 0, why)], none
    except OSError as exc:
        return None, [SpecProblem(file, 0, 0, f"cannot read: {exc.strerror or exc}")], none
    return _check_text(text, file, p.parent.resolve())


def key_position(path: str | Path, loc: Loc) -> tuple[int, int]:
    """1-based (line, col) of the key ``loc`` (e.g. ``("name",)``) in a campaign file;
    (0, 0) when the file cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0, 0
    data, problems = _parse(text, str(path))
    if problems or not isinstance(data, CommentedMap):
        return 0, 0
    return _position(data, loc, key=True)


def load_spec(path: str | Path) -> CampaignSpec:
    """Load a campaign file; raises :class:`SpecError` listing every problem."""
    spec, problems = check_file(path)
    if spec is None:
        raise SpecError(problems)
    return spec


def load_spec_with_source(path: str | Path) -> tuple[CampaignSpec, SpecSource]:
    """:func:`load_spec`, plus the file's :class:`SpecSource` (positions for later checks)."""
    spec, problems, source = check_file_with_source(path)
    if spec is None:
        raise SpecError(problems)
    return spec, source


def load_spec_text(text: str, file: str = "<string>", *, base: Path | None = None) -> CampaignSpec:
    """Load campaign YAML text; raises :class:`SpecError` listing every problem."""
    spec, problems = check_text(text, file, base=base)
    if spec is None:
        raise SpecError(problems)
    return spec


# --------------------------------------------------------------------------- snapshots

_HASH_MOD = 1 << 256


def ids_file_fingerprint(path: str | Path) -> str:
    """The content fingerprint of a file of device IDs: ``ids:<count>:sha256:<hex>``.

    Only the IDs count (one per line; blank lines, ``#`` comments and surrounding blanks
    are ignored) and not their order: the digest is the sum of each ID's SHA-256, so the
    file is streamed in constant memory. Where the file sits does not matter, so a
    campaign continues from a moved checkout. Raises :class:`SpecError` if unreadable.
    """
    total = count = 0
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for line in fh:
                text = line.split("#", 1)[0].strip()
                if text:
                    count += 1
                    digest = hashlib.sha256(text.encode()).digest()
                    total = (total + int.from_bytes(digest, "big")) % _HASH_MOD
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise SpecError(
            [SpecProblem(str(path), 0, 0, f"cannot read the device ID file: {why}")]
        ) from None
    return f"ids:{count}:sha256:{total:064x}"


def spec_snapshot(spec: CampaignSpec) -> dict[str, Any]:
    """What the store keeps of a campaign spec: its JSON with each ids file
    (``devices_file``, ``exclude_file``) replaced by its content fingerprint, so the
    snapshot (and its ``spec_fingerprint``) depends on what the files list, not on where
    they sit."""
    data = spec.model_dump(mode="json")
    if data.get("consent") is None:
        data.pop("consent", None)  # campaigns stored before consent existed keep their hash
    targets = data["targets"]
    for key in ("devices_file", "exclude_file"):
        if targets.get(key) is not None:
            targets[key] = ids_file_fingerprint(targets[key])
    return data
