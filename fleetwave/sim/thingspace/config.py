"""Start-up configuration of the ThingSpace simulator (CLI, ``python -m`` and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pendulum

from fleetwave.sim.config import DEFAULT_START, SimConfig

__all__ = [
    "DEMO_ACCOUNT",
    "DEMO_KEY",
    "DEMO_PASSWORD",
    "DEMO_SECRET",
    "DEMO_USERNAME",
    "TSConfig",
]

DEMO_KEY = "fleetwave-ts-key"
DEMO_SECRET = "fleetwave-ts-secret"
DEMO_USERNAME = "fleetwave-demo"
DEMO_PASSWORD = "fleetwave-demo-password"
DEMO_ACCOUNT = "0000123456-00001"


@dataclass
class TSConfig:
    """Fleet, behaviour, credentials and contract settings of one simulated ThingSpace account."""

    devices: int = 2000
    groups: int = 8
    seed: int = 1
    rate_limit: int = 100  # calls a minute per client key (negotiated per contract), 0 = unlimited
    clock: str = "real"  # "real" | "manual" | "scaled:FACTOR"
    failure_rate: float = 0.02  # probability that one device's upgrade fails
    request_failure_rate: float = 0.0  # probability that a request is RequestFailed on acceptance
    start: pendulum.DateTime | None = None
    account: str = DEMO_ACCOUNT
    client_key: str = DEMO_KEY
    client_secret: str = DEMO_SECRET
    username: str = DEMO_USERNAME
    password: str = DEMO_PASSWORD
    license_required: bool = False  # MRC subscription: devices need a license to be upgraded
    licenses: int = 0  # licenses in the MRC pool (0: one per device)
    allow_http_callbacks: bool = False  # the platform requires https:// callback URLs
    callback_ca: Path | None = None  # PEM CA bundle trusted when pushing callbacks
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __repr__(self) -> str:  # never show secrets
        return (
            f"TSConfig(devices={self.devices}, groups={self.groups}, seed={self.seed}, "
            f"rate_limit={self.rate_limit}, clock={self.clock!r}, "
            f"failure_rate={self.failure_rate}, account={self.account!r}, "
            f"license_required={self.license_required}, tls={self.tls_cert is not None})"
        )

    @property
    def start_time(self) -> pendulum.DateTime:
        return self.start or DEFAULT_START

    def validate(self) -> None:
        """Raise ValueError with a clear message when a setting is out of range."""
        shared = SimConfig(  # the settings both simulators have
            devices=self.devices,
            groups=self.groups,
            seed=self.seed,
            rate_limit=self.rate_limit,
            clock=self.clock,
            failure_rate=self.failure_rate,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
        )
        shared.validate()
        if self.devices > 1_000_000:
            raise ValueError(
                f"--devices must be at most 1000000 (IMEI serials), not {self.devices}"
            )
        if not 0.0 <= self.request_failure_rate <= 1.0:
            raise ValueError(
                f"--request-failure-rate must be between 0 and 1, not {self.request_failure_rate}"
            )
        if self.licenses < 0:
            raise ValueError(f"--licenses must be 0 (one per device) or more, not {self.licenses}")
        for name in ("account", "client_key", "client_secret", "username", "password"):
            if not getattr(self, name):
                raise ValueError(f"the simulator needs a non-empty {name}")
        if self.callback_ca is not None and not Path(self.callback_ca).is_file():
            raise ValueError(f"--callback-ca {self.callback_ca}: no such file")
