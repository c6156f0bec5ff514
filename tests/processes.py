"""Processes tests start for what they are, not for what they run: a live process on this
host (a lease holder that still runs), killed when the test is done."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["live_process"]


@contextmanager
def live_process(seconds: int = 120) -> Iterator[subprocess.Popen[bytes]]:
    """A Python process that sleeps ``seconds`` (at most), killed and reaped afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
