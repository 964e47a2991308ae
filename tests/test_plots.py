"""Figures of a simulated step (`simulator.results.plots`, `trainsim run --plot`)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from matplotlib.lines import Line2D
from typer.testing import CliRunner

from simulator.cli import app
from simulator.inputs.scenario import Scenario, load_scenario
from simulator.results import plots
from simulator.results.assemble import simulate
from simulator.results.report import LABELS
from simulator.system.breakdown import BREAKDOWN_KEYS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILES = [f"{stem}.{ext}" for stem in ("timeline", "breakdown", "memory") for ext in ("png", "svg")]
SCENARIO_YAML = """\
name: plot test
model: {preset: tiny, seq_len: 1024}
topology: dgx-a100-superpod
gpus: 16
plan: {tp: 2, pp: 2, micro_batch: 1, global_batch: 16}
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def result():
    sc = Scenario(name="plot test", model={"preset": "tiny", "seq_len": 1024}, topology="dgx-a100-superpod",
                  gpus=16, plan=dict(tp=2, pp=2, micro_batch=1, global_batch=16))
    return simulate(sc, record_timeline=True)


def _check_files(folder, paths=None):
    if paths is not None:
        assert sorted(p.name for p in paths) == sorted(FILES)
        assert all(p.parent == folder for p in paths)
    for name in FILES:
        path = folder / name
        data = path.read_bytes()
        if name.endswith(".png"):
            assert data.startswith(PNG_SIGNATURE), name
            assert len(data) > 5_000, name
        else:
            root = ET.fromstring(data)  # well-formed XML
            assert root.tag.endswith("svg") and b"<svg" in data, name
    assert not [p for p in folder.iterdir() if p.name not in FILES], "temporary files left behind"


def test_write_plots_writes_six_files(result, tmp_path):
    folder = tmp_path / "new" / "figs"  # created if missing
    paths = plots.write_plots(result, folder)
    _check_files(folder, paths)
    again = plots.write_plots(result, folder)  # overwrites in place
    _check_files(folder, again)


def test_timeline_has_a_row_per_stage_and_the_scenario_in_its_title(result):
    fig = plots.pipeline_timeline(result)
    ax = fig.axes[0]
    pp = result.plan.pp
    assert list(ax.get_yticks()) == list(range(pp))
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"stage {s}" for s in range(pp)]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # stage 0 at the top
    assert result.scenario in ax.get_title()
    assert "(ms)" in ax.get_xlabel()  # a 2 ms step is shown in milliseconds
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("bubble / stall / exposed comm" in t for t in legend)
    assert any(t.startswith("forward") for t in legend) and any(t.startswith("backward") for t in legend)
    # micro-batch numbers are written on the (few, wide) forward and backward bars
    numbers = [t.get_text() for t in ax.texts]
    assert set(numbers) == {str(m) for m in range(result.plan.n_microbatches)}


def test_timeline_without_a_recorded_timeline_says_so(result):
    from dataclasses import replace

    import pandas as pd
    with pytest.raises(ValueError, match="record_timeline"):
        plots.pipeline_timeline(replace(result, timeline=pd.DataFrame()))


def test_breakdown_legend_holds_every_category(result):
    fig = plots.breakdown_bar(result)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for key in BREAKDOWN_KEYS:
        assert LABELS[key] in legend
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mean"] + [
        f"stage {s}" for s in range(result.plan.pp)]
    assert result.scenario in ax.get_title()
    # the stacked bars add up to the step time on every row
    ends = {}
    for patch in ax.patches:
        y = round(patch.get_y(), 6)
        ends[y] = max(ends.get(y, 0.0), patch.get_x() + patch.get_width())
    assert len(ends) == result.plan.pp + 1
    for end in ends.values():
        assert end == pytest.approx(result.step_time_s * 1e3, rel=1e-6)


def _legend_colours(fig):
    legend = fig.axes[0].get_legend()
    return {t.get_text(): tuple(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)
            if not isinstance(h, Line2D)}


def test_the_same_category_has_the_same_colour_in_timeline_and_breakdown(result):
    timeline = _legend_colours(plots.pipeline_timeline(result))
    breakdown = _legend_colours(plots.breakdown_bar(result))
    for prefix, key in (("forward", "forward"), ("backward", "backward"), ("optimizer", "optimizer"),
                        ("PP send", "pp_comm"), ("DP grad", "dp_comm")):
        colour = next(c for t, c in timeline.items() if t.startswith(prefix))
        assert colour == breakdown[LABELS[key]], prefix


def test_memory_capacity_line_sits_at_capacity(result):
    fig = plots.memory_bar(result)
    ax = fig.axes[0]
    cap_gb = result.memory.capacity / 1e9
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("capacity")]
    assert len(lines) == 1
    assert isinstance(lines[0], Line2D)
    assert all(y == pytest.approx(cap_gb) for y in lines[0].get_ydata())
    assert f"{cap_gb:,.0f} GB" in lines[0].get_label()
    assert "(GB)" in ax.get_ylabel()
    assert result.scenario in ax.get_title() and "fits" in ax.get_title()
    stacked = sum(p.get_height() for p in ax.patches)
    assert stacked == pytest.approx(result.memory.total / 1e9, rel=1e-9)


def test_memory_title_says_when_it_does_not_fit(result):
    from dataclasses import replace

    mem = replace(result.memory, capacity=result.memory.total / 2)
    assert "DOES NOT FIT" in plots.memory_bar(replace(result, memory=mem)).axes[0].get_title()


def test_cli_run_plot_writes_six_files(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SCENARIO_YAML)
    folder = tmp_path / "figs"
    res = runner.invoke(app, ["run", str(path), "--plot", str(folder)])
    assert res.exit_code == 0, res.output
    _check_files(folder)
    for name in FILES:
        assert name in res.output


def test_cli_run_plot_with_json_keeps_stdout_json(tmp_path):
    import json

    path = tmp_path / "small.yaml"
    path.write_text(SCENARIO_YAML)
    res = runner.invoke(app, ["run", str(path), "--json", "--plot", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # the written paths go to stderr
    assert "memory.svg" in res.stderr
    _check_files(tmp_path / "f")


def test_cli_run_plot_into_a_file_is_refused(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SCENARIO_YAML)
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    res = runner.invoke(app, ["run", str(path), "--plot", str(target)])
    assert res.exit_code == 2, res.output
    assert "--plot" in res.output and "Traceback" not in res.output
    assert target.read_text() == "x"


def test_timeline_of_a_large_pipeline_renders():
    """Megatron 1T: 512 micro-batches x 64 stages, ~170k intervals (render time: benchmarks/hot_paths.py)."""
    r = simulate(load_scenario("megatron-1t-3072-a100"), record_timeline=True)
    assert len(r.timeline) > 100_000
    fig = plots.pipeline_timeline(r)
    fig.canvas.draw()
    assert len(fig.axes[0].get_yticks()) == 64
    assert not fig.axes[0].texts  # too many bars per row to number them
