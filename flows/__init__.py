"""Prefect flows: thin glue over fleetwave.engine."""
