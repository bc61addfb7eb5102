"""Glue shared by every ``python -m …`` entry point: user errors become one clear line, exit 2."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import tempfile
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


class PlainHelpParser(argparse.ArgumentParser):
    """An argument parser whose help shows the docstrings' ``code`` markup as plain text."""

    def format_help(self) -> str:
        return super().format_help().replace("``", "").replace("`", "")

    def format_usage(self) -> str:
        return super().format_usage().replace("``", "").replace("`", "")


def command_parser(prog: str, doc: Optional[str]) -> argparse.ArgumentParser:
    """The parser of ``python -m <prog>``: its description is the first paragraph of the module's
    docstring, its help without markup."""
    return PlainHelpParser(prog=prog, description=(doc or "").split("\n\n")[0].strip())


def setup_logging(verbose: bool = False) -> None:
    """Log ``INFO`` (or ``DEBUG``) lines to stderr with a short, readable format."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


STARTUP_CHATTER = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                   "Created TensorFlow Lite XNNPACK delegate")


@contextlib.contextmanager
def filtered_stderr(markers=STARTUP_CHATTER):
    """Capture what C++ code writes to file descriptor 2 and pass it on without lines holding ``markers``.

    ``TF_CPP_MIN_LOG_LEVEL`` hides most C++ logging, but TF 2.21 prints its oneDNN notice before its
    logging is set up and LiteRT announces its CPU delegate unconditionally; real warnings and
    errors are passed on unchanged.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(marker in line for marker in markers):
                    sys.stderr.write(line)


def quiet_tensorflow() -> None:
    """Import TensorFlow once, its start-up chatter filtered (user output stays readable).

    TensorFlow is heavy and image workers never need it, so it is imported here, on request, by
    what needs it: the TensorFlow backend, tf.data and ``tf.io.gfile``. A machine set up for JAX
    alone gets one line saying what to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.modules.get("tensorflow") is not None:
        return
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError("TensorFlow is not installed, and tf.data is the input pipeline on every backend: "
                        "pip install tensorflow-cpu (a JAX-only machine can still build models)")
    with filtered_stderr():
        import tensorflow  # noqa: F401
