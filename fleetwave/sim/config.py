"""The simulator's start-up configuration (shared by the CLI, ``python -m`` and tests)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import pendulum

__all__ = ["DEFAULT_START", "DEMO_APP_ID", "DEMO_SECRET", "SimConfig"]

DEMO_APP_ID = "fleetwave-demo"
DEMO_SECRET = "fleetwave-demo-secret"
DEFAULT_START = pendulum.datetime(2026, 1, 5, 0, 0, 0, tz="UTC")


@dataclass
class SimConfig:
    """How big the fleet is, how the simulator behaves, and whom it lets in."""

    devices: int = 2000
    groups: int = 8
    seed: int = 1
    rate_limit: int = 100  # calls per minute per app, 0 = unlimited
    clock: str = "real"  # "real" | "manual" | "scaled:FACTOR"
    failure_rate: float = 0.02
    start: pendulum.DateTime | None = None  # manual/scaled start, default 2026-01-05T00:00:00Z
    app_id: str = DEMO_APP_ID
    secret: str = DEMO_SECRET
    tls_cert: Path | None = None  # PEM certificate (chain): serve HTTPS only
    tls_key: Path | None = None  # its PEM private key, unencrypted

    def __repr__(self) -> str:  # never show the secret
        return (
            f"SimConfig(devices={self.devices}, groups={self.groups}, seed={self.seed}, "
            f"rate_limit={self.rate_limit}, clock={self.clock!r}, "
            f"failure_rate={self.failure_rate}, app_id={self.app_id!r}, "
            f"tls={self.tls_cert is not None})"
        )

    def validate(self) -> None:
        """Raise ValueError with a clear message when a setting is out of range."""
        if self.devices < 1:
            raise ValueError(f"--devices must be at least 1, not {self.devices}")
        if not 1 <= self.groups <= self.devices:
            raise ValueError(
                f"--groups must be between 1 and --devices ({self.devices}), not {self.groups}"
            )
        if self.rate_limit < 0:
            raise ValueError(f"--rate-limit must be 0 (unlimited) or more, not {self.rate_limit}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"--failure-rate must be between 0 and 1, not {self.failure_rate}")
        if not self.app_id or not self.secret:
            raise ValueError("the simulator needs a non-empty app id and secret")
        self._validate_tls()

    def _validate_tls(self) -> None:
        """Both TLS files or neither, and they must load as a certificate and its key."""
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = (
                ("--tls-cert", "--tls-key") if self.tls_key is None else ("--tls-key", "--tls-cert")
            )
            raise ValueError(f"{given} needs {missing} too (a PEM certificate and its key)")
        if self.tls_cert is None or self.tls_key is None:
            return
        for option, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if not Path(path).is_file():
                raise ValueError(f"{option} {path}: no such file")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(self.tls_cert),
                str(self.tls_key),
                password=lambda: b"",  # never prompt
            )
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ValueError(
                f"--tls-cert {self.tls_cert} / --tls-key {self.tls_key}: cannot load them "
                f"({reason}); give a PEM certificate and its unencrypted PEM key"
            ) from None
