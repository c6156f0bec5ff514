"""Suite-wide settings: no telemetry, no network, isolated homes for Prefect and fleetwave.

``FLEETWAVE_HOME`` points at a directory of this test session, so no test (and no
``fleetwave`` subprocess a test starts) reads or writes the default store in the real home.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# A consent campaign's flow run serves the end-user API; in tests on a free port, never the
# default 8780 that a parallel test worker (or a person's `fleetwave consent serve`) holds.
os.environ.setdefault("FLEETWAVE_CONSENT_PORT", "0")

_FLEETWAVE_HOME = tempfile.mkdtemp(prefix="fleetwave-test-home-")
os.environ["FLEETWAVE_HOME"] = _FLEETWAVE_HOME
atexit.register(shutil.rmtree, _FLEETWAVE_HOME, ignore_errors=True)
