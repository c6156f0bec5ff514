"""Huawei IoDM ("OceanConnect") northbound API: async client, auth, call budget, adapter.

``IoDMPlatform`` implements the Platform protocol; ``IoDMClient`` is the HTTP layer
underneath; ``IoDMSettings`` configures both (from code or ``IODM_*`` variables).
"""

from .adapter import MAX_DEVICES_PER_TASK, PAGE_SIZES, PATHS, IoDMPlatform
from .client import IoDMClient
from .errors import (
    AppNotAuthorized,
    BadCredentials,
    InvalidRequest,
    InvalidTargets,
    IoDMConnectionError,
    IoDMServerError,
    IoDMThrottled,
    MalformedResponse,
    TokenInvalid,
)
from .limiter import RateLimiter, get_limiter, reset_limiters
from .settings import IoDMSettings
from .timefmt import format_iodm_time, parse_iodm_time

__all__ = [
    "MAX_DEVICES_PER_TASK",
    "PAGE_SIZES",
    "PATHS",
    "AppNotAuthorized",
    "BadCredentials",
    "InvalidRequest",
    "InvalidTargets",
    "IoDMClient",
    "IoDMConnectionError",
    "IoDMPlatform",
    "IoDMServerError",
    "IoDMSettings",
    "IoDMThrottled",
    "MalformedResponse",
    "RateLimiter",
    "TokenInvalid",
    "format_iodm_time",
    "get_limiter",
    "parse_iodm_time",
    "reset_limiters",
]
