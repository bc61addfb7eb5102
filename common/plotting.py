"""Matplotlib without a display: ``pyplot()`` (imported on first use: it is heavy) and an atomic PNG save."""
from __future__ import annotations

import io

from common import fs


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str, dpi: int = 110, tight: bool = True) -> None:
    """Write ``figure`` as PNG to ``path`` (local or remote, atomically) and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(figure)
    fs.write_bytes_atomic(path, buffer.getvalue())
