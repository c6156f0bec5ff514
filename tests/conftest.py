"""Suite-wide settings: no telemetry, no network, isolated homes for Prefect and fleetwave."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
