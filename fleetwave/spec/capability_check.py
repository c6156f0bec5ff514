"""A campaign's limits against its platform's capabilities, with FILE:LINE:COL errors.

The campaign model knows no platform's numbers: the largest task, the execution policies,
the shortest window, groups and package kinds are each platform's
:class:`~fleetwave.platforms.base.Capabilities`. ``fleetwave plan``, ``fleetwave
validate`` and the engine (before anything is submitted) call :func:`apply_capabilities`
with the spec, where it came from (:class:`~fleetwave.spec.loader.SpecSource`) and the
capabilities of the platform the spec names.
"""

from __future__ import annotations

from datetime import timedelta

from fleetwave.platforms.base import Capabilities
from fleetwave.spec.loader import SpecError, SpecProblem, SpecSource
from fleetwave.spec.model import CampaignSpec, ExecuteMode, Issue, format_duration

__all__ = ["apply_capabilities", "capability_issues", "capability_problems", "chunk_size"]


def chunk_size(spec: CampaignSpec, caps: Capabilities) -> int:
    """Devices per task: the spec's ``policy.max_devices_per_task``, else the platform's
    largest task; never above the platform's largest task."""
    wanted = spec.policy.max_devices_per_task
    return min(wanted, caps.max_devices_per_task) if wanted else caps.max_devices_per_task


def _span(td: timedelta) -> str:
    return format_duration(td) if td >= timedelta(seconds=1) else f"{td.total_seconds():g}s"


def capability_issues(spec: CampaignSpec, caps: Capabilities) -> list[Issue]:
    """Everything in ``spec`` that platform ``caps`` cannot do (pure; locations in the spec)."""
    where = f"platform {caps.platform}"
    out: list[Issue] = []
    if spec.kind not in caps.package_kinds:
        kinds = ", ".join(sorted(k.value for k in caps.package_kinds)) or "none"
        out.append(
            Issue(
                ("kind",),
                f"{where} does not upgrade {spec.kind.value} packages (it upgrades: {kinds})",
            )
        )
    pol = spec.policy
    largest = caps.max_devices_per_task
    if pol.max_devices_per_task is not None and pol.max_devices_per_task > largest:
        out.append(
            Issue(
                ("policy", "max_devices_per_task"),
                f"{pol.max_devices_per_task} is above the largest task of {where} "
                f"({largest} devices); use {largest} or less, or leave it out",
            )
        )
    size = chunk_size(spec, caps)
    if (
        pol.max_devices_per_task is None
        and pol.max_inflight_devices is not None
        and pol.max_inflight_devices < size
    ):
        out.append(
            Issue(
                ("policy", "max_inflight_devices"),
                f"{pol.max_inflight_devices} is below max_devices_per_task ({size}, the "
                f"largest task of {where}); no full task could ever be in flight",
            )
        )
    execute = pol.execute.execute_type
    if execute not in caps.execute_types:
        allowed = sorted(m.value for m in ExecuteMode if m.execute_type in caps.execute_types)
        out.append(
            Issue(
                ("policy", "execute"),
                f"{where} cannot run tasks with execute: {pol.execute.value}; use one of "
                f"{', '.join(allowed) or '(none)'}",
            )
        )
    if spec.windows is not None and caps.min_window is not None:
        for i, w in enumerate(spec.windows.allowed):
            if w.length < caps.min_window:
                out.append(
                    Issue(
                        ("windows", "allowed", i, "end"),
                        f"the window {w.start:%H:%M}-{w.end:%H:%M} lasts "
                        f"{format_duration(w.length)}; {where} rejects windows under "
                        f"{_span(caps.min_window)}",
                    )
                )
    if spec.windows is not None and spec.windows.install is not None:
        if not caps.install_windows:
            out.append(
                Issue(
                    ("windows", "install"),
                    f"{where} takes no install hours apart from the task's window; leave "
                    "windows.install out (devices install inside the allowed window)",
                )
            )
        elif caps.min_window is not None:
            i_w = spec.windows.install
            length = timedelta(minutes=i_w._end_minutes() - i_w.start.hour * 60 - i_w.start.minute)
            if length < caps.min_window:
                out.append(
                    Issue(
                        ("windows", "install", "end"),
                        f"the install window {i_w.start:%H:%M}-{i_w.end:%H:%M} lasts "
                        f"{format_duration(length)}; {where} rejects windows under "
                        f"{_span(caps.min_window)}",
                    )
                )
    if spec.targets.groups and not caps.has_groups:
        out.append(
            Issue(
                ("targets", "groups"),
                f"{where} has no device groups; list the devices (devices or devices_file)",
            )
        )
    return out


def capability_problems(
    spec: CampaignSpec, caps: Capabilities, source: SpecSource | None = None
) -> list[SpecProblem]:
    """:func:`capability_issues` as problems at their FILE:LINE:COL (``source``), in file
    order; without a source they name the campaign."""
    src = source or SpecSource(f"campaign {spec.name}")
    problems = [src.problem(i.loc, i.message) for i in capability_issues(spec, caps)]
    return sorted(problems, key=lambda p: (p.line, p.col))


def apply_capabilities(
    spec: CampaignSpec, caps: Capabilities, source: SpecSource | None = None
) -> CampaignSpec:
    """The spec with the platform's defaults filled in (``policy.max_devices_per_task`` =
    its largest task when absent); raises :class:`SpecError` listing every limit the
    platform cannot meet."""
    problems = capability_problems(spec, caps, source)
    if problems:
        raise SpecError(problems)
    if spec.policy.max_devices_per_task is not None:
        return spec
    policy = spec.policy.model_copy(update={"max_devices_per_task": caps.max_devices_per_task})
    return spec.model_copy(update={"policy": policy})
