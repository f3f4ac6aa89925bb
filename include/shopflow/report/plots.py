"""matplotlib figures rendered to inline SVG data URIs, byte-for-byte reproducible (fixed hash salt, no date).

SVGs are embedded as <img src="data:image/svg+xml;base64,…">: an image never runs script, so text from the data
inside a plot (category names as tick labels) cannot become markup on the page.
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

# Day labels such as "12-03" look like dates to matplotlib, which then logs a line per plot: they are categories.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

PALETTE = ["#3465a4", "#f57900", "#4e9a06", "#cc0000", "#75507b", "#c17d11", "#06989a", "#555753"]
STYLE = {
    "svg.hashsalt": "shopflow-report",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "figure.dpi": 100,
}


def figure(width: float = 7.0, height: float = 3.0, ncols: int = 1, nrows: int = 1):
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    return fig, axes


def to_data_uri(fig) -> str:
    buffer = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shorten(label: str, width: int = 28) -> str:
    label = str(label)
    return label if len(label) <= width else label[: width - 1] + "…"


def barh(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str, width: float = 7.0) -> str:
    fig, axes = figure(width, 0.6 + 0.26 * max(len(labels), 1))
    ax = axes[0][0]
    with plt.rc_context(STYLE):
        ax.barh([shorten(label) for label in labels][::-1], list(values)[::-1], color=PALETTE[0])
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    return to_data_uri(fig)


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str, ylabel: str,
         width: float = 7.0, height: float = 2.8) -> str:
    fig, axes = figure(width, height)
    ax = axes[0][0]
    with plt.rc_context(STYLE):
        ax.bar([str(label) for label in labels], list(values), color=PALETTE[0])
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    return to_data_uri(fig)
