"""Glue shared by every ``python -m …`` entry point: user errors become one clear line, exit 2."""
from __future__ import annotations

import logging
import sys
from typing import Callable, Optional, Sequence

from common.errors import UserError


def run_main(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Call ``main(argv)``; print a :class:`UserError` as ``error: …`` and return 2 instead of a traceback."""
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to continue", file=sys.stderr)
        return 130


def setup_logging(verbose: bool = False) -> None:
    """Log ``INFO`` (or ``DEBUG``) lines to stderr with a short, readable format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported (user output stays readable)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
