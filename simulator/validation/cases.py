"""Published training measurements, one per row of a CSV, turned into what to simulate.

Input: a CSV in the format of trainsim's validation set (one configuration and
one published number per row; columns described in ``REQUIRED_COLUMNS`` and
``OPTIONAL_COLUMNS``). For every row, :func:`validate` builds the model, the
fleet and the plan, simulates one step and turns it into the row's metric.

Rules for what a row leaves open (each use is listed in the row's
``defaults_used``):

* model shape: a row that leaves any of ``n_layers``, ``d_model``, ``n_heads`` and ``vocab``
  empty gets the shape and architecture of the model preset its ``model`` names (by name or
  alias, :func:`~simulator.workload.loading.find_preset`), with the shape cells it does state;
  a name that is no preset is an error. Otherwise the row's shape:
  ``n_kv_heads`` empty = ``n_heads``; ``d_ffn`` empty = ``4 d_model``.
  Whether the MLP is gated, the embeddings tied and the positions learned is not
  in the file: of the 8 combinations, the one whose parameter count is closest to
  ``n_params_b`` is used (plain GPT first on ties); a row more than 30 % from all of them
  (a mixture of experts, say) is not simulated. Linear layers have biases and
  norms are LayerNorm unless the MLP is gated (then RMSNorm, no biases, no dropout:
  the Llama recipe).
* fleet: ``gpus_per_node`` empty = 8 (or the whole fleet if smaller);
  ``inter_node_gbps_per_gpu`` empty = the NIC rate of the GPU's generation
  (:data:`DEFAULT_NIC_GBPS`). The topology is a rail-optimised, non-blocking
  two-tier fat tree of NVSwitch nodes with the catalog's intra-node bandwidth
  (:func:`row_topology`).
* plan: ``tp``/``pp``/``cp`` empty = 1, ``dp`` empty = ``n_gpus / (tp cp pp)``, ``vpp`` 1,
  ``micro_batch`` 1, ``seq_parallel`` 0, ``precision`` bf16 (fp16 where the GPU has no bf16).
  Layers that ``pp x vpp`` does not divide go one fewer to the first and last stages
  (:meth:`~simulator.workload.plan.ParallelPlan.layers`). Empty ``recompute``: ``full`` when
  the source says its FLOP count includes the recomputation pass (``source_conventions.yaml``); otherwise, with an
  empty ``zero_stage``, the cheapest memory saving with which the plan fits
  (recompute none, selective, full; within each, ZeRO 0 then the distributed
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
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from simulator.core.cache import sized_cache
from simulator.core.errors import InputError
from simulator.hardware.catalog import Catalog, GPUSpec
from simulator.inputs.resolve import Fleet, Setup
from simulator.inputs.scenario import Scenario
from simulator.network.topology import Topology, build_topology, estimated_bytes
from simulator.network.topology_file import TopologyFile
from simulator.studies.space import pp_choices, tp_choices
from simulator.system.efficiency import Efficiency
from simulator.workload.counting import parameter_count
from simulator.workload.loading import find_preset, get_preset, preset_names
from simulator.workload.megatron import options_in_text
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan, check_plan

REQUIRED_COLUMNS = (
    "case_id", "n_layers", "d_model", "n_heads", "vocab", "seq_len", "global_batch_seqs", "gpu", "n_gpus",
    "metric", "value",
)
OPTIONAL_COLUMNS = (
    "source_id", "model", "n_params_b", "n_kv_heads", "d_ffn", "micro_batch", "gpus_per_node", "tp", "pp", "dp",
    "cp", "vpp", "seq_parallel", "recompute", "zero_stage", "precision", "inter_node_gbps_per_gpu", "notes",
)
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


def blank(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or (isinstance(x, str) and not x.strip())


def number(row: pd.Series, col: str) -> float | None:
    """The cell as a number (None if blank); a ``ValueError`` naming the column otherwise."""
    x = row[col]
    if blank(x):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"column {col}: {x!r} is not a number") from None


def _int(row: pd.Series, col: str, default: int | None = None, *, minimum: int = 0) -> int | None:
    """The cell as a whole number >= ``minimum`` (``default`` if blank, an error if required and blank)."""
    value = number(row, col)
    if value is None:
        if default is None and col in REQUIRED_COLUMNS:
            raise ValueError(f"column {col} is empty")
        return default
    if not value.is_integer() or value < minimum:
        raise ValueError(f"column {col}: {row[col]!r} is not a whole number >= {minimum}")
    return int(value)


# --------------------------------------------------------------------------- building a case


MAX_PARAMETER_MISMATCH = 0.3
"""A row whose stated size is further than this from every dense variant of its shape is not a
dense transformer trainsim can simulate (the calibration rows are all within 3 %)."""


SHAPE_COLUMNS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ffn", "vocab")


def _preset_model(row: pd.Series, empty: list[str], used: list[str]) -> ModelConfig:
    """A row that names a preset model (or an alias of one) and leaves shape cells empty:
    the preset's shape and architecture, with the cells the row states."""
    name = None if blank(row["model"]) else str(row["model"]).strip()
    preset = find_preset(name) if name else None
    if preset is None:
        raise ValueError(f"column {empty[0]} is empty and model {name!r} is not a preset or an alias of one "
                         f"({', '.join(preset_names())}); state the shape columns")
    stated = {c: _int(row, c, minimum=1) for c in SHAPE_COLUMNS if not blank(row[c])}
    try:
        model = ModelConfig(**{**get_preset(preset).model_dump(), **stated, "name": name,
                               "seq_len": _int(row, "seq_len", minimum=1)})
    except ValidationError as err:
        raise ValueError(f"preset {preset} with the row's shape columns: {err.errors()[0]['msg']}") from None
    used.append(f"model shape from preset {preset} ({', '.join(empty)} empty)")
    if not blank(row["n_params_b"]):
        target = number(row, "n_params_b") * 1e9
        count = parameter_count(model).total
        if abs(count - target) / target > MAX_PARAMETER_MISMATCH:
            raise ValueError(f"n_params_b={row['n_params_b']}, but preset {preset} has {count / 1e9:.3g}B parameters: "
                             "the row's model is not that preset")
    return model


