"""fleetwave: firmware campaign orchestration for IoT fleets.

The package is layered as in DESIGN.md: ``spec`` and ``plan`` are pure, ``store`` owns SQL,
``platforms`` own HTTP, ``engine`` owns decisions, and ``flows/`` (top level) is Prefect glue.
"""

__version__ = "0.1.0"
