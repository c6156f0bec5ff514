"""Device-management platforms: the protocol the engine needs, and one adapter per platform."""