def _model(row: pd.Series, used: list[str]) -> ModelConfig:
    empty = [c for c in ("n_layers", "d_model", "n_heads", "vocab") if blank(row[c])]
    if empty:
        return _preset_model(row, empty, used)
    h, a = _int(row, "d_model", minimum=1), _int(row, "n_heads", minimum=1)
    base = dict(
        name=str(row["model"]) if not blank(row["model"]) else str(row["case_id"]),
        n_layers=_int(row, "n_layers", minimum=1), d_model=h, n_heads=a, n_kv_heads=_int(row, "n_kv_heads", minimum=1),
        d_ffn=_int(row, "d_ffn", minimum=1), vocab=_int(row, "vocab", minimum=1), seq_len=_int(row, "seq_len", minimum=1),
    )
    if base["n_kv_heads"] is None:
        used.append("n_kv_heads=n_heads")
    if base["d_ffn"] is None:
        used.append("d_ffn=4*d_model")
    variants = []
    for gated, tied, learned in itertools.product((False, True), (False, True), (True, False)):
        extra = dict(gated_mlp=gated, tied_embeddings=tied, position_embedding="learned" if learned else "rope")
        if gated:
            extra.update(norm="rmsnorm", bias=False, dropout=False)
        variants.append(ModelConfig(**base, **extra))
    if blank(row["n_params_b"]):
        used.append("model variant: plain GPT (no n_params_b)")
        return variants[0]
    text = str(row["n_params_b"]).strip()
    target = number(row, "n_params_b") * 1e9
    decimals = len(text.split(".")[1]) if "." in text else 0
    rounding = 0.5 * 10.0 ** -decimals * 1e9  # the count is as precise as the digits the source gave
    errors = [abs(parameter_count(m).total - target) for m in variants]
    within = [m for m, e in zip(variants, errors) if e <= rounding]
    # the first variant (plain GPT first) that matches the stated size, else the closest
    best = within[0] if within else variants[int(np.argmin(errors))]
    off = min(errors) / target
    if off > MAX_PARAMETER_MISMATCH:
        raise ValueError(
            f"n_params_b={text}, but the shape gives {parameter_count(best).total / 1e9:.3g}B parameters at best "
            f"({off:.0%} off): a mixture of experts or another architecture trainsim does not model")
    used.append(
        "model variant: " + ", ".join((
            "gated MLP" if best.gated_mlp else "4h MLP", "tied" if best.tied_embeddings else "untied",
            f"{best.position_embedding} positions",
        )) + f" ({parameter_count(best).total / 1e9:.3f}B for n_params_b {text})"
    )
    return best


