"""``python -m fleetwave.sim``: the simulator without the CLI (options of ``fleetwave sim serve``).

Adds ``--port-file F``: the chosen port is written to F once the socket listens, for
tests that start the simulator as a subprocess (and kill it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fleetwave.sim import DEFAULT_PORT
from fleetwave.sim.config import SimConfig
from fleetwave.sim.server import SimServer, serve


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fleetwave.sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--devices", type=int, default=SimConfig.devices)
    p.add_argument("--groups", type=int, default=SimConfig.groups)
    p.add_argument("--seed", type=int, default=SimConfig.seed)
    p.add_argument("--rate-limit", type=int, default=SimConfig.rate_limit)
    p.add_argument("--clock", default=SimConfig.clock)
    p.add_argument("--failure-rate", type=float, default=SimConfig.failure_rate)
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--tls-cert", type=Path, default=None)
    p.add_argument("--tls-key", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = SimConfig(
        devices=args.devices,
        groups=args.groups,
        seed=args.seed,
        rate_limit=args.rate_limit,
        clock=args.clock,
        failure_rate=args.failure_rate,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )

    def announce(server: SimServer) -> None:
        sys.stderr.write(f"fleetwave IoDM simulator on {server.base_url}\n")
        sys.stderr.flush()

    try:
        serve(config, host=args.host, port=args.port, port_file=args.port_file, announce=announce)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
