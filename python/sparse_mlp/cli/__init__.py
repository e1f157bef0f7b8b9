"""The ``sparse-mlp`` command line (also ``python -m sparse_mlp``).

Commands: ``train``, ``evaluate``, ``predict``, ``bench``, ``info``, ``plot``.
``train`` settings come, lowest priority first, from the built-in defaults,
the data set's preset (SPEC §8), a TOML file (``--config``) and the flags.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..errors import SparseMLPError
from .commands import bench, evaluate, info, plot, predict
from .settings import PAPER, PRESETS, build_parser, train_parser
from .train import train

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "bench": bench, "info": info,
            "plot": plot}


def _logging(quiet: bool) -> logging.Handler:
    """The package's warnings as one ``sparse-mlp: warning:`` line each on
    stderr (none with --quiet); returns the handler, removed afterwards."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sparse-mlp: %(levelname)s: %(message)s"))
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger = logging.getLogger("sparse_mlp")
    logger.addHandler(handler)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    handler = _logging(quiet)
    logger = logging.getLogger("sparse_mlp")
    propagate, logger.propagate = logger.propagate, False
    try:
        command = COMMANDS[args.command]
        return command(args, train_parser(parser) if args.command == "train" else parser, argv)
    except SparseMLPError as e:
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written (permissions, a full disk)
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse-mlp: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: one line, not a traceback
        if os.environ.get("SPARSE_MLP_DEBUG"):
            raise
        print(f"sparse-mlp: internal error: {type(e).__name__}: {e} (please report it; run with "
              "SPARSE_MLP_DEBUG=1 to see where it happened)", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


__all__ = ["main", "build_parser", "PRESETS", "PAPER"]
