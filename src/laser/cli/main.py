"""Entry point of the ``laser`` command. Each subcommand module adds its parsers in ``register``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from laser import __version__
from laser.errors import LaserError

# One line per area of the CLI; a module's ``register(subparsers)`` adds its subcommands.
COMMAND_MODULES = (
    "laser.cli.core",
    "laser.cli.export",
    "laser.cli.optimize",
    "laser.cli.measure",
    "laser.cli.hub",
    "laser.cli.prune",
    "laser.cli.serve",
    "laser.cli.quantize",
    "laser.cli.web",
    "laser.cli.advise",
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="laser", description="Take a trained PyTorch model to a fast, small, "
                                "verified, served model, measured on LASER (Latency, Accuracy, Size, Energy, Robustness).")
    p.add_argument("--version", action="version", version=f"laser {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LaserError as exc:
        if args.verbose:
            logging.exception("laser failed")
        print(f"laser {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"laser {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
