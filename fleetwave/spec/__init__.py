"""Campaign files: the typed model, the YAML loader with file positions, the JSON Schema."""

from __future__ import annotations

from typing import Any

from fleetwave.spec.loader import (
    SpecError,
    SpecProblem,
    check_file,
    check_text,
    load_spec,
    load_spec_text,
)
from fleetwave.spec.model import (
    IODM_MAX_DEVICES_PER_TASK,
    MIN_WINDOW,
    BlackoutSpec,
    BreachAction,
    CampaignSpec,
    Connectivity,
    ExecuteMode,
    FailureKind,
    GroupRef,
    PackageRef,
    PolicySpec,
    ResubmitRule,
    TargetsSpec,
    ThresholdScope,
    ThresholdsSpec,
    WaveSpec,
    Weekday,
    WindowSpec,
    WindowsSpec,
    format_duration,
    parse_duration,
)

__all__ = [
    "IODM_MAX_DEVICES_PER_TASK",
    "MIN_WINDOW",
    "BlackoutSpec",
    "BreachAction",
    "CampaignSpec",
    "Connectivity",
    "ExecuteMode",
    "FailureKind",
    "GroupRef",
    "PackageRef",
    "PolicySpec",
    "ResubmitRule",
    "SpecError",
    "SpecProblem",
    "TargetsSpec",
    "ThresholdScope",
    "ThresholdsSpec",
    "WaveSpec",
    "Weekday",
    "WindowSpec",
    "WindowsSpec",
    "campaign_json_schema",
    "check_file",
    "check_text",
    "format_duration",
    "load_spec",
    "load_spec_text",
    "parse_duration",
]


def campaign_json_schema() -> dict[str, Any]:
    """The JSON Schema of a campaign file (for editor completion and CI checks)."""
    schema = CampaignSpec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fleetwave.dev/schemas/campaign.json",
        **schema,
    }
