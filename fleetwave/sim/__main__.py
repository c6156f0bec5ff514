"""``python -m fleetwave.sim``: the simulator without the CLI (options of ``fleetwave sim serve``).

Adds ``--port-file F``: the chosen port is written to F once the socket listens, for
tests that start the simulator as a subprocess (and kill it). ``--platform thingspace``
serves the Verizon ThingSpace simulator instead of IoDM (with its own options).
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
    p.add_argument("--platform", choices=("iodm", "thingspace"), default="iodm")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--devices", type=int, default=SimConfig.devices)
    p.add_argument("--groups", type=int, default=SimConfig.groups)
    p.add_argument("--seed", type=int, default=SimConfig.seed)
    p.add_argument("--rate-limit", type=int, default=SimConfig.rate_limit)
    p.add_argument("--clock", default=SimConfig.clock)
    p.add_argument("--failure-rate", type=float, default=SimConfig.failure_rate)
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--tls-cert", type=Path, default=None)
    p.add_argument("--tls-key", type=Path, default=None)
    # ThingSpace only
    p.add_argument("--account", default=None)
    p.add_argument("--license-required", action="store_true")
    p.add_argument("--licenses", type=int, default=0)
    p.add_argument("--request-failure-rate", type=float, default=0.0)
    p.add_argument("--allow-http-callbacks", action="store_true")
    p.add_argument("--callback-ca", type=Path, default=None)
    return p


def _thingspace(args: argparse.Namespace) -> int:
    from fleetwave.sim.thingspace import DEFAULT_PORT as TS_PORT
    from fleetwave.sim.thingspace.config import DEMO_ACCOUNT, TSConfig
    from fleetwave.sim.thingspace.server import TSServer, announce_lines, serve

    config = TSConfig(
        devices=args.devices,
        groups=args.groups,
        seed=args.seed,
        rate_limit=args.rate_limit,
        clock=args.clock,
        failure_rate=args.failure_rate,
        request_failure_rate=args.request_failure_rate,
        account=args.account or DEMO_ACCOUNT,
        license_required=args.license_required,
        licenses=args.licenses,
        allow_http_callbacks=args.allow_http_callbacks,
        callback_ca=args.callback_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )

    def announce(server: TSServer) -> None:
        sys.stderr.write("\n".join(announce_lines(config, server.base_url)) + "\n")
        sys.stderr.flush()

    port = TS_PORT if args.port is None else args.port
    try:
        serve(config, host=args.host, port=port, port_file=args.port_file, announce=announce)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.platform == "thingspace":
        return _thingspace(args)
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
        port = DEFAULT_PORT if args.port is None else args.port
        serve(config, host=args.host, port=port, port_file=args.port_file, announce=announce)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
