"""Verizon's own Python SDK (``sdksio-verizon-apis-sdk``), unmodified, pointed at the ThingSpace
simulator: its ``Configuration.environments`` are replaced, in a subclass, by the local base URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# the SDK is a dev dependency (pyproject.toml): without it this suite fails, never skips
from verizon.configuration import Configuration, Environment, Server
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.log_in_request import LogInRequest
from verizon.verizon_client import VerizonClient

from fleetwave.sim.testing import TSHandle, run_thingspace_simulator

PRODUCTION = "https://thingspace.verizon.com"


def local_configuration(base_url: str, **kwargs: Any) -> Configuration:
    """A Configuration whose every server lives under ``base_url`` (same paths as production)."""
    servers = {
        server: url.replace(PRODUCTION, base_url)
        for server, url in Configuration.environments[Environment.PRODUCTION].items()
    }

    class LocalConfiguration(Configuration):
        environments = {Environment.PRODUCTION: servers}

    return LocalConfiguration(environment=Environment.PRODUCTION, **kwargs)


@pytest.fixture(scope="module")
def ts() -> Iterator[TSHandle]:
    with run_thingspace_simulator(devices=300, groups=5, clock="manual", rate_limit=0) as handle:
        yield handle


@pytest.fixture
def client_factory(ts: TSHandle) -> Any:
    def make(session: str | None = None, **oauth: Any) -> VerizonClient:
        creds = ThingspaceOauthCredentials(
            oauth_client_id=oauth.pop("client_id", ts.client_key),
            oauth_client_secret=oauth.pop("client_secret", ts.client_secret),
            **oauth,
        )
        config = local_configuration(
            ts.base_url,
            thingspace_oauth_credentials=creds,
            vz_m2m_token_credentials=VZM2mTokenCredentials(session) if session else None,
        )
        return VerizonClient(config=config)

    return make


@pytest.fixture
def sdk(ts: TSHandle, client_factory: Any) -> VerizonClient:
    """An SDK client with a fresh OAuth token and M2M session."""
    ts.unlock()
    bare = client_factory()
    login = bare.session_management.start_connectivity_management_session(
        LogInRequest(username=ts.username, password=ts.password)
    )
    client: VerizonClient = client_factory(session=login.body.session_token)
    return client


__all__ = ["Server", "local_configuration"]
