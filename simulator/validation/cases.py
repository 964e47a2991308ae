"""Published training measurements, one per row of a CSV, turned into what to simulate.

Input: a CSV in the format of trainsim's validation set (one configuration and
one published number per row; columns described in ``REQUIRED_COLUMNS`` and
``OPTIONAL_COLUMNS``). For every row, :func:`validate` builds the model, the
fleet and the plan, simulates one step and turns it into the row's metric.

Rules for what a row leaves open (each use is listed in the row's
``defaults_used``):

* model: :mod:`simulator.validation.case_model` (shape from the row, a preset or stated
  defaults; the architecture variant from ``n_params_b``).
* framework: the ``framework`` column, else the source's (``source_conventions.yaml``), else
  ``megatron-lm`` (:mod:`simulator.workload.framework`). Its defaults fill the plan options the
  row leaves open (sequence parallelism with TP, TP-communication overlap, the distributed
  optimizer or FSDP, the gradient-reduce precision, fp8 saved inputs, fused element-wise ops,
  FSDP resharding), and the row's ``recompute`` is read in its terms (torchtitan's
  ``selective`` is per-op AC).
* fleet: ``gpus_per_node`` empty = 8 (or the whole fleet if smaller);
  ``inter_node_gbps_per_gpu`` empty = the NIC rate of the GPU's generation
  (:data:`DEFAULT_NIC_GBPS`). The topology is a rail-optimised, non-blocking
  two-tier fat tree of NVSwitch nodes with the catalog's intra-node bandwidth
  (:func:`row_topology`).
* plan: ``tp``/``pp``/``cp`` empty = 1, ``dp`` empty = ``n_gpus / (tp cp pp)``, ``vpp`` 1 (but
  when ``notes`` say the schedule was interleaved and ``vpp`` is empty, every chunk count the
  layers allow is tried and the fastest by the first pass kept), ``micro_batch`` 1 (with ZeRO-3 /
  FSDP: ``global_batch / dp``, no gradient accumulation), ``seq_parallel`` the framework's
  (Megatron-LM: 0), ``precision`` bf16 (fp16 where the GPU has no bf16).
  Layers that ``pp x vpp`` does not divide go one fewer to the first and last stages
  (:meth:`~simulator.workload.plan.ParallelPlan.layers`). Empty ``recompute``: ``full`` when
  the source says its FLOP count includes the recomputation pass (``source_conventions.yaml``); otherwise, with an
  empty ``zero_stage``, the cheapest memory saving with which the plan fits with
  :data:`FIT_HEADROOM` of the GPU's memory to spare (recompute none, selective, full; within
  each, the framework's ZeRO stage, or for a framework without one ZeRO 0 then the distributed
  optimizer, ZeRO 1): the published run must have fitted. A row that states none of
  ``tp``, ``pp`` and ``dp`` (or states ``dp`` with sizes that, empty as 1, do not fill the
  fleet) gets, among the TP sizes within a node and PP sizes dividing the layers it leaves
  open (and the recompute and ZeRO options it leaves open), the plan that fits and that the
  planner's first pass (:func:`~simulator.studies.planner.estimate_step`) estimates fastest:
  published runs were tuned.
  Megatron-LM option switches quoted in ``notes``
  (``--tp-comm-overlap``, ``--overlap-param-gather``, ``--overlap-grad-reduce``,
  ``--sequence-parallel``, ``--use-distributed-optimizer``, ``--grad-reduce-in-bf16``)
  set the overlap options no column carries, and the features Megatron-LM requires
  for them (sequence parallelism, the distributed optimizer) where the column is empty
  (:func:`simulator.workload.megatron.options_in_text`). The attention kernel is flash unless
  ``source_conventions.yaml`` says the source ran unfused (``standard``) attention.
* metric: ``step_time_s``; ``tflops_per_gpu`` by the Megatron-LM formula
  (Narayanan et al. 2021, eq. 3) with or without its recomputation term as the
  source did (``source_conventions.yaml``, with the source of each convention;
  for a source not listed there: with the term when the row states full
  recomputation) — the ``formula`` column says which; ``mfu`` and ``hfu`` as
  :class:`~simulator.results.step.StepResult` defines them; ``tokens_per_s_per_gpu``.

A row that cannot be simulated (unknown GPU, a plan that does not divide or does
not fit) keeps its line with the reason in ``status`` and counts as a failure.
"""

