"""Predicted against published, the figure of ``trainsim validate --plot``.

One log-log panel per metric (step time, TFLOP/s, MFU, ...), a point per simulated case,
coloured by source, with the line of perfect agreement and the ±10 % and ±25 % bands. Cases
that could not be simulated are counted in the title, not drawn. Built without pyplot, like
:mod:`simulator.results.plots`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from simulator.core.atomic import atomic_write
from simulator.core.errors import InputError

METRIC_LABELS = {
    "step_time_s": "step time (s)",
    "tflops_per_gpu": "TFLOP/s per GPU",
    "mfu": "MFU",
    "hfu": "HFU",
    "tokens_per_s_per_gpu": "tokens/s per GPU",
}
"""Axis label of each metric of the validation format, in its order."""

FORMATS = ("png", "svg", "pdf")
"""File types :func:`write_parity` writes (by the path's suffix)."""


def parity_figure(results: pd.DataFrame) -> Figure:
    """The figure of a :func:`simulator.validation.validate` table (``source_id``, ``metric``,
    ``published``, ``predicted``, ``status``)."""
    ok = results[results.status == "ok"]
    metrics = [m for m in METRIC_LABELS if m in set(ok.metric)] or ["step_time_s"]
    sources = sorted(str(s) for s in results.source_id.fillna("(no source)").unique())
    colours = {s: f"C{i % 10}" for i, s in enumerate(sources)}
    n_cols = min(3, len(metrics))
    n_rows = -(-len(metrics) // n_cols)
    width, height = 4.0 * n_cols + 2.2, 4.0 * n_rows + 0.8
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.9 / width, right=1 - 2.1 / width, bottom=0.6 / height, top=1 - 0.8 / height,
                        wspace=0.45, hspace=0.4)
    grid = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in grid[len(metrics):]:
        ax.set_visible(False)
    axes = grid[: len(metrics)]
    for ax, metric in zip(axes, metrics):
        rows = ok[ok.metric == metric]
        values = np.concatenate([rows.published.to_numpy(float), rows.predicted.to_numpy(float)])
        lo, hi = (values.min() / 1.4, values.max() * 1.4) if values.size else (0.1, 10.0)
        line = np.geomspace(lo, hi, 50)
        ax.fill_between(line, line / 1.1, line * 1.1, color="0.85", lw=0, label="±10 %")
        for f in (1.25, 1 / 1.25):
            ax.plot(line, line * f, color="0.6", lw=0.8, ls="--", label="±25 %" if f > 1 else None)
        ax.plot(line, line, color="0.3", lw=0.8)
        for source, group in rows.groupby(rows.source_id.fillna("(no source)").astype(str)):
            ax.scatter(group.published, group.predicted, s=18, color=colours[source], label=source, zorder=3)
        mape = rows.error_pct.abs().mean() if len(rows) else float("nan")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel=f"published {METRIC_LABELS[metric]}",
               ylabel=f"predicted {METRIC_LABELS[metric]}", title=f"{len(rows)} cases, MAPE {mape:.1f} %")
        ax.set_aspect("equal")
        subs = (1.0,) if hi / lo > 100 else (1.0, 2.0, 5.0) if hi / lo > 10 else tuple(range(1, 10))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=subs))
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.legend(seen.values(), seen.keys(), loc="center right", frameon=False, fontsize=8)
    failed = len(results) - len(ok)
    fig.suptitle(f"trainsim: predicted vs published, {len(ok)} of {len(results)} cases simulated"
                 + (f" ({failed} could not be: see the status column)" if failed else ""), fontsize=11)
    return fig


def figure_format(path: str | Path) -> str:
    """The file type of ``path`` by its suffix; :class:`InputError` if it is not one of :data:`FORMATS`."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(f"give a file name ending in {', '.join('.' + f for f in FORMATS)}", file=path)
    return fmt


def write_parity(results: pd.DataFrame, path: str | Path) -> Path:
    """Save :func:`parity_figure` to ``path`` (its suffix picks PNG, SVG or PDF), atomically."""
    path = Path(path)
    fmt = figure_format(path)
    with atomic_write(path, "wb") as f:
        parity_figure(results).savefig(f, format=fmt, dpi=150)
    return path
