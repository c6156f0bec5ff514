"""``python -m fleetwave`` runs the CLI."""

from fleetwave.cli import main

main()
