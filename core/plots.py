"""Plots without pyplot: a `matplotlib.figure.Figure` drawn on its own Agg canvas, so no
process-wide backend is chosen and no figure outlives its use."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_png(figure: Figure, target: Path | io.BytesIO, **options: object) -> None:
    """Write `figure` as PNG (options as `Figure.savefig`'s)."""
    FigureCanvasAgg(figure)
    figure.savefig(target, format="png", **options)


def figure_png(figure: Figure) -> str:
    """`figure` as base64 PNG text, for embedding in an HTML report."""
    buffer = io.BytesIO()
    save_png(figure, buffer, dpi=72, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
