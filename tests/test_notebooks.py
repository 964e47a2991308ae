"""Every study notebook runs top to bottom on the bundled data, and its conclusions hold.

Each notebook is executed once (nbclient); the tests then read what it printed (its closing
sentences, and for (a)-(c) a last cell that prints the numbers behind them) and check the
claims its text makes: which plan or fleet wins, that a printed figure agrees with the
numbers it summarises (within the rounding it is printed with), and the trends the prose
states. They are not golden numbers (tests/test_golden.py holds those): a claim that stops
being true fails here.
"""

from __future__ import annotations

import ast
import re
from itertools import pairwise
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
_EXECUTED: dict[str, nbformat.NotebookNode] = {}


def executed(stem: str, tmp_path_factory) -> nbformat.NotebookNode:
    """The notebook ``stem`` run top to bottom (once per test session)."""
    if stem not in _EXECUTED:
        notebook = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
        workdir = tmp_path_factory.mktemp(stem)
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
        _EXECUTED[stem] = notebook
    return _EXECUTED[stem]


def printed(notebook) -> str:
    """Everything the notebook's code cells printed, in order."""
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", []) if o.output_type == "stream" and o.get("name") == "stdout")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def rows(pattern: str, text: str) -> list[dict[str, str]]:
    found = [m.groupdict() for m in re.finditer(pattern, text, flags=re.MULTILINE)]
    assert found, f"nothing printed matches {pattern!r}"
    return found


def one(pattern: str, text: str) -> dict[str, str]:
    (found,) = rows(pattern, text)
    return found


def increasing(values) -> bool:
    return all(b > a for a, b in pairwise(values))


def decreasing(values) -> bool:
    return all(b < a for a, b in pairwise(values))


# --------------------------------------------------------------------------- every notebook


def test_there_are_at_least_three_studies():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_error_and_shows_figures(path, tmp_path_factory):
    notebook = executed(path.stem, tmp_path_factory)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "a study shows at least one figure"


def test_every_notebook_has_its_conclusions_checked():
    checked = {name.removeprefix("test_conclusions_of_") for name in globals() if name.startswith("test_conclusions_of_")}
    assert {p.stem for p in NOTEBOOKS} == checked


# --------------------------------------------------------------------------- (a) model size


def test_conclusions_of_a_model_size_on_a_fixed_fleet(tmp_path_factory):
    out = printed(executed("a_model_size_on_a_fixed_fleet", tmp_path_factory))
    sizes = rows(r"^(?P<model>[\d.]+B): (?P<params>[\d.]+) B params, TP (?P<tp>\d+) PP (?P<pp>\d+), "
                 r"MFU (?P<mfu>[\d.]+)%, (?P<energy>[\d.]+) mJ per token, (?P<mem>[\d.]+) of (?P<cap>[\d.]+) GB, "
                 r"TP comm (?P<tp_s>[\d.]+) %, DP comm (?P<dp_s>[\d.]+) %, bubble (?P<bubble_s>[\d.]+) %$", out)
    assert [s["model"] for s in sizes] == ["1.3B", "6.7B", "13B", "30B", "66B", "175B"]
    params = [number(s["params"]) for s in sizes]
    assert increasing(params)
    # a sensible plan for each size fits: pipeline stages once a node's memory is not enough
    assert all(number(s["mem"]) < number(s["cap"]) for s in sizes)
    # energy per token grows with the model
    energy = [number(s["energy"]) for s in sizes]
    assert increasing(energy)
    # wider TP groups: exposed TP communication appears with TP and grows with its width (one stage)
    for s in sizes:
        assert (number(s["tp_s"]) > 0) == (int(s["tp"]) > 1)
        assert (number(s["bubble_s"]) > 0) == (int(s["pp"]) > 1)  # the bubble comes with pipeline stages
    one_stage = [s for s in sizes if s["pp"] == "1"]
    assert increasing([int(s["tp"]) for s in one_stage]) and increasing([number(s["tp_s"]) for s in one_stage])
    # the exposed gradient reduction: least for the pipelined plans, most for the mid-sized TP-only
    # plans, the smallest model's in between
    dp_share = {s["model"]: number(s["dp_s"]) for s in sizes}
    pipelined = [dp_share[s["model"]] for s in sizes if s["pp"] != "1"]
    tp_only = [dp_share[s["model"]] for s in sizes if s["pp"] == "1" and s["tp"] != "1"]
    assert pipelined and tp_only and max(pipelined) < dp_share["1.3B"] < min(tp_only)

    said = one(r"^MFU is highest for (?P<best>\S+) \((?P<best_mfu>\d+)%\) and lowest for (?P<worst>\S+) "
               r"\((?P<worst_mfu>\d+)%\); energy per token grows (?P<growth>\d+)x from (?P<first>\S+) to (?P<last>\S+)\.$",
               out)
    mfu = {s["model"]: number(s["mfu"]) for s in sizes}
    assert said["best"] == max(mfu, key=mfu.get) and said["worst"] == min(mfu, key=mfu.get)
    assert abs(int(said["best_mfu"]) - mfu[said["best"]]) <= 0.55
    assert abs(int(said["worst_mfu"]) - mfu[said["worst"]]) <= 0.55
    assert (said["first"], said["last"]) == ("1.3B", "175B")
    assert int(said["growth"]) == pytest.approx(energy[-1] / energy[0], abs=0.6)


