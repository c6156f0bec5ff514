"""fleetwave.store: see DESIGN.md."""
