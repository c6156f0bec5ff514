"""Campaign files: the typed model, the YAML loader with file positions, the JSON Schema."""

from __future__ import annotations

from typing import Any

from fleetwave.spec.capability_check import (
    apply_capabilities,
    capability_issues,
    capability_problems,
)
from fleetwave.spec.loader import *  # noqa: F403
from fleetwave.spec.loader import __all__ as _loader_all
from fleetwave.spec.model import *  # noqa: F403
from fleetwave.spec.model import CampaignSpec
from fleetwave.spec.model import __all__ as _model_all

__all__ = [
    *_loader_all,
    *_model_all,
    "apply_capabilities",
    "campaign_json_schema",
    "capability_issues",
    "capability_problems",
]


def campaign_json_schema() -> dict[str, Any]:
    """The JSON Schema of a campaign file (for editor completion and CI checks)."""
    schema = CampaignSpec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fleetwave.dev/schemas/campaign.json",
        **schema,
    }
