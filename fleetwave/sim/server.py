"""Running the simulator under uvicorn: in this thread (CLI) or a daemon thread (tests).

The listening socket is bound before uvicorn starts, so the chosen port (``--port 0``
picks a free one) is known, printed and written to ``--port-file`` before anyone connects.
With ``--tls-cert``/``--tls-key`` it serves HTTPS only (:attr:`SimConfig.tls_cert`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from fleetwave.serving import ThreadedServer, bind_socket
from fleetwave.sim.app import create_app
from fleetwave.sim.config import SimConfig

__all__ = ["SimServer", "announce_lines", "bind_socket", "serve"]

log = logging.getLogger(__name__)


class SimServer(ThreadedServer):
    """One simulator app served by uvicorn on an already-bound socket."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        config.validate()
        self.config = config
        self.app = create_app(config)
        super().__init__(
            self.app,
            host,
            port,
            name="simulator",
            inheritable=True,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        )

    @property
    def base_url(self) -> str:
        return self.url


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


def announce_lines(config: SimConfig, base_url: str) -> list[str]:
    """What ``fleetwave sim serve`` prints at start-up: where, the demo credentials, the
    fleet, and over HTTPS the certificate clients must trust."""
    lines = [
        f"fleetwave IoDM simulator listening on {base_url}",
        f"  appId:  {config.app_id}",
        f"  secret: {config.secret}",
        f"  fleet:  {config.devices} devices in {config.groups} groups, seed {config.seed}; "
        f"clock {config.clock}; rate limit {config.rate_limit or 'unlimited'}/min",
        f"  admin:  {base_url}/sim/info, /sim/clock, /sim/stats",
    ]
    if config.tls_cert is not None:
        from fleetwave.platforms.iodm.settings import env_prefix

        trust = env_prefix("default") + "CA_BUNDLE"
        lines.append(f"  tls:    HTTPS only, certificate {config.tls_cert} (clients: {trust})")
    return lines
