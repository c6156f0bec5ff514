"""fleetwave.spec: see DESIGN.md."""