# --------------------------------------------------------------------------- (b) fleet scaling


def test_conclusions_of_b_scaling_the_fleet(tmp_path_factory):
    out = printed(executed("b_scaling_the_fleet", tmp_path_factory))
    fleets = rows(r"^(?P<gpus>\d+) GPUs: (?P<m>\d+) micro-batches per replica, (?P<tput>[\d.]+) tokens/s per GPU, "
                  r"exposed DP comm (?P<dp>[\d.]+)% of the step, (?P<hidden>[\d.]+)% of DP comm hidden, "
                  r"stall (?P<stall>[\d.]+)% of the step$", out)
    gpus = [int(f["gpus"]) for f in fleets]
    assert gpus == [16, 32, 64, 128, 256, 512, 1024]
    # as data parallelism grows each replica gets fewer micro-batches (a fixed global batch) ...
    micro = [int(f["m"]) for f in fleets]
    assert all(a == 2 * b for a, b in pairwise(micro))
    # ... so the exposed gradient reduction grows and the per-GPU throughput falls
    assert increasing([number(f["dp"]) for f in fleets])
    tput = [number(f["tput"]) for f in fleets]
    assert decreasing(tput)
    # the share of the gradient reduction that hides (behind the last backward pass) stays about the same
    hidden = [number(f["hidden"]) for f in fleets]
    assert max(hidden) - min(hidden) < 10
    # the compute jitter makes synchronisation stalls show up
    assert all(number(f["stall"]) > 0 for f in fleets)

    buckets = {int(b["mb"]): number(b["s"]) for b in rows(r"^bucket (?P<mb>\d+) MB at 512 GPUs: (?P<s>[\d.]+) s per step$", out)}
    assert sorted(buckets) == [10, 40, 160, 640]
    # small buckets pay a fixed cost per collective: the smallest is the slowest
    assert max(buckets, key=buckets.get) == min(buckets)
    assert len(rows(r"^micro-batch (?P<mb>\d+) at 512 GPUs: (?P<s>[\d.]+) s per step$", out)) == 3

    said = one(r"^Per-GPU throughput at (?P<big>\d+) GPUs is (?P<pct>\d+)% of that at (?P<small>\d+); "
               r"the best bucket at 512 GPUs is (?P<best>\d+) MB\.$", out)
    assert (int(said["big"]), int(said["small"])) == (gpus[-1], gpus[0])
    assert int(said["pct"]) == pytest.approx(100 * tput[-1] / tput[0], abs=0.51)
    assert int(said["best"]) == min(buckets, key=buckets.get)


# --------------------------------------------------------------------------- (c) TP, PP, micro-batch


def test_conclusions_of_c_choosing_tp_pp_microbatch(tmp_path_factory):
    out = printed(executed("c_choosing_tp_pp_microbatch", tmp_path_factory))
    capacity = number(one(r"^GPU memory: (?P<gb>[\d.]+) GB$", out)["gb"])
    plans = {(int(p["tp"]), int(p["pp"]), int(p["mb"])): p for p in rows(
        r"^(?P<label>TP(?P<tp>\d+) PP(?P<pp>\d+) mb(?P<mb>\d+)): (?P<step>[\d.]+) s per step, (?P<mem>[\d.]+) GB, "
        r"fits (?P<fits>True|False), TP comm (?P<tp_s>[\d.]+) s, bubble (?P<bubble>[\d.]+) s$", out)}
    assert len(plans) == 3 * 4 * 2  # every plan of the grid ran
    for p in plans.values():
        assert (p["fits"] == "True") == (number(p["mem"]) <= capacity + 0.05)
    tps, pps, mbs = sorted({k[0] for k in plans}), sorted({k[1] for k in plans}), sorted({k[2] for k in plans})
    for pp in pps:
        for mb in mbs:
            # wider tensor parallelism costs communication and saves memory
            assert increasing([number(plans[tp, pp, mb]["tp_s"]) for tp in tps])
            assert decreasing([number(plans[tp, pp, mb]["mem"]) for tp in tps])
    for tp in tps:
        for mb in mbs:
            # deeper pipelines cost bubble and save memory
            assert increasing([number(plans[tp, pp, mb]["bubble"]) for pp in pps])
            assert decreasing([number(plans[tp, pp, mb]["mem"]) for pp in pps])

    said = one(r"^Fastest plan that fits: (?P<label>TP\d+ PP\d+ mb\d+) \(DP (?P<dp>\d+)\), (?P<step>[\d.]+) s per step, "
               r"MFU (?P<mfu>\d+)%, (?P<mem>\d+) GB per GPU; (?P<out>\d+) of (?P<n>\d+) plans do not fit\.$", out)
    fitting = [p for p in plans.values() if p["fits"] == "True"]
    best = min(fitting, key=lambda p: number(p["step"]))
    assert said["label"] == best["label"]
    assert number(said["step"]) == pytest.approx(number(best["step"]), abs=0.0051)
    assert number(said["mem"]) == pytest.approx(number(best["mem"]), abs=0.51)
    assert int(said["dp"]) * int(best["tp"]) * int(best["pp"]) == 256
    assert int(said["n"]) == len(plans) and int(said["out"]) == len(plans) - len(fitting) > 0


