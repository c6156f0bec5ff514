"""IoDM error codes map to the most specific neutral class, with what to check."""

from __future__ import annotations

import pytest

from fleetwave.platforms import errors as neutral
from fleetwave.platforms.iodm import errors as iodm


@pytest.mark.parametrize(
    ("status", "code", "cls", "neutral_cls"),
    [
        (401, "100208", iodm.BadCredentials, neutral.AuthFailed),
        (403, "1010005", iodm.TokenInvalid, neutral.AuthFailed),
        (403, "1010009", iodm.IoDMThrottled, neutral.Throttled),
        (404, "123002", neutral.PackageNotFound, neutral.NotFound),
        (404, "123009", neutral.TaskNotFound, neutral.NotFound),
        (404, "100403", neutral.DeviceNotFound, neutral.NotFound),
        (200, "100603", neutral.GroupNotFound, neutral.NotFound),
        (400, "123016", neutral.TargetMismatch, neutral.RequestRejected),
        (400, "123024", neutral.TooManyTargets, neutral.RequestRejected),
        (400, "123033", neutral.InvalidPolicy, neutral.RequestRejected),
        (400, "123023", iodm.InvalidTargets, neutral.RequestRejected),
        (400, "123029", iodm.InvalidRequest, neutral.RequestRejected),
        (500, "50252", iodm.IoDMServerError, neutral.PlatformUnavailable),
        # unknown codes fall back by status
        (403, "999", neutral.AuthFailed, neutral.AuthFailed),
        (404, None, neutral.NotFound, neutral.NotFound),
        (409, None, neutral.RequestRejected, neutral.RequestRejected),
        (503, None, iodm.IoDMServerError, neutral.PlatformUnavailable),
    ],
)
def test_code_maps_to_class(status: int, code: str | None, cls: type, neutral_cls: type) -> None:
    err = iodm.error_for(
        status_code=status,
        code=code,
        description="what the platform said",
        method="GET",
        path="/iodm/northbound/v1.5.0/operations/42",
    )
    assert type(err) is cls
    assert isinstance(err, neutral_cls)
    assert err.status_code == status
    assert err.code == code
    assert err.description == "what the platform said"
    text = str(err)
    assert "[GET /iodm/northbound/v1.5.0/operations/42]" in text
    assert f"HTTP {status}" in text
    assert "what the platform said" in text


def test_messages_say_what_to_check() -> None:
    err = iodm.error_for(status_code=400, code="123016", description=None, method="POST", path="/x")
    assert "deviceType, model and manufacturerName" in str(err)
    err = iodm.error_for(status_code=401, code="100208", description=None, method="POST", path="/x")
    assert "IODM_APP_ID and IODM_SECRET" in str(err)
