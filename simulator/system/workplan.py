"""Everything one step needs, computed once before the event simulation runs.

:func:`build_step_plan` turns (model, parallel plan, topology, device,
efficiency) into a :class:`StepPlan`: per virtual pipeline stage, how long one
micro-batch's forward and backward take on a healthy rank (with their
tensor-parallel communication inside, split by category), which gradient
buckets its data-parallel reduction has, and how long the optimizer takes.
Pipeline and data-parallel transfers are collective *plans* on the topology;
the engine runs them through the link-sharing network.

Modelling choices (stated here once):

* Tensor-parallel collectives sit on the critical path inside the compute
  event (no TP overlap); their time is the standalone time of the collective
  for all TP groups of the stage at once on the topology.
* Data-parallel gradients are reduced in buckets of ``plan.dp_bucket_bytes``
  during the last backward pass of each chunk (``overlap_grad_reduce``), on one
  communication stream per stage: all-reduce for ZeRO 0, reduce-scatter for
  ZeRO 1-2, followed after the optimizer by an all-gather of the updated
  parameters (not overlapped with the next step).
* ZeRO-3 gathers each layer's parameters before its forward and its backward
  and reduce-scatters its gradients in every micro-batch's backward, prefetched
  one layer ahead: a pass over ``n`` layers takes ``comm_1 + sum(max(compute_i,
  comm_i))``; the excess over compute is exposed data-parallel communication.
* The optimizer is Adam on fp32 master weights: it streams 30 bytes per local
  parameter (reads grad, master, m, v; writes master, m, v and the 16-bit copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from simulator.hardware.compute import ComputeEfficiency, Efficiency, ops_time_s
from simulator.network.collectives import CollectivePlan, NetworkEfficiency, plan_collective
from simulator.network.topology import Topology
from simulator.units import BYTES_PER_ELEMENT
from simulator.workload.memory import block_parameters_per_rank, parameters_on_virtual_stage
from simulator.workload.model import ModelConfig
from simulator.workload.ops import LayerWork, embedding_work, head_work, layer_work, pipeline_message_bytes
from simulator.workload.plan import ParallelPlan
from simulator.workload.schedules import Action, build_schedule

ADAM_BYTES_PER_PARAM = 30.0
"""HBM bytes the Adam step streams per local parameter (see module docstring)."""

@dataclass(frozen=True)
class ChunkWork:
    """Per-micro-batch work of one virtual stage on one healthy rank, seconds by category.

    ``forward`` and ``backward`` map a category (``forward``, ``backward``,
    ``recompute``, ``tp_comm``, ``dp_comm``) to seconds; the event lasts their sum.
    """

    forward: dict[str, float]
    backward: dict[str, float]
    params_local: float  # parameters one TP rank holds for this chunk
    flops_forward: float
    flops_backward: float
    flops_recompute: float
    grad_buckets: tuple[CollectivePlan, ...] = ()

    @cached_property
    def forward_s(self) -> float:
        return sum(self.forward.values())

    @cached_property
    def backward_s(self) -> float:
        return sum(self.backward.values())


@dataclass
class StepPlan:
    """Inputs of the step simulation (see module docstring)."""

    model: ModelConfig
    plan: ParallelPlan
    topology: Topology
    net_efficiency: NetworkEfficiency
    actions: list[list[Action]]
    chunks: list[ChunkWork]  # by virtual stage v = chunk * pp + stage
    optimizer_s: list[float]  # by stage
    param_gather: list[CollectivePlan | None]  # by stage: ZeRO 1-2 all-gather after the optimizer
    message_bytes: float  # one pipeline activation or gradient, per TP rank
    _p2p_cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_virtual(self) -> int:
        return self.plan.pp * self.plan.vpp

    def stage_of(self, v: int) -> int:
        return v % self.plan.pp

    def p2p(self, v_from: int, v_to: int, replicas: tuple[int, ...]) -> CollectivePlan:
        """Send of one micro-batch's activation (or gradient) from virtual stage ``v_from``
        to ``v_to`` by every TP rank of the given data-parallel replicas at once."""
        key = (v_from, v_to, replicas)
        if key not in self._p2p_cache:
            src, dst = self.stage_of(v_from), self.stage_of(v_to)
            pairs = [
                (self.plan.gpu_of(t, r, src), self.plan.gpu_of(t, r, dst))
                for r in replicas for t in range(self.plan.tp)
            ]
            self._p2p_cache[key] = plan_collective(
                self.topology, "send_recv", pairs, self.message_bytes, efficiency=self.net_efficiency
            )
        return self._p2p_cache[key]


def _collectives_s(collectives, topology: Topology, groups, eff: NetworkEfficiency) -> float:
    return sum(
        plan_collective(topology, c.kind, groups, c.bytes, efficiency=eff).standalone_time_s(eff)
        for c in collectives
    )


def _work_times(work: LayerWork, device, precision: str, ceff: ComputeEfficiency,
                tp_s_fwd: float, tp_s_bwd: float, tp_s_rec: float) -> tuple[dict, dict]:
    fwd = {"forward": ops_time_s(work.forward, device, precision, ceff), "tp_comm": tp_s_fwd}
    bwd = {
        "backward": ops_time_s(work.backward, device, precision, ceff),
        "recompute": ops_time_s(work.recompute, device, precision, ceff),
        "tp_comm": tp_s_bwd + tp_s_rec,
    }
    return fwd, bwd


def _add(into: dict, part: dict, times: float = 1.0) -> None:
    for k, v in part.items():
        into[k] = into.get(k, 0.0) + v * times


def _zero3_pass(compute_s: float, comm_s: float, n_layers: int) -> tuple[float, float]:
    """(total, exposed comm) of ``n_layers`` equal layers of ``compute_s`` each, whose
    per-layer communication ``comm_s`` is prefetched one layer ahead."""
    total = comm_s + n_layers * max(compute_s, comm_s)
    return total, total - n_layers * compute_s


def build_step_plan(model: ModelConfig, plan: ParallelPlan, topology: Topology, device,
                    efficiency: Efficiency) -> StepPlan:
    """Precompute per-stage work, buckets and collective plans of one step."""
    ne = efficiency.network
    net_eff = NetworkEfficiency(
        nvlink=ne.nvlink, pcie=ne.pcie, nic=ne.nic, fabric=ne.fabric, overhead_s=ne.collective_overhead_s
    )
    ceff = efficiency.compute
    pp, vpp, tp, dp = plan.pp, plan.vpp, plan.tp, plan.dp
    n_virtual = pp * vpp
    layers_per_chunk = model.n_layers // n_virtual
    kw = dict(micro_batch=plan.micro_batch, tp=tp, sequence_parallel=plan.sequence_parallel, precision=plan.precision)
    layer = layer_work(model, recompute=plan.recompute, **kw)

    chunks: list[ChunkWork] = []
    for v in range(n_virtual):
        stage = v % pp
        tp_groups = plan.groups("tp", pp_rank=stage)
        dp_groups = plan.groups("dp", pp_rank=stage)
        parts = [(layer, layers_per_chunk)]
        if v == 0:
            parts.append((embedding_work(model, **kw), 1))
        if v == n_virtual - 1:
            parts.append((head_work(model, **kw), 1))
        params_local = parameters_on_virtual_stage(model, plan, v)

        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        flops = [0.0, 0.0, 0.0]
        for work, times in parts:
            f, b = _work_times(
                work, device, plan.precision, ceff,
                _collectives_s(work.tp_forward, topology, tp_groups, net_eff),
                _collectives_s(work.tp_backward, topology, tp_groups, net_eff),
                _collectives_s(work.tp_recompute, topology, tp_groups, net_eff),
            )
            if plan.zero_stage == 3 and work is layer and dp > 1:
                f, b = _zero3_layer(f, b, block_parameters_per_rank(model, tp), times, topology, dp_groups, plan, net_eff)
                _add(fwd, f)
                _add(bwd, b)
            else:
                _add(fwd, f, times)
                _add(bwd, b, times)
            flops[0] += work.forward_flops * times
            flops[1] += work.backward_flops * times
            flops[2] += work.recompute_flops * times

        buckets: tuple[CollectivePlan, ...] = ()
        if dp > 1 and plan.zero_stage < 3:
            grad_bytes = params_local * BYTES_PER_ELEMENT[plan.grad_reduce_precision]
            n_buckets = max(1, math.ceil(grad_bytes / plan.dp_bucket_bytes))
            kind = "all_reduce" if plan.zero_stage == 0 else "reduce_scatter"
            bucket = plan_collective(topology, kind, dp_groups, grad_bytes / n_buckets, efficiency=net_eff)
            buckets = (bucket,) * n_buckets
        chunks.append(ChunkWork(fwd, bwd, params_local, flops[0], flops[1], flops[2], buckets))

    optimizer_s, param_gather = [], []
    param_bytes = BYTES_PER_ELEMENT["bf16"] if plan.precision in ("bf16", "fp16", "fp8") else 4
    for stage in range(pp):
        local = sum(chunks[c * pp + stage].params_local for c in range(vpp))
        shard = local / dp if plan.zero_stage >= 1 else local
        optimizer_s.append(ceff.kernel_overhead_s + shard * ADAM_BYTES_PER_PARAM / (device.hbm_bandwidth_Bps * ceff.memory))
        if dp > 1 and plan.zero_stage in (1, 2):
            param_gather.append(plan_collective(
                topology, "all_gather", plan.groups("dp", pp_rank=stage), local * param_bytes, efficiency=net_eff
            ))
        else:
            param_gather.append(None)

    return StepPlan(
        model=model, plan=plan, topology=topology, net_efficiency=net_eff,
        actions=build_schedule(plan.schedule, pp, plan.n_microbatches, vpp),
        chunks=chunks, optimizer_s=optimizer_s, param_gather=param_gather,
        message_bytes=pipeline_message_bytes(model, **kw),
    )


def _zero3_layer(f: dict, b: dict, layer_params_local: float, n_layers: int, topology, dp_groups,
                 plan: ParallelPlan, eff: NetworkEfficiency) -> tuple[dict, dict]:
    """Forward and backward of ``n_layers`` layers under ZeRO-3 (see module docstring)."""
    param_bytes = layer_params_local * (BYTES_PER_ELEMENT["bf16"] if plan.precision != "fp32" else 4)
    grad_bytes = layer_params_local * BYTES_PER_ELEMENT[plan.grad_reduce_precision]
    gather_s = plan_collective(topology, "all_gather", dp_groups, param_bytes, efficiency=eff).standalone_time_s(eff)
    scatter_s = plan_collective(topology, "reduce_scatter", dp_groups, grad_bytes, efficiency=eff).standalone_time_s(eff)
    f_total, f_exposed = _zero3_pass(sum(f.values()), gather_s, n_layers)
    b_total, b_exposed = _zero3_pass(sum(b.values()), gather_s + scatter_s, n_layers)
    fwd = {k: v * n_layers for k, v in f.items()}
    bwd = {k: v * n_layers for k, v in b.items()}
    fwd["dp_comm"] = f_exposed
    bwd["dp_comm"] = b_exposed
    return fwd, bwd
