"""Serving the ThingSpace simulator under uvicorn: in this thread (CLI) or a daemon thread
(tests), on a socket bound before uvicorn starts (``--port 0`` picks a free one)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fleetwave.serving import ThreadedServer
from fleetwave.sim.thingspace.app import create_app
from fleetwave.sim.thingspace.config import TSConfig

__all__ = ["TSServer", "serve"]


class TSServer(ThreadedServer):
    """One ThingSpace simulator app served by uvicorn on an already-bound socket."""

    def __init__(self, config: TSConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        config.validate()
        self.config = config
        self.app = create_app(config)
        super().__init__(
            self.app,
            host,
            port,
            name="thingspace-simulator",
            inheritable=True,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        )

    @property
    def base_url(self) -> str:
        return self.url


def serve(
    config: TSConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8744,
    port_file: Path | None = None,
    announce: Callable[[TSServer], None] | None = None,
) -> None:
    """Run the simulator in the foreground (``fleetwave sim serve --platform thingspace``)."""
    server = TSServer(config, host, port)
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, port_file)
    if announce is not None:
        announce(server)
    try:
        server.run()
    finally:
        server.sock.close()


def announce_lines(config: TSConfig, base_url: str) -> list[str]:
    """What ``serve`` prints at start-up: where, the demo credentials, the fleet."""
    return [
        f"fleetwave ThingSpace simulator listening on {base_url}",
        f"  client key:    {config.client_key}",
        f"  client secret: {config.client_secret}",
        f"  username:      {config.username}",
        f"  password:      {config.password}",
        f"  account:       {config.account}",
        f"  fleet:  {config.devices} devices in {config.groups} groups, seed {config.seed}; "
        f"clock {config.clock}; rate limit {config.rate_limit or 'unlimited'}/min",
        f"  admin:  {base_url}/sim/info, /sim/clock, /sim/stats, /sim/callbacks",
    ]
