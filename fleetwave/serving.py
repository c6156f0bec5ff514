"""Serving an ASGI app with uvicorn on a socket bound up front, so the port (``0`` picks a
free one) is known before anyone connects; in the foreground or in a daemon thread.

The simulator (:mod:`fleetwave.sim.server`) and the push receiver
(:mod:`fleetwave.notify.receiver`) both run on this; :func:`stop_process_group` stops a
server run as a child process in its own process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Literal

import uvicorn

__all__ = ["ThreadedServer", "bind_socket", "stop_process_group"]


def bind_socket(
    host: str, port: int, *, backlog: int = 2048, what: str = "", inheritable: bool = False
) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    ``what`` names the server in the error raised when the address is taken or refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only for it,
    # and without it every keep-alive response waits 40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        who = f"{what} " if what else ""
        raise OSError(f"{who}cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(backlog)
    if inheritable:
        sock.set_inheritable(True)
    return sock


class ThreadedServer:
    """uvicorn serving ``app`` on a socket bound at construction; ``name`` (e.g. "simulator")
    names it in errors and in its thread's name. With ``ssl_certfile``/``ssl_keyfile``
    (PEM) it serves HTTPS only."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        name: str,
        backlog: int = 2048,
        inheritable: bool = False,
        lifespan: Literal["auto", "on", "off"] = "on",
        server_header: bool = True,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.name = name
        self.tls = ssl_certfile is not None
        self.sock = bind_socket(
            host, port, backlog=backlog, what=f"the {name}", inheritable=inheritable
        )
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,  # a request line may carry a token (the push receiver's)
                lifespan=lifespan,
                server_header=server_header,
                timeout_keep_alive=30,
                ssl_certfile=ssl_certfile,
                ssl_keyfile=ssl_keyfile,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        """Serving in its thread and not asked to stop."""
        return self._thread is not None and self._thread.is_alive() and not self.server.should_exit

    def run(self) -> None:
        """Serve in this thread until interrupted."""
        self.server.run(sockets=[self.sock])

    def start_in_thread(self, timeout: float = 30.0) -> None:
        """Serve in a daemon thread; returns once uvicorn has started (else stops, raises)."""
        self._thread = threading.Thread(
            target=self.run,
            name=f"fleetwave-{self.name.replace(' ', '-')}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"the {self.name} did not start on {self.url}")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc``'s process group: SIGINT, then SIGTERM, then SIGKILL, 15 s apart at most."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