from __future__ import annotations

import itertools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator.core.cache import sized_cache
from simulator.core.errors import InputError
from simulator.hardware.catalog import Catalog, GPUSpec
from simulator.inputs.resolve import Fleet, Setup
from simulator.inputs.scenario import Scenario
from simulator.network.describe import describe_topology
from simulator.network.topology import Topology, estimated_bytes
from simulator.studies.space import pp_choices, tp_choices
from simulator.system.efficiency import Efficiency
from simulator.validation.case_model import row_model
from simulator.validation.cells import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    blank,
    count,
    number,
)
from simulator.workload.framework import (
    DEFAULT_FRAMEWORK,
    Framework,
    framework_names,
    get_framework,
)
from simulator.workload.megatron import options_in_text
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan

__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "blank", "case_setup", "number", "read_cases"]

FIT_HEADROOM = 0.03
"""Share of a GPU's memory a published run is taken to have kept free when trainsim chooses the
cheapest memory saving that fits: allocator fragmentation and transient spikes the model does
not resolve (3 %, about 2.4 GB of an 80 GB GPU)."""

METRICS = ("step_time_s", "tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu", "peak_memory_gib", "fits")

DEFAULT_NIC_GBPS = {"volta": 100.0, "ampere": 200.0, "hopper": 400.0, "blackwell": 400.0, "cdna2": 200.0,
                    "cdna3": 400.0}
"""NIC rate per GPU (Gbit/s) of each architecture's reference systems (DGX-2: EDR 100 Gb/s;
DGX A100: HDR 200; DGX H100/B200: NDR 400; see shared/reference/systems.csv), used when a
row does not say."""

NODE_LATENCY_US = {"scale_up": 2.0, "nic": 1.5, "switch": 0.3}
"""Latencies of generated topologies (same estimates as the bundled DGX files)."""

# --------------------------------------------------------------------------- reading


