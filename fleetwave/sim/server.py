"""Running the simulator under uvicorn: in this thread (CLI) or a daemon thread (tests).

The listening socket is bound before uvicorn starts, so the chosen port (``--port 0``
picks a free one) is known, printed and written to ``--port-file`` before anyone connects.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from fleetwave.sim.app import create_app
from fleetwave.sim.config import SimConfig

__all__ = ["SimServer", "bind_socket", "serve"]

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only for it,
    # and without it every keep-alive response waits 40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class SimServer:
    """One simulator app served by uvicorn on an already-bound socket."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        config.validate()
        self.config = config
        self.app = create_app(config)
        self.sock = bind_socket(host, port)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_keep_alive=30,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve in this thread until interrupted."""
        self.server.run(sockets=[self.sock])

    def start_in_thread(self, timeout: float = 30.0) -> None:
        """Serve in a daemon thread; returns once uvicorn has started."""
        self._thread = threading.Thread(
            target=self.run, name=f"fleetwave-sim-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self.server.started:
            raise RuntimeError(f"the simulator did not start on {self.base_url}")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()


def serve(
    config: SimConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8743,
    port_file: Path | None = None,
    announce: Callable[[SimServer], None] | None = None,
) -> None:
    """Run the simulator in the foreground (``fleetwave sim serve``, ``-m fleetwave.sim``)."""
    server = SimServer(config, host, port)
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, port_file)  # atomic: readers never see a half-written file
    if announce is not None:
        announce(server)
    try:
        server.run()
    finally:
        server.sock.close()
