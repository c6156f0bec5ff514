"""Device-management platforms: the protocol the engine needs, and a registry of factories.

A campaign names its platform as ``platform: {type: iodm, profile: prod}``. The type picks
a factory registered here with :func:`register_platform`; the profile is the factory's
business (IoDM reads ``IODM_<PROFILE>_*`` variables). A platform package registers its
own type when it is imported (``fleetwave.platforms.<type>``); the registry imports that
package the first time the type is asked for, so nothing platform-specific is imported
before a campaign needs it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from fleetwave.clock import Clock
from fleetwave.errors import UserError

from .base import Capabilities, Platform

__all__ = [
    "DEFAULT_PLATFORM_TYPE",
    "Platform",
    "PlatformFactory",
    "PlatformRef",
    "PlatformRefLike",
    "UnknownPlatformType",
    "default_capabilities",
    "is_simulated",
    "known_platform_types",
    "open_platform",
    "platform_capabilities",
    "platform_factory",
    "register_platform",
    "simulator_url",
]

#: The type of a campaign without a ``platform`` section, and of the old plain-string form
#: ``platform: prod`` (read as ``{type: iodm, profile: prod}``).
DEFAULT_PLATFORM_TYPE = "iodm"


class PlatformFactory(Protocol):
    """Builds a platform of one type for a connection profile (raises ``UserError`` when
    the profile is incomplete); the caller closes it with ``aclose()``."""

    def __call__(self, profile: str, *, clock: Clock | None = None) -> Platform: ...


class PlatformRefLike(Protocol):
    """Anything naming a platform: a type and a connection profile (the spec's
    ``platform`` section is one)."""

    @property
    def type(self) -> str: ...

    @property
    def profile(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PlatformRef:
    """A platform type and one of its connection profiles."""

    type: str = DEFAULT_PLATFORM_TYPE
    profile: str = "default"

    def __str__(self) -> str:
        return f"{self.type}:{self.profile}"


@dataclass(frozen=True, slots=True)
class _Entry:
    factory: PlatformFactory
    simulator_url: Callable[[str], str | None] | None
    default_capabilities: Capabilities | None = None
    simulated: Callable[[str], bool] | bool = False


_REGISTRY: dict[str, _Entry] = {}


class UnknownPlatformType(UserError):
    """A platform type no package registers."""


def register_platform(
    type_: str,
    factory: PlatformFactory,
    *,
    simulator_url: Callable[[str], str | None] | None = None,
    default_capabilities: Capabilities | None = None,
    simulated: Callable[[str], bool] | bool = False,
) -> None:
    """Register (or replace) the factory of platform ``type_``.

    ``simulator_url(profile)``, when given, is the base URL of the simulator a profile
    talks to (``fleetwave run --clock sim`` links the engine's clock to it).
    ``default_capabilities``: what every connection of the type can do with default
    settings, so ``validate`` can check a campaign whose profile is not configured here.
    ``simulated`` says whether a profile is a simulator rather than a real platform (a bool
    for the whole type, or a function of the profile): only a simulator accepts a simulated
    clock.
    """
    _REGISTRY[type_] = _Entry(factory, simulator_url, default_capabilities, simulated)


def is_simulated(ref: PlatformRefLike | str | None = None) -> bool:
    """Whether the platform ``ref`` names is a simulator (its devices and time are not real),
    as its type registered; a real platform refuses ``--clock sim`` and ``scaled:F``."""
    r = _as_ref(ref)
    platform_factory(r.type)  # unknown types fail with the list of known ones
    flag = _REGISTRY[r.type].simulated
    return flag(r.profile) if callable(flag) else bool(flag)


def _lookup(type_: str) -> _Entry | None:
    entry = _REGISTRY.get(type_)
    if entry is None and type_.isidentifier() and type_ in _packages():
        # a platform package registers its type when imported
        importlib.import_module(f"{__name__}.{type_}")
        entry = _REGISTRY.get(type_)
    return entry


def _packages() -> list[str]:
    """Subpackages of ``fleetwave.platforms`` (each may register a platform type)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def known_platform_types() -> list[str]:
    """Every platform type a campaign may name (importing each platform package once)."""
    for name in _packages():
        if name not in _REGISTRY:
            try:
                importlib.import_module(f"{__name__}.{name}")
            except ImportError:  # a package whose optional dependencies are missing
                continue
    return sorted(_REGISTRY)


def platform_factory(type_: str) -> PlatformFactory:
    """The factory of ``type_``; raises :class:`UnknownPlatformType` listing the known types."""
    entry = _lookup(type_)
    if entry is None:
        raise UnknownPlatformType(
            f"unknown platform type {type_!r}; known types: {', '.join(known_platform_types())}",
            hint="write platform: {type: TYPE, profile: NAME} with one of the known types",
        )
    return entry.factory


def _as_ref(ref: PlatformRefLike | str | None) -> PlatformRefLike:
    if ref is None:
        return PlatformRef()
    if isinstance(ref, str):
        return PlatformRef(DEFAULT_PLATFORM_TYPE, ref)
    return ref


def simulator_url(ref: PlatformRefLike | str | None = None) -> str | None:
    """The base URL of the simulator a platform profile talks to (None: the type has no
    simulator). A plain string is a profile of the default type."""
    r = _as_ref(ref)
    platform_factory(r.type)  # unknown types fail with the list of known ones
    entry = _REGISTRY[r.type]
    return entry.simulator_url(r.profile) if entry.simulator_url is not None else None


@asynccontextmanager
async def open_platform(
    ref: PlatformRefLike | str | None = None, *, clock: Clock | None = None
) -> AsyncIterator[Platform]:
    """Open the platform ``ref`` names (type and connection profile) and close it after.

    A plain string is a profile of the default type (``"lab"`` = ``iodm:lab``). Raises
    ``UserError`` for an unknown type (listing the known ones) or an incomplete profile.
    """
    r = _as_ref(ref)
    platform = platform_factory(r.type)(r.profile, clock=clock)
    try:
        yield platform
    finally:
        await platform.aclose()


def default_capabilities(type_: str) -> Capabilities | None:
    """The capabilities of platform type ``type_`` with default settings (None: the type
    registered none); raises :class:`UnknownPlatformType` for an unknown type."""
    platform_factory(type_)
    return _REGISTRY[type_].default_capabilities


async def platform_capabilities(
    ref: PlatformRefLike | str | None = None, *, clock: Clock | None = None
) -> Capabilities:
    """The capabilities of the platform ``ref`` names, read without a call to it (they are
    constant for a connection, built from its settings)."""
    async with open_platform(ref, clock=clock) as platform:
        return platform.capabilities


def _open_iodm(profile: str, *, clock: Clock | None = None) -> Platform:
    from .iodm import IoDMPlatform, IoDMSettings

    return IoDMPlatform(IoDMSettings.from_env(profile), clock=clock)


def _iodm_simulator_url(profile: str) -> str | None:
    from .iodm.settings import simulator_base_url

    return simulator_base_url(profile)


def _iodm_simulated(profile: str) -> bool:
    # the settings allow plain http:// only for the local simulator; a real IoDM is https
    return (_iodm_simulator_url(profile) or "").lower().startswith("http://")


register_platform("iodm", _open_iodm, simulator_url=_iodm_simulator_url, simulated=_iodm_simulated)