def read_cases(path: str | Path) -> pd.DataFrame:
    """The cases of a validation CSV; raises :class:`InputError` naming the file and column."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"case_id": str, "gpu": str, "metric": str, "recompute": str,
                                      "n_params_b": str, "source_id": str}, skipinitialspace=True)
    except FileNotFoundError:
        raise InputError("no such file; give a CSV in trainsim's validation format", file=str(path)) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV ({err})", file=str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read it ({err.strerror or err}); give a CSV file", file=str(path)) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}",
                         file=str(path), field=missing[0])
    if df.empty:
        raise InputError("the file has a header but no cases", file=str(path))
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    df["case_id"] = [str(x) if not blank(x) else f"(row {i + 2})" for i, x in enumerate(df["case_id"])]
    return df


# --------------------------------------------------------------------------- building a case


def row_topology(gpu: GPUSpec, n_gpus: int, gpus_per_node: int, nic_gbps: float) -> Topology:
    """A fleet of NVSwitch nodes of ``gpus_per_node`` GPUs (the catalog's intra-node bandwidth),
    one NIC of ``nic_gbps`` per GPU, on a rail-optimised non-blocking two-tier fat tree."""
    return _row_topology(gpu.name, gpu.intra_node_bandwidth_Bps, n_gpus, gpus_per_node, nic_gbps)


@sized_cache(estimated_bytes)  # at most DEFAULT_BUDGET_BYTES of built fleets (estimated), not a count
def _row_topology(gpu: str, scale_up_Bps: float, n_gpus: int, gpus_per_node: int, nic_gbps: float) -> Topology:
    return describe_topology(
        gpu, gpus_per_node, "nvswitch", gpus_per_node, nic_gbps, "ib", n_gpus,
        bandwidth_GBps=scale_up_Bps / 1e9, scale_up_latency_us=NODE_LATENCY_US["scale_up"],
        nic_latency_us=NODE_LATENCY_US["nic"], switch_latency_us=NODE_LATENCY_US["switch"],
        power_source="not modelled in validation", switch_power_source="not modelled in validation",
        name=f"{gpus_per_node} x {gpu} per node, {nic_gbps:g} Gb/s per GPU",
        source="generated by trainsim validate from the row's gpu, gpus_per_node and inter_node_gbps_per_gpu",
    )


def row_framework(row: pd.Series, used: list[str]) -> Framework:
    """The row's framework: its ``framework`` cell, else its source's (``source_conventions.yaml``:
    the first ``framework_in_notes`` text its notes contain, else ``framework``), else
    :data:`~simulator.workload.framework.DEFAULT_FRAMEWORK`."""
    if not blank(row.get("framework")):
        name = str(row["framework"]).strip()
        if name not in framework_names():
            raise ValueError(f"column framework: {name!r} is not one of {', '.join(framework_names())}")
        return get_framework(name)
    convention = _convention(row)
    notes = "" if blank(row["notes"]) else str(row["notes"])
    name = next((fw for text, fw in (convention.get("framework_in_notes") or {}).items() if text in notes),
                convention.get("framework"))
    if name:
        used.append(f"framework={name} (source_conventions.yaml)")
        return get_framework(name)
    used.append(f"framework={DEFAULT_FRAMEWORK}")
    return get_framework(DEFAULT_FRAMEWORK)


Sizes = tuple[int, int, int]
"""(tp, pp, vpp) of a candidate plan."""


def _plan(row: pd.Series, gpu: GPUSpec, n_gpus: int, recompute: str, zero_stage: int, used: list[str],
          stated: dict[str, Any], framework: Framework, sizes: Sizes | None = None) -> ParallelPlan:
    """The row's plan; ``sizes``: the (tp, pp, vpp) to use where the row leaves them open."""
    def get(col: str, default: int) -> int:
        value = count(row, col, minimum=0 if col in ("seq_parallel", "zero_stage") else 1)
        if value is None:
            used.append(f"{col}={default}")
            return default
        return value

    if sizes is None:
        tp, pp, vpp = get("tp", 1), get("pp", 1), get("vpp", 1)
    else:
        tp, pp, vpp = sizes
        used.append(f"tp={tp}, pp={pp}, vpp={vpp} (sizes the row leaves open: the fastest plan that fits by "
                    "trainsim's first-pass estimate)")
    cp = get("cp", 1)
    dp = count(row, "dp", minimum=1)
    if dp is None:
        dp = n_gpus // (tp * cp * pp)
        used.append(f"dp={dp}")
    precision = row["precision"] if not blank(row["precision"]) else None
    if precision is None:
        precision = "bf16" if "bf16" in gpu.peak_flops else "fp16"
        used.append(f"precision={precision}")
    options = {k: v for k, v in stated.items() if k != "zero_stage"}
    if not blank(row["seq_parallel"]):
        options["sequence_parallel"] = bool(count(row, "seq_parallel"))
    open_fields = set(ParallelPlan.model_fields) - set(options) - {"zero_stage", "recompute"}
    from_framework = framework.defaults_for(open_fields, tp, pp, bool(options.get("sequence_parallel")))
    if from_framework:
        used.append(f"{framework.name} defaults: " + ", ".join(f"{k}={v}" for k, v in from_framework.items()))
    options = {**from_framework, **options}
    global_batch = count(row, "global_batch_seqs", minimum=1)
    micro_batch = count(row, "micro_batch", minimum=1)
    if micro_batch is None:
        micro_batch = max(1, global_batch // dp) if zero_stage == 3 else 1
        used.append(f"micro_batch={micro_batch}" + (" (ZeRO-3/FSDP: no gradient accumulation)" if zero_stage == 3 else ""))
    return ParallelPlan(
        tp=tp, pp=pp, dp=dp, cp=cp, vpp=vpp, micro_batch=micro_batch, global_batch=global_batch,
        schedule="interleaved" if vpp > 1 else "1f1b", recompute=framework.recompute_for(recompute),
        zero_stage=zero_stage, precision=precision, framework=framework.name, **options,
    )


INTERLEAVED = re.compile(r"interleav", re.IGNORECASE)


def _chunk_choices(row: pd.Series, model: ModelConfig, pp: int) -> list[int]:
    """The vpp to try on ``pp`` stages: the row's (empty: 1), or, when its notes say the schedule was
    interleaved and it leaves vpp empty, every chunk count from 2 the layers allow."""
    vpp = count(row, "vpp", minimum=1)
    if vpp is not None:
        return [vpp]
    if pp > 1 and not blank(row["notes"]) and INTERLEAVED.search(str(row["notes"])):
        return list(range(2, model.n_layers // pp + 1)) or [1]
    return [1]


def _model_parallel_sizes(row: pd.Series, model: ModelConfig, n_gpus: int, gpus_per_node: int
                          ) -> list[Sizes | None]:
    """The (tp, pp, vpp) to try: the row's own (``[None]``: empty is 1) unless it states none of tp, pp
    and dp, or states dp but its tp and pp (empty as 1) do not fill the fleet with it, or leaves
    the chunks of an interleaved schedule open; then every split the row leaves open, with TP
    inside a node, PP dividing the layers, and the fleet filled."""
    tp, pp, dp, cp = (count(row, c, minimum=1) for c in ("tp", "pp", "dp", "cp"))
    cp = cp or 1
    own = tp is not None and pp is not None
    if not own and (tp, pp, dp) != (None, None, None) and (dp is None or (tp or 1) * (pp or 1) * cp * dp == n_gpus):
        tp, pp, own = tp or 1, pp or 1, True
    if own:
        chunks = _chunk_choices(row, model, pp)
        return [None] if len(chunks) == 1 else [(tp, pp, v) for v in chunks]
    tps = [tp] if tp is not None else tp_choices(model, gpus_per_node)
    pps = [pp] if pp is not None else pp_choices(model)
    sizes = [(t, p, v) for t in tps for p in pps for v in _chunk_choices(row, model, p)
             if (n_gpus % (t * p * cp) == 0 if dp is None else t * p * cp * dp == n_gpus)]
    return sizes or [None]


def case_setup(row: pd.Series, catalog: Catalog, efficiency: Efficiency) -> tuple[Setup, list[str]]:
    """The resolved model, fleet and plan of one row, and the defaults it needed.

    Raises :class:`InputError` or ``ValueError`` with the reason a row cannot be simulated."""
    used: list[str] = []
    model = row_model(row, used)
    if _convention(row).get("dropout") is False and model.dropout:
        model = model.model_copy(update={"dropout": False})
        used.append("dropout off (source_conventions.yaml)")
    gpu = catalog.get(str(row["gpu"]))
    n_gpus = count(row, "n_gpus", minimum=1)
    gpn = count(row, "gpus_per_node", minimum=1)
    if gpn is None:
        gpn = min(8, n_gpus)
        used.append(f"gpus_per_node={gpn}")
    nic = row["inter_node_gbps_per_gpu"]
    if blank(nic):
        nic = DEFAULT_NIC_GBPS.get(gpu.generation, 200.0)
        used.append(f"inter_node_gbps_per_gpu={nic:g}")
    topology = row_topology(gpu, n_gpus, gpn, float(nic))
    framework = row_framework(row, used)
    recomputes, zeros, stated = _memory_options(row, framework, used)
    scenario = Scenario(name=str(row["case_id"]), model=model.model_dump(), topology=topology.name, gpus=n_gpus,
                        plan={"global_batch": count(row, "global_batch_seqs", minimum=1)})
    fleet = Fleet(scenario, model, topology, gpu, efficiency)
    all_sizes = _model_parallel_sizes(row, model, n_gpus, gpn)
    plan, used, recompute, zero, fits = _chosen_plan(row, fleet, stated, framework, all_sizes, recomputes, zeros,
                                                     used)
    why = ("the fastest that fits" if all_sizes != [None] else "the cheapest that fits") if fits else "nothing fits"
    if len(recomputes) > 1:
        used.append(f"recompute={recompute} ({why})")
    if len(zeros) > 1:
        used.append(f"zero_stage={zero} ({why})")
    split = plan.layers(model.n_layers)
    if len(set(split)) > 1:
        used.append(f"layers per virtual stage {','.join(map(str, split))} (pp x vpp does not divide them: "
                    "fewer on the first and last)")
    return fleet.setup(plan), used


def _memory_options(row: pd.Series, framework: Framework, used: list[str]
                    ) -> tuple[list[str], list[int], dict[str, Any]]:
    """The recompute and ZeRO options to try, and the plan options the notes and the source's
    conventions state. Empty recompute: full if the source's FLOP count assumes recomputation
    (source_conventions.yaml), else the cheapest memory saving with which the plan fits. Empty
    zero_stage: the framework's, else ZeRO 0 then 1."""
    if not blank(row["recompute"]):
        recomputes = [str(row["recompute"]).strip()]
    elif _convention(row).get("tflops_recompute_term"):
        recomputes = ["full"]
        used.append("recompute=full (the source's FLOP count assumes recomputation)")
    else:
        recomputes = ["none", "selective", "full"]
    # Megatron-LM switches quoted in the notes (the run's overlap settings have no column)
    stated, flags = options_in_text("" if blank(row["notes"]) else str(row["notes"]))
    if flags:
        used.append("from notes: " + " ".join(flags))
    attention = _convention(row).get("attention")
    if attention:
        stated["attention"] = attention
        used.append(f"attention={attention} (source_conventions.yaml)")
    if not blank(row["zero_stage"]):
        zeros = [count(row, "zero_stage")]
    elif "zero_stage" in stated:
        zeros = [int(stated["zero_stage"])]
    elif "zero_stage" in framework.defaults:
        zeros = [int(framework.defaults["zero_stage"].value)]
        used.append(f"zero_stage={zeros[0]} ({framework.name} default)")
    else:
        zeros = [0, 1]
    return recomputes, zeros, stated


def fits_with_headroom(memory) -> bool:
    """Whether a plan's peak memory fits and leaves :data:`FIT_HEADROOM` of the GPU free."""
    return memory.fits and memory.required <= (1 - FIT_HEADROOM) * memory.capacity


def _chosen_plan(row: pd.Series, fleet: Fleet, stated: dict[str, Any], framework: Framework, all_sizes: list,
                 recomputes: list[str], zeros: list[int], used: list[str]
                 ) -> tuple[ParallelPlan, list[str], str, int, bool]:
    """(plan, defaults used, recompute, zero stage, whether it fits): the row's own sizes with the
    first memory option that fits, or among the sizes it leaves open the fastest that fits by the
    first pass; the last tried if nothing fits."""
    model, gpu, n_gpus = fleet.model, fleet.device, fleet.scenario.gpus
    chosen, best_s = None, math.inf
    for sizes, (recompute, zero) in itertools.product(all_sizes, itertools.product(recomputes, zeros)):
        tried = list(used)
        try:
            plan = _plan(row, gpu, n_gpus, recompute, zero, tried, stated, framework, sizes)
            check_plan(plan, model, n_gpus=n_gpus, gpus_per_node=fleet.topology.gpus_per_node)
        except (ValueError, InputError):
            if sizes is None:
                raise  # the row's own sizes: their error is the row's
            continue
        fits = fits_with_headroom(fleet.memory(plan))
        if not fits:
            if chosen is None or not chosen[4]:  # nothing fits yet: keep the last tried
                chosen = (plan, tried, recompute, zero, fits)
            continue
        if sizes is None:  # the row's own sizes: the first that fits
            return plan, tried, recompute, zero, fits
        step_s = fleet.estimate(plan).step_s
        if step_s < best_s:
            chosen, best_s = (plan, tried, recompute, zero, fits), step_s
    if chosen is None:
        raise ValueError("no tensor and pipeline size divides this model, fleet and batch")
    return chosen


def source_conventions() -> dict[str, dict[str, Any]]:
    """Per source, what it did that its rows do not say (``source_conventions.yaml``)."""
    return yaml.safe_load(resources.files("simulator.validation").joinpath("source_conventions.yaml").read_text())


def _convention(row: pd.Series) -> dict[str, Any]:
    return source_conventions().get(str(row["source_id"])) or {}


def recompute_term(row: pd.Series) -> bool:
    """Whether the row's TFLOP/s count the recomputation pass (see module docstring)."""
    convention = _convention(row)
    if "tflops_recompute_term" in convention:
        return bool(convention["tflops_recompute_term"])
    return not blank(row["recompute"]) and str(row["recompute"]).strip() == "full"