def row_topology(gpu: GPUSpec, n_gpus: int, gpus_per_node: int, nic_gbps: float) -> Topology:
    """A fleet of NVSwitch nodes of ``gpus_per_node`` GPUs (the catalog's intra-node bandwidth),
    one NIC of ``nic_gbps`` per GPU, on a rail-optimised non-blocking two-tier fat tree."""
    return _row_topology(gpu.name, gpu.intra_node_bandwidth_Bps, n_gpus, gpus_per_node, nic_gbps)


@sized_cache(estimated_bytes)  # at most DEFAULT_BUDGET_BYTES of built fleets (estimated), not a count
def _row_topology(gpu: str, scale_up_Bps: float, n_gpus: int, gpus_per_node: int, nic_gbps: float) -> Topology:
    spec = TopologyFile(
        name=f"{gpus_per_node} x {gpu} per node, {nic_gbps:g} Gb/s per GPU",
        source="generated by trainsim validate from the row's gpu, gpus_per_node and inter_node_gbps_per_gpu",
        gpu=gpu,
        node=dict(
            gpus=gpus_per_node,
            scale_up=dict(kind="nvswitch", bandwidth_GBps=scale_up_Bps / 1e9,
                          latency_us=NODE_LATENCY_US["scale_up"]),
            nics=gpus_per_node, nic_bandwidth_Gbps=nic_gbps, nic_latency_us=NODE_LATENCY_US["nic"],
            power_W=0.0, power_source="not modelled in validation",
        ),
        fabric=dict(
            kind="rail_optimized", tiers=2, nodes_per_unit=max(1, min(32, n_gpus // gpus_per_node)),
            switch_latency_us=NODE_LATENCY_US["switch"], switch_ports=64, switch_power_W=0.0,
            switch_power_source="not modelled in validation", max_nodes=max(1, n_gpus // gpus_per_node), grow=True,
        ),
    )
    return build_topology(spec, n_gpus, path="(generated)")


def _plan(row: pd.Series, gpu: GPUSpec, n_gpus: int, recompute: str, zero_stage: int,
          used: list[str], stated: dict[str, Any], sizes: tuple[int, int] | None = None) -> ParallelPlan:
    """The row's plan; ``sizes``: the (tp, pp) to use when the row states neither (nor dp)."""
    def get(col: str, default: int) -> int:
        value = _int(row, col, minimum=0 if col in ("seq_parallel", "zero_stage") else 1)
        if value is None:
            used.append(f"{col}={default}")
            return default
        return value

    if sizes is None:
        tp, pp = get("tp", 1), get("pp", 1)
    else:
        tp, pp = sizes
        used.append(f"tp={tp}, pp={pp} (the sizes the row leaves open: the fastest plan that fits by "
                    "trainsim's first-pass estimate)")
    cp = get("cp", 1)
    dp = _int(row, "dp", minimum=1)
    if dp is None:
        dp = n_gpus // (tp * cp * pp)
        used.append(f"dp={dp}")
    vpp = get("vpp", 1)
    precision = row["precision"] if not blank(row["precision"]) else None
    if precision is None:
        precision = "bf16" if "bf16" in gpu.peak_flops else "fp16"
        used.append(f"precision={precision}")
    if blank(row["seq_parallel"]) and "sequence_parallel" in stated:
        sequence_parallel = bool(stated["sequence_parallel"])
    else:
        sequence_parallel = bool(get("seq_parallel", 0))
    options = {k: v for k, v in stated.items() if k not in ("sequence_parallel", "zero_stage")}
    return ParallelPlan(
        tp=tp, pp=pp, dp=dp, cp=cp, vpp=vpp, micro_batch=get("micro_batch", 1),
        global_batch=_int(row, "global_batch_seqs", minimum=1), schedule="interleaved" if vpp > 1 else "1f1b",
        sequence_parallel=sequence_parallel, recompute=recompute, zero_stage=zero_stage,
        precision=precision, **options,
    )


def _model_parallel_sizes(row: pd.Series, model: ModelConfig, n_gpus: int, gpus_per_node: int
                          ) -> list[tuple[int, int] | None]:
    """The (tp, pp) to try: the row's own (``[None]``: empty is 1) unless it states none of tp, pp
    and dp, or states dp but its tp and pp (empty as 1) do not fill the fleet with it; then every
    split the row leaves open, with TP inside a node, PP dividing the layers, and the fleet filled."""
    tp, pp, dp, cp = (_int(row, c, minimum=1) for c in ("tp", "pp", "dp", "cp"))
    cp = cp or 1
    if tp is not None and pp is not None:
        return [None]
    if (tp, pp, dp) != (None, None, None) and (dp is None or (tp or 1) * (pp or 1) * cp * dp == n_gpus):
        return [None]
    tps = [tp] if tp is not None else tp_choices(model, gpus_per_node)
    pps = [pp] if pp is not None else pp_choices(model)
    sizes = [(t, p) for t in tps for p in pps
             if (n_gpus % (t * p * cp) == 0 if dp is None else t * p * cp * dp == n_gpus)]
    return sizes or [None]


def case_setup(row: pd.Series, catalog: Catalog, efficiency: Efficiency) -> tuple[Setup, list[str]]:
    """The resolved model, fleet and plan of one row, and the defaults it needed.

    Raises :class:`InputError` or ``ValueError`` with the reason a row cannot be simulated."""
    used: list[str] = []
    model = _model(row, used)
    gpu = catalog.get(str(row["gpu"]))
    n_gpus = _int(row, "n_gpus", minimum=1)
    gpn = _int(row, "gpus_per_node", minimum=1)
    if gpn is None:
        gpn = min(8, n_gpus)
        used.append(f"gpus_per_node={gpn}")
    nic = row["inter_node_gbps_per_gpu"]
    if blank(nic):
        nic = DEFAULT_NIC_GBPS.get(gpu.generation, 200.0)
        used.append(f"inter_node_gbps_per_gpu={nic:g}")
    topology = row_topology(gpu, n_gpus, gpn, float(nic))
    recomputes, zeros, stated = _memory_options(row, used)
    scenario = Scenario(name=str(row["case_id"]), model=model.model_dump(), topology=topology.name, gpus=n_gpus,
                        plan={"global_batch": _int(row, "global_batch_seqs", minimum=1)})
    fleet = Fleet(scenario, model, topology, gpu, efficiency)
    all_sizes = _model_parallel_sizes(row, model, n_gpus, gpn)
    plan, used, recompute, zero, fits = _chosen_plan(row, fleet, stated, all_sizes, recomputes, zeros, used)
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


def _memory_options(row: pd.Series, used: list[str]) -> tuple[list[str], list[int], dict[str, Any]]:
    """The recompute and ZeRO options to try, and the plan options the notes and the source's
    conventions state. Empty recompute: full if the source's FLOP count assumes recomputation
    (source_conventions.yaml), else, with an empty zero_stage, the cheapest memory saving with
    which the plan fits."""
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
        zeros = [_int(row, "zero_stage")]
    elif "zero_stage" in stated:
        zeros = [int(stated["zero_stage"])]
    else:
        zeros = [0, 1]
    return recomputes, zeros, stated


def _chosen_plan(row: pd.Series, fleet: Fleet, stated: dict[str, Any], all_sizes: list, recomputes: list[str],
                 zeros: list[int], used: list[str]) -> tuple[ParallelPlan, list[str], str, int, bool]:
    """(plan, defaults used, recompute, zero stage, whether it fits): the row's own sizes with the
    first memory option that fits, or among the sizes it leaves open the fastest that fits by the
    first pass; the last tried if nothing fits."""
    model, gpu, n_gpus = fleet.model, fleet.device, fleet.scenario.gpus
    chosen, best_s = None, math.inf
    for sizes, (recompute, zero) in itertools.product(all_sizes, itertools.product(recomputes, zeros)):
        tried = list(used)
        try:
            plan = _plan(row, gpu, n_gpus, recompute, zero, tried, stated, sizes)
            check_plan(plan, model, n_gpus=n_gpus, gpus_per_node=fleet.topology.gpus_per_node)
        except (ValueError, InputError):
            if sizes is None:
                raise  # the row's own sizes: their error is the row's
            continue
        fits = fleet.memory(plan).fits
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


