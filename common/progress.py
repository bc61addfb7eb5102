"""Progress bars that suit where the output goes.

On a terminal, one bar updated in place (tqdm); in a notebook, one updating bar (``tqdm.auto``: a
widget where ipywidgets is installed, as on Colab and Kaggle) instead of a printed line per update;
in a log file or a pipe, a refresh every :data:`LOG_INTERVAL_S` seconds at most.
"""
from __future__ import annotations

import shutil
import sys

import tqdm
import tqdm.auto

LOG_INTERVAL_S = 30.0


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (the test tqdm.autonotebook itself uses)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bar(iterable=None, **options):
    """``tqdm(iterable, **options)`` of the kind that suits the output (see the module docstring)."""
    if in_notebook():
        return tqdm.auto.tqdm(iterable, **options)
    stream = options.get("file") or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        options.setdefault("mininterval", LOG_INTERVAL_S)
    else:  # a terminal that does not report its size (some ptys) would get an empty bar from tqdm
        columns, lines = shutil.get_terminal_size()
        options.setdefault("ncols", columns)
        options.setdefault("nrows", lines)
    return tqdm.tqdm(iterable, **options)
