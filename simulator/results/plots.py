"""Figures of one simulated step: pipeline timeline, step-time breakdown, memory per GPU.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, no display needed; the Agg canvas renders it). :func:`write_plots` saves all of them as
PNG and SVG. A category has the same colour in every figure (:data:`COLORS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from simulator.core.atomic import atomic_write
from simulator.results.report import LABELS, MEMORY_KEYS
from simulator.results.step import StepResult
from simulator.system.breakdown import BREAKDOWN_KEYS

COLORS = {
    # step-time categories (breakdown) and the timeline intervals that make them up
    "forward": "#4C72B0",
    "backward": "#DD8452",
    "recompute": "#937860",
    "optimizer": "#55A868",
    "tp_comm": "#8172B3",
    "cp_comm": "#64B5CD",
    "pp_comm": "#C44E52",
    "dp_comm": "#DA8BC3",
    "bubble": "#BDBDBD",
    "stall": "#7F7F7F",
    "embedding_sync": "#3A3A3A",
    # memory categories (optimizer states share the optimizer's colour)
    "parameters": "#17BECF",
    "gradients": "#BCBD22",
    "activations": "#E7969C",
    "buffers": "#393B79",
}
"""One colour per category, shared by all figures."""

# timeline interval name -> (legend key, colour key, legend label); order = legend order
_COMPUTE = {
    "F": ("F", "forward", "forward pass (micro-batch no.)"),
    "B": ("B", "backward", "backward pass (+ recompute)"),
    "optimizer": ("optimizer", "optimizer", "optimizer"),
}
_COMM = {
    "pp_send": ("pp_send", "pp_comm", "PP send (comm, thin bar)"),
    "dp_bucket": ("dp", "dp_comm", "DP grad reduce / param gather\n(comm, thin bar)"),
    "param_gather": ("dp", "dp_comm", "DP grad reduce / param gather\n(comm, thin bar)"),
    "embedding_sync": ("embedding_sync", "embedding_sync", "embedding sync (comm, thin bar)"),
}
_WAIT_LABEL = "waiting: bubble / stall / exposed comm"
_MAX_LABELLED_BARS = 200  # per stage row; above this no micro-batch numbers are written
_DENSE = 200  # bars of one kind in one row: no edges or hatching, drawn as an image in SVG files

_FIG_WIDTH_IN = 13.0
_LEFT, _RIGHT = 0.08, 0.77  # axes extent (figure fraction); the legend sits right of the axes


def _time_unit(step_s: float) -> tuple[str, float]:
    """Axis unit and scale: milliseconds for steps under a second, else seconds."""
    return ("ms", 1e3) if step_s < 1.0 else ("s", 1.0)


def _new_figure(height_in: float, width_in: float = _FIG_WIDTH_IN) -> Figure:
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _gb(x: float) -> str:
    return f"{x:,.1f}" if x >= 1 else f"{x:.2g}"


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else "<1%"


def _row_height(n_rows: int, per_row: float, extra: float, lo: float = 3.2, hi: float = 18.0) -> float:
    return float(min(hi, max(lo, extra + per_row * n_rows)))


def _place_axes(fig: Figure, height_in: float) -> None:
    # fixed margins in inches so titles and labels have room whatever the height
    fig.subplots_adjust(left=_LEFT, right=_RIGHT, top=1 - 0.75 / height_in, bottom=0.65 / height_in)


def _bars(ax, x: np.ndarray, w: np.ndarray, y: float, h: float, **style) -> PolyCollection:
    """Bars [x, x + w] x [y, y + h] as one collection (what ``broken_barh`` draws, built with
    numpy: a row of a large pipeline holds thousands of bars)."""
    verts = np.empty((len(x), 4, 2))
    verts[:, 0, 0] = verts[:, 1, 0] = x
    verts[:, 2, 0] = verts[:, 3, 0] = x + w
    verts[:, 0, 1] = verts[:, 3, 1] = y
    verts[:, 1, 1] = verts[:, 2, 1] = y + h
    coll = PolyCollection(verts, **style)
    ax.add_collection(coll, autolim=False)
    return coll


def pipeline_timeline(result: StepResult) -> Figure:
    """Gantt chart of replica 0: one row per pipeline stage (stage 0 at the top), compute
    intervals as bars, communication as thin bars under each row, waits hatched grey."""
    tl = result.timeline
    if tl is None or tl.empty:
        raise ValueError("the result has no timeline; simulate with record_timeline=True")
    tl = tl[tl["replica"] == tl["replica"].min()]
    pp = result.plan.pp
    step = float(result.step_time_s)
    unit, scale = _time_unit(step)

    height = _row_height(pp, 0.26, 1.6)
    fig = _new_figure(height)
    _place_axes(fig, height)
    ax = fig.add_subplot()

    start = tl["start_s"].to_numpy() * scale
    width = (tl["end_s"].to_numpy() - tl["start_s"].to_numpy()) * scale
    stage = tl["stage"].to_numpy()
    names = tl["name"].to_numpy()
    mb = tl["microbatch"].to_numpy()

    comp_y, comp_h = -0.36, 0.56  # compute bar: rows are 1 apart, y grows downwards
    comm_y, comm_h = 0.24, 0.14  # thin comm bar under the compute bar
    legend: dict[str, Patch] = {}
    px_per_unit = (_RIGHT - _LEFT) * _FIG_WIDTH_IN * fig.dpi / (step * scale * 1.01)

    def draw(mask: np.ndarray, y0: float, h: float, **style) -> None:
        idx = np.flatnonzero(mask)
        idx = idx[np.argsort(stage[idx], kind="stable")]
        bounds = np.flatnonzero(np.diff(stage[idx])) + 1
        for sel in np.split(idx, bounds):
            dense = len(sel) > _DENSE
            kw = dict(style, linewidths=0.0, hatch=None) if dense else style
            _bars(ax, start[sel], width[sel], stage[sel[0]] + y0, h, rasterized=dense, **kw)

    for name, (key, ckey, label) in {**_COMPUTE, **_COMM}.items():
        mask = names == name
        if not mask.any():
            continue
        y0, h = (comp_y, comp_h) if name in _COMPUTE else (comm_y, comm_h)
        draw(mask, y0, h, facecolors=COLORS[ckey], edgecolors="white" if name in _COMPUTE else "none",
             linewidths=0.3)
        legend.setdefault(key, Patch(facecolor=COLORS[ckey], label=label))

    waits = np.char.startswith(names.astype(str), "wait_")
    if waits.any():
        draw(waits, comp_y, comp_h, facecolors=COLORS["bubble"], edgecolors="#8A8A8A", hatch="///",
             linewidths=0.0)
        legend["wait"] = Patch(facecolor=COLORS["bubble"], edgecolor="#8A8A8A", hatch="///", label=_WAIT_LABEL)

    # micro-batch numbers on forward / backward bars wide enough to hold them
    fb = (names == "F") | (names == "B")
    for s in range(pp):
        sel = np.flatnonzero(fb & (stage == s))
        if len(sel) > _MAX_LABELLED_BARS:
            continue
        for i in sel:
            text = str(int(mb[i]))
            if width[i] * px_per_unit >= 7 * len(text) + 4:
                ax.text(start[i] + width[i] / 2, s + comp_y + comp_h / 2, text, ha="center", va="center",
                        fontsize=7, color="white", clip_on=True)

    legend["end"] = ax.axvline(step * scale, color="black", linestyle="--", linewidth=1,
                               label=f"end of step ({step * scale:,.4g} {unit})")

    ax.set_xlim(0, step * scale * 1.01)
    ax.set_ylim(pp - 0.5, -0.5)  # stage 0 at the top
    ax.set_yticks(range(pp), [f"stage {s}" for s in range(pp)], fontsize=8 if pp <= 32 else 6)
    ax.set_xlabel(f"time since the start of the step ({unit})")
    ax.set_ylabel("pipeline stage (replica 0)")
    ax.grid(axis="x", linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    p = result.plan
    ax.set_title(f"{result.scenario}\npipeline timeline: {p.schedule}, "
                 f"{p.n_microbatches} micro-batches x {pp} stage{'s' if pp > 1 else ''}; step {step * scale:,.4g} {unit}",
                 fontsize=11)
    ax.legend(handles=list(legend.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    return fig


def breakdown_bar(result: StepResult) -> Figure:
    """Horizontal stacked bars: where each stage's step time goes, plus the mean over stages."""
    rows = [("mean", result.breakdown_s)] + [(f"stage {i}", d) for i, d in enumerate(result.stage_breakdown_s)]
    unit, scale = _time_unit(result.step_time_s)
    height = _row_height(len(rows), 0.28, 1.8)
    fig = _new_figure(height)
    _place_axes(fig, height)
    ax = fig.add_subplot()

    y = np.arange(len(rows), dtype=float)
    y[1:] += 0.5  # a gap between the mean and the stages
    left = np.zeros(len(rows))
    for key in BREAKDOWN_KEYS:
        w = np.array([d.get(key, 0.0) for _, d in rows]) * scale
        ax.barh(y, w, left=left, height=0.7, color=COLORS[key], label=LABELS[key],
                hatch="///" if key in ("bubble", "stall") else None, edgecolor="white", linewidth=0.3)
        left += w
    ax.axvline(result.step_time_s * scale, color="black", linestyle="--", linewidth=1,
               label=f"step time ({result.step_time_s * scale:,.4g} {unit})")
    ax.set_yticks(y, [name for name, _ in rows], fontsize=8 if len(rows) <= 33 else 6)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.set_ylim(y[-1] + 0.6, -0.6)  # mean, then stage 0, at the top
    ax.set_xlim(0, max(float(left.max()), result.step_time_s * scale) * 1.02)
    ax.set_xlabel(f"time per step ({unit})")
    ax.grid(axis="x", linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    ax.set_title(f"{result.scenario}\nwhere the step time goes, per pipeline stage "
                 "(communication: exposed part only)", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def memory_bar(result: StepResult) -> Figure:
    """Stacked bar of the memory per GPU (peak stage) by category, with the GPU's capacity."""
    mem = result.memory
    cap_gb = mem.capacity / 1e9
    total_gb = mem.total / 1e9
    fig = _new_figure(5.5, 9.0)
    fig.subplots_adjust(left=0.1, right=0.56, top=0.86, bottom=0.1)
    ax = fig.add_subplot()

    bottom = 0.0
    for key in MEMORY_KEYS:
        gb = getattr(mem, key) / 1e9
        ax.bar([0], [gb], bottom=bottom, width=0.5, color=COLORS[key], edgecolor="white", linewidth=0.5,
               label=f"{key} ({_gb(gb)} GB)")
        bottom += gb
    ax.axhline(cap_gb, color="#C00000" if not mem.fits else "black", linestyle="--", linewidth=1.5,
               label=f"capacity of one {result.gpu}: {cap_gb:,.0f} GB")
    ax.text(0, total_gb, f"{_gb(total_gb)} GB ({_share(total_gb / cap_gb)} of capacity)", ha="center",
            va="bottom", fontsize=9)
    ax.set_xlim(-0.8, 0.8)
    ax.set_ylim(0, max(cap_gb, total_gb) * 1.12)
    ax.set_xticks([0], [f"one GPU of stage {mem.stage} (the peak)"])
    ax.set_ylabel("memory per GPU (GB)")
    ax.grid(axis="y", linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    verdict = "fits" if mem.fits else "DOES NOT FIT"
    ax.set_title(f"{result.scenario}\nmemory per GPU: {_gb(total_gb)} of {cap_gb:,.0f} GB, {verdict}",
                 fontsize=11, color="black" if mem.fits else "#C00000")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9,
              frameon=False)  # reversed: top of the stack first
    return fig


def write_plots(result: StepResult, folder: str | Path) -> list[Path]:
    """Write ``timeline``, ``breakdown`` and ``memory`` figures as PNG and SVG into ``folder``
    (created if missing); each file is replaced atomically. Returns the written paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, make in (("timeline", pipeline_timeline), ("breakdown", breakdown_bar), ("memory", memory_bar)):
        fig = make(result)
        for fmt in ("png", "svg"):
            path = folder / f"{stem}.{fmt}"
            with atomic_write(path, "wb") as f:
                fig.savefig(f, format=fmt, dpi=150)
            written.append(path)
    return written
