"""fleetwave.platforms.iodm: see DESIGN.md."""
