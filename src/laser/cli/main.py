"""Entry point of the ``laser`` command. Each subcommand module adds its parsers in ``register``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from laser import __version__
from laser.cli.common import check_output_path, cli_words
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
    "laser.cli.importft",
    "laser.cli.deploy",
    "laser.cli.edge",
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


QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # Libraries that log at import time about things laser does not use (torchao's CUDA kernels and
        # deprecations it triggers in torch's pytree, when transformers imports it): only errors reach the user.
        for noisy in QUIET_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        check_output_path(args)
        return int(args.func(args) or 0)
    except LaserError as exc:
        if args.verbose:
            logging.exception("laser failed")
        print(f"laser {args.command}: error: {cli_words(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"laser {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the file system said no (a file where a directory should be, permissions, disk full)
        if args.verbose:
            logging.exception("laser failed")
        print(f"laser {args.command}: error: {os_message(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in laser: one line, the traceback with -v
        if args.verbose:
            logging.exception("laser failed")
        print(f"laser {args.command}: internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''} "
              "(this is a bug in laser; run with -v for the traceback)", file=sys.stderr)
        return 70


def os_message(exc: OSError) -> str:
    where = str(exc.filename or "")
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and where:
        return f"{where} is a file where a directory is needed; choose another output path"
    if isinstance(exc, PermissionError) and where:
        return f"permission denied: {where}; choose a path you can write"
    return f"{exc.strerror or exc}{': ' + where if where else ''}"


if __name__ == "__main__":
    sys.exit(main())
