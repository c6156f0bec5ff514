"""fleetwave.plan: see DESIGN.md."""
