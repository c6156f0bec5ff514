"""``make demo``: the main job on the embedded default (completed by the campaign-flow issue)."""

from __future__ import annotations


def main() -> None:
    """Run the demo."""
    raise SystemExit("the demo is not built yet")


if __name__ == "__main__":
    main()
