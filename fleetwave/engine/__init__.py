"""fleetwave.engine: see DESIGN.md."""
