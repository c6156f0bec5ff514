"""fleetwave.sim: see DESIGN.md."""