# --------------------------------------------------------------------------- (d) which fleet


def test_conclusions_of_d_which_fleet_to_book(tmp_path_factory):
    notebook = executed("d_which_fleet_to_book", tmp_path_factory)
    out = printed(notebook)
    source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    prices = ast.literal_eval(re.search(r"^PRICES = (\{.*?\})", source, flags=re.MULTILINE).group(1))
    counts = one(r"^(?P<n>\d+) plans over (?P<fleets>\d+) fleets, (?P<fit>\d+) fit, (?P<sim>\d+) simulated$", out)
    assert int(counts["fleets"]) == 3 * len(prices)
    assert 0 < int(counts["sim"]) <= int(counts["fit"]) <= int(counts["n"])

    run = r"(?P<gpus>\d+) x (?P<gpu>\S+), (?P<h>[\d,]+) h for (?P<usd>[\d,]+) USD"
    fastest = one(rf"^fastest: {run}$", out)
    cheapest = one(rf"^cheapest: {run}$", out)
    budget = one(r"^with (?P<budget>[\d,]+) USD: (?P<gpus>\d+) x (?P<gpu>\S+), TP \d+ DP \d+ micro-batch \d+ ZeRO \d+: "
                 r"(?P<h>[\d,]+) h, (?P<usd>[\d,]+) USD \((?P<over>\d+) simulated plans were over budget\)$", out)
    for r in (fastest, cheapest, budget):
        # cost = hours x GPUs x the GPU's price (hours printed to the nearest hour)
        hours_paid = number(r["usd"]) / (int(r["gpus"]) * prices[r["gpu"]])
        assert hours_paid == pytest.approx(number(r["h"]), abs=0.5 + 1e-6)
    # the fastest fleet is no cheaper than the cheapest, the cheapest no faster than the fastest
    assert number(fastest["h"]) <= number(cheapest["h"])
    assert number(cheapest["usd"]) <= number(fastest["usd"])
    # the budget (the median cost of the best plans per fleet) pays for the cheapest run, so the fastest
    # run within it is at least as fast as the cheapest and no faster than the fastest overall
    assert number(cheapest["usd"]) <= number(budget["budget"])
    assert number(budget["usd"]) <= number(budget["budget"])
    assert number(fastest["h"]) <= number(budget["h"]) <= number(cheapest["h"])
    assert int(budget["over"]) > 0
    assert re.search(r"^Megatron-LM flags: \S", out, flags=re.MULTILINE)


# --------------------------------------------------------------------------- (e) long context


def test_conclusions_of_e_long_context(tmp_path_factory):
    out = printed(executed("e_long_context", tmp_path_factory))
    gains = {int(g["k"]): int(g["pct"]) for g in rows(r"^\s*(?P<k>\d+)K: context parallelism gains (?P<pct>[+-]\d+)%$", out)}
    lengths = sorted(gains)
    assert lengths == [8, 16, 32, 64, 128]
    # under 16K tokens cp is not searched, so both searches find the same plan
    assert gains[8] == 0
    # searching cp never loses, pays more the longer the sequence, and pays at 128K
    assert all(g >= 0 for g in gains.values())
    assert all(gains[b] >= gains[a] for a, b in pairwise(lengths))
    assert gains[128] > 0 and gains[128] == max(gains.values())

    plan = r"TP (?P<tp>\d+) CP (?P<cp>\d+) DP (?P<dp>\d+), recompute (?P<rc>\w+), (?P<gb>\d+) GB per GPU"
    with_cp = one(rf"^cp searched: {plan}$", out)
    without = one(rf"^cp = 1: {plan}$", out)
    for p in (with_cp, without):
        assert int(p["tp"]) * int(p["cp"]) * int(p["dp"]) == 64  # no pipeline: the 64 GPUs
        assert int(p["gb"]) <= 80
    # at 128K the best plan splits the sequence; without cp, a whole sequence's activations must
    # fit on a GPU, through wider tensor parallelism or recomputation
    assert int(with_cp["cp"]) > 1 and int(without["cp"]) == 1
    assert without["rc"] != "none" or int(without["tp"]) > int(with_cp["tp"])
    ring = one(r"^ring attention transfers: (?P<hidden>[\d.]+) s hidden beside attention, (?P<exposed>[\d.]+) s exposed$",
               out)
    assert number(ring["hidden"]) > number(ring["exposed"])  # the ring runs beside the attention kernels
