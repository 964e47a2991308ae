"""Everything one step needs, computed once before the event simulation runs.

:func:`build_step_plan` turns (model, parallel plan, topology, device,
efficiency) into a :class:`StepPlan`: per virtual pipeline stage, how long one
micro-batch's forward and backward take on a healthy rank, split by category
(compute, and the communication inside the pass), which gradient buckets its
data-parallel reduction has, and how long the optimizer takes. Pipeline and
data-parallel transfers are collective *plans* on the topology; the engine
runs them through the link-sharing network.

Modelling choices (stated here once):

* Every collective is timed by NCCL's own model (algorithm, protocol and channels as NCCL's
  tuner picks them for the communicator, for the scenario's NCCL version and the device's GPU
  generation), corrected by the network efficiency
  (:mod:`simulator.network.collectives`).

* Tensor-parallel collectives sit inside the compute event; their time is the
  standalone time of the collective for all TP groups of the stage at once on
  the topology. With ``plan.tp_overlap`` a collective runs beside the GEMM it
  names (``ops.Collective.overlaps_with``) and only its excess is exposed. They do not share
  links with pipeline or data-parallel transfers in the flow model (inside an
  NVSwitch node they use different links; on PCIe nodes this is optimistic).
  Context-parallel K/V exchanges are treated the same way over the stage's CP groups,
  always beside their attention kernel (``cp_comm``).
* Context parallelism: the ``tp x cp`` ranks of a stage run each pass together (a compute
  event stands for all of them); data-parallel reduction and ZeRO work over ``dp x cp``.
* Data-parallel gradients are reduced in buckets of ``plan.grad_bucket_bytes``
  during the last backward pass of each chunk (``overlap_grad_reduce``), on one
  communication stream per stage: all-reduce for ZeRO 0, reduce-scatter for
  ZeRO 1-2, followed after the optimizer by an all-gather of the updated
  parameters; with ``overlap_param_gather`` that gather runs during the next
  step's forward passes instead and is assumed hidden there (a step is
  simulated alone, so it does not appear).
* With tied embeddings and more than one pipeline stage, the first and last
  stages all-reduce the embedding gradient after their data-parallel reduction
  (Megatron-LM's embedding group).
* ZeRO-3 gathers each layer's parameters before its forward and its backward
  and reduce-scatters its gradients after its backward, in every micro-batch,
  prefetched one layer ahead: ``n`` equal layers of compute ``c`` with
  communication ``g`` before and ``s`` after each take
  ``g + (n - 1) * max(c, g + s) + c + s``; the excess over ``n * c`` is exposed
  data-parallel communication. The embedding and the LM head are one such
  "layer" each.
* The optimizer is Adam on fp32 master weights: it streams 30 bytes per local
  parameter (reads grad, master, m, v; writes master, m, v and the 16-bit copy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from simulator.core.units import BYTES_PER_ELEMENT, weight_bytes
from simulator.hardware.compute import ComputeEfficiency, ops_time_s, overlapped_s
from simulator.network.collectives import (
    CollectivePlan,
    plan_collective,
)
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.topology import Topology
from simulator.system.breakdown import PASS_COMMUNICATION, PASS_COMPUTE
from simulator.system.efficiency import Efficiency
from simulator.workload.counting import parameter_count
from simulator.workload.framework import get_framework
from simulator.workload.layer import layer_work
from simulator.workload.memory import (
    block_parameters_per_rank,
    parameters_on_virtual_stage,
)
from simulator.workload.model import ModelConfig
from simulator.workload.ops import (
    LayerWork,
    eager_work,
    embedding_work,
    head_work,
    pipeline_message_bytes,
)
from simulator.workload.plan import ParallelPlan
from simulator.workload.schedules import Action, build_schedule

ADAM_BYTES_PER_PARAM = 30.0
"""HBM bytes the Adam step streams per local parameter (see module docstring)."""



@dataclass(frozen=True)
class ChunkWork:
    """Per-micro-batch work of one virtual stage on one healthy rank.

    ``forward`` and ``backward`` map a category to seconds: compute
    (``forward``, ``backward``, ``recompute``) and the communication inside the
    pass (``tp_comm``, ``cp_comm``, and ``dp_comm`` exposed by ZeRO-3); the pass lasts their
    sum. Variability stretches the compute part only.
    """

    forward: dict[str, float]
    backward: dict[str, float]
    params_local: float  # parameters one TP rank holds for this chunk
    flops_forward: float
    flops_backward: float
    flops_recompute: float
    grad_buckets: tuple[CollectivePlan, ...] = ()
    dp_wire_s: float = 0.0  # ZeRO-3: data-parallel communication on the wire per micro-batch, seconds
    tp_hidden_s: float = 0.0  # TP communication beside GEMMs (tp_overlap) per micro-batch, seconds
    cp_hidden_s: float = 0.0  # CP exchanges beside attention kernels per micro-batch, seconds
    dp_overlap_s: float = 0.0
    """Seconds the chunk's last backward pass is slowed by its gradient buckets' NCCL kernels running
    beside it (``overlap_slowdown`` times the overlap, :func:`~simulator.hardware.compute.overlapped_s`)."""

    @cached_property
    def forward_compute_s(self) -> float:
        return sum(self.forward.get(k, 0.0) for k in PASS_COMPUTE)

    @cached_property
    def forward_comm_s(self) -> float:
        return sum(self.forward.get(k, 0.0) for k in PASS_COMMUNICATION)

    @cached_property
    def backward_compute_s(self) -> float:
        return sum(self.backward.get(k, 0.0) for k in PASS_COMPUTE)

    @cached_property
    def backward_comm_s(self) -> float:
        return sum(self.backward.get(k, 0.0) for k in PASS_COMMUNICATION)


@dataclass
class StepPlan:
    """Inputs of the step simulation (see module docstring)."""

    model: ModelConfig
    plan: ParallelPlan
    topology: Topology
    net_efficiency: NetworkEfficiency
    actions: Sequence[Sequence[Action]]  # per stage
    chunks: list[ChunkWork]  # by virtual stage v = chunk * pp + stage
    optimizer_s: list[float]  # by stage
    param_gather: list[CollectivePlan | None]  # by stage: ZeRO 1-2 all-gather after the optimizer
    message_bytes: float  # one pipeline activation or gradient, per TP rank
    embedding_sync: CollectivePlan | None = None  # tied embeddings: first <-> last stage gradient all-reduce
    blocking_p2p: bool = False  # the framework's pipeline engine waits for each send before going on
    generation: str | None = None  # the device's GPU generation NCCL's model is set for (needed by p2p)
    _p2p_cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_virtual(self) -> int:
        return self.plan.pp * self.plan.vpp

    def stage_of(self, v: int) -> int:
        return v % self.plan.pp

    def p2p(self, v_from: int, v_to: int, replicas: tuple[int, ...]) -> CollectivePlan:
        """Send of one micro-batch's activation (or gradient) from virtual stage ``v_from``
        to ``v_to`` by every TP and CP rank of the given data-parallel replicas at once."""
        src, dst = self.stage_of(v_from), self.stage_of(v_to)
        key = (src, dst, replicas)
        if key not in self._p2p_cache:
            grid = self.plan.gpu_grid[:, list(replicas)]  # [tp x cp, replica, stage]
            pairs = list(zip(grid[:, :, src].T.ravel().tolist(), grid[:, :, dst].T.ravel().tolist()))
            self._p2p_cache[key] = plan_collective(
                self.topology, "send_recv", pairs, self.message_bytes, efficiency=self.net_efficiency,
                generation=self.generation,
            )
        return self._p2p_cache[key]


def _collective_s(topology: Topology, kind: str, groups, nbytes: float, eff: NetworkEfficiency,
                  generation: str) -> float:
    return plan_collective(topology, kind, groups, nbytes, efficiency=eff, generation=generation).standalone_time_s()


def attention_kernel(plan: ParallelPlan, generation: str) -> str | None:
    """The fused attention kernel family that runs a plan's ``attention`` ops on a GPU generation:
    its framework's (:meth:`~simulator.workload.framework.Framework.attention_kernel_on`) with
    ``attention: flash``; None with ``standard`` (unfused attention has no fused kernel)."""
    return get_framework(plan.framework).attention_kernel_on(generation) if plan.attention == "flash" else None


def kernel_work(work: LayerWork, model: ModelConfig, plan: ParallelPlan) -> LayerWork:
    """``work`` as the plan's framework runs it: element-wise ops fused, or as eager kernel
    chains (:func:`~simulator.workload.ops.eager_work`) when ``plan.fused_elementwise`` is off."""
    return work if plan.fused_elementwise else eager_work(work, model.norm)


def _pass_times(work: LayerWork, device, precision: str, ceff: ComputeEfficiency, topology: Topology,
                groups: dict[str, list], eff: NetworkEfficiency, tp_overlap: str,
                kernel: str | None = None) -> tuple[dict, dict, dict]:
    """Seconds by category of one forward and one backward pass of ``work``, and the seconds of
    communication hidden beside kernels, by category. ``groups``: the stage's ``"tp"`` and
    ``"cp"`` groups; ``kernel``: the fused attention kernel family. A TP collective enabled by
    ``tp_overlap``, and every CP exchange, runs beside the kernel it names and is exposed only by
    what it takes beyond that kernel; that kernel is slowed by ``ceff.overlap_slowdown`` while
    they overlap (:func:`~simulator.hardware.compute.overlapped_s`), the slowdown booked as compute
    of the pass (exposed + hidden communication stays the collective's time)."""
    hidden = {"tp_comm": 0.0, "cp_comm": 0.0}
    slowed = [0.0]  # compute lost beside the collectives timed since the last slowdown_s()

    def timed(ops) -> float:
        return ops_time_s(ops, device, precision, ceff, kernel)

    def exposed_s(dim: str, collectives, ops) -> float:
        exposed = 0.0
        for c in collectives:
            t = _collective_s(topology, c.kind, groups[dim], c.bytes, eff, device.generation)
            if c.overlaps_with and (c.overlap_needs == "always" or tp_overlap == "full"
                                    or tp_overlap == c.overlap_needs == "backward"):
                beside = timed(op for op in ops if op.name == c.overlaps_with)
                hidden[f"{dim}_comm"] += min(t, beside)
                slowed[0] += overlapped_s(beside, t, ceff.overlap_slowdown) - max(t, beside)
                t = max(0.0, t - beside)
            exposed += t
        return exposed

    def slowdown_s() -> float:
        lost, slowed[0] = slowed[0], 0.0
        return lost

    fwd_tp, fwd_cp = exposed_s("tp", work.tp_forward, work.forward), exposed_s("cp", work.cp_forward, work.forward)
    fwd = {"forward": timed(work.forward) + slowdown_s(), "tp_comm": fwd_tp, "cp_comm": fwd_cp}
    bwd_tp = exposed_s("tp", work.tp_backward, work.backward) + exposed_s("tp", work.tp_recompute, work.recompute)
    bwd_cp = exposed_s("cp", work.cp_backward, work.backward) + exposed_s("cp", work.cp_recompute, work.recompute)
    bwd = {"backward": timed(work.backward) + slowdown_s(), "recompute": timed(work.recompute),
           "tp_comm": bwd_tp, "cp_comm": bwd_cp}
    return fwd, bwd, hidden


def prefetched_pass_s(compute_s: float, before_s: float, after_s: float, n: int, slowdown: float = 0.0) -> float:
    """Seconds for ``n`` equal layers of ``compute_s`` each, where each layer's communication
    ``before_s`` must finish before it starts and ``after_s`` follows it, on one communication
    stream that runs one layer ahead: ``before + (n - 1) * overlapped(compute, before + after) +
    compute + after``, where ``overlapped`` is :func:`~simulator.hardware.compute.overlapped_s`
    (``max(compute, before + after)`` without ``slowdown``: the compute slowed while NCCL runs)."""
    if n == 0:
        return 0.0
    return before_s + (n - 1) * overlapped_s(compute_s, before_s + after_s, slowdown) + compute_s + after_s


@lru_cache(maxsize=256)
def _schedule(name: str, pp: int, m: int, vpp: int) -> tuple[tuple[Action, ...], ...]:
    """:func:`build_schedule`, shared by the step plans of a search (read-only)."""
    return tuple(tuple(acts) for acts in build_schedule(name, pp, m, vpp))


def build_step_plan(model: ModelConfig, plan: ParallelPlan, topology: Topology, device,
                    efficiency: Efficiency) -> StepPlan:
    """Precompute per-stage work, buckets and collective plans of one step."""
    build = _StepBuilder(model, plan, topology, device, efficiency)
    chunks = [build.chunk(v) for v in range(plan.pp * plan.vpp)]
    optimizer_s, param_gather = [], []
    for stage in range(plan.pp):
        local = sum(chunks[c * plan.pp + stage].params_local for c in range(plan.vpp))
        optimizer_s.append(build.optimizer_s(local))
        param_gather.append(build.param_gather(stage, local))
    return StepPlan(
        model=model, plan=plan, topology=topology, net_efficiency=efficiency.network,
        actions=_schedule(plan.schedule, plan.pp, plan.n_microbatches, plan.vpp),
        chunks=chunks, optimizer_s=optimizer_s, param_gather=param_gather,
        message_bytes=pipeline_message_bytes(model, **plan.split), embedding_sync=build.embedding_sync(),
        blocking_p2p=build.blocking, generation=device.generation,
    )


class _StepBuilder:
    """What the pieces of one step plan share: the plan's sizes, each stage's groups, the work of
    one block, and the pass times of each (work, stage), computed once (a stage's chunks share them)."""

    def __init__(self, model: ModelConfig, plan: ParallelPlan, topology: Topology, device, efficiency: Efficiency):
        self.model, self.plan, self.topology, self.device = model, plan, topology, device
        self.net_eff, self.ceff = efficiency.network, efficiency.compute
        self.generation = device.generation  # NCCL's model is set for the device run
        self.dp = plan.dp_cp  # gradients are reduced over dp x cp
        self.layer = kernel_work(layer_work(model, recompute=plan.recompute, attention=plan.attention,
                                             checkpoint_every=plan.checkpoint_every, **plan.split),
                                 model, plan)
        self.embedding = kernel_work(embedding_work(model, **plan.split), model, plan)  # kept: pass_times keys on id
        self.head = kernel_work(head_work(model, **plan.split), model, plan)
        self.kernel = attention_kernel(plan, device.generation)
        self.blocking = plan.pp > 1 and get_framework(plan.framework).pipeline_engine.blocking_p2p
        self.counts = parameter_count(model)
        self.w_bytes = weight_bytes(plan.precision)
        self.g_bytes = BYTES_PER_ELEMENT[plan.grad_reduce_precision]
        self.zero3 = plan.zero_stage == 3 and self.dp > 1
        self.split = plan.layers(model.n_layers)
        self.block_params = block_parameters_per_rank(model, plan.tp)
        self.groups_of = [{"tp": plan.groups("tp", pp_rank=stage),
                           "cp": plan.groups("cp", pp_rank=stage) if plan.cp > 1 else [],
                           "dp": plan.groups("dp", pp_rank=stage)} for stage in range(plan.pp)]
        self._timed: dict[tuple[int, int], tuple] = {}  # (id(work), stage) -> _pass_times

    def pass_times(self, work: LayerWork, stage: int) -> tuple:
        key = (id(work), stage)
        if key not in self._timed:
            self._timed[key] = _pass_times(work, self.device, self.plan.precision, self.ceff, self.topology,
                                           self.groups_of[stage], self.net_eff, self.plan.tp_overlap, self.kernel)
        return self._timed[key]

    def parts(self, v: int) -> list[tuple[LayerWork, int, float]]:
        """(work, how many times it runs per pass, parameters per TP rank of one of them) of virtual stage ``v``."""
        model, tp, counts, n_virtual = self.model, self.plan.tp, self.counts, self.plan.pp * self.plan.vpp
        parts = [(self.layer, self.split[v], self.block_params)]
        if v == 0:
            parts.append((self.embedding, 1, counts.embedding / tp + counts.position))
        if v == n_virtual - 1:
            tied_copy = counts.embedding / tp if model.tied_embeddings and n_virtual > 1 else 0.0
            parts.append((self.head, 1, counts.final_norm + counts.lm_head / tp + tied_copy))
        return parts

    def chunk(self, v: int) -> ChunkWork:
        """The per-micro-batch work of virtual stage ``v`` (ZeRO-3: with its prefetched gathers and scatters)."""
        stage = v % self.plan.pp
        dp_groups = self.groups_of[stage]["dp"]
        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        flops = [0.0, 0.0, 0.0]
        wire = tp_hidden = cp_hidden = 0.0
        for work, n, params in self.parts(v):
            f, b, hidden = self.pass_times(work, stage)
            tp_hidden += hidden["tp_comm"] * n
            cp_hidden += hidden["cp_comm"] * n
            f_total, b_total = sum(f.values()), sum(b.values())
            for into, part in ((fwd, f), (bwd, b)):
                for k, s in part.items():
                    into[k] = into.get(k, 0.0) + s * n
            if self.zero3 and params > 0:
                gather = _collective_s(self.topology, "all_gather", dp_groups, params * self.w_bytes, self.net_eff,
                                       self.generation)
                scatter = _collective_s(self.topology, "reduce_scatter", dp_groups, params * self.g_bytes,
                                        self.net_eff, self.generation)
                # exposed communication as without contention; the compute slowed beside it is compute
                slow = self.ceff.overlap_slowdown
                f_plain, b_plain = prefetched_pass_s(f_total, gather, 0.0, n), prefetched_pass_s(b_total, gather, scatter, n)
                fwd["dp_comm"] = fwd.get("dp_comm", 0.0) + f_plain - n * f_total
                bwd["dp_comm"] = bwd.get("dp_comm", 0.0) + b_plain - n * b_total
                fwd["forward"] += prefetched_pass_s(f_total, gather, 0.0, n, slow) - f_plain
                bwd["backward"] += prefetched_pass_s(b_total, gather, scatter, n, slow) - b_plain
                wire += n * (2 * gather + scatter)
            flops[0] += work.forward_flops * n
            flops[1] += work.backward_flops * n
            flops[2] += work.recompute_flops * n
        if self.blocking:  # the engine dispatches each pass's instructions from the host, one by one
            fwd["forward"] = fwd.get("forward", 0.0) + self.ceff.pipeline_dispatch_s
            bwd["backward"] = bwd.get("backward", 0.0) + self.ceff.pipeline_dispatch_s
        params_local = parameters_on_virtual_stage(self.model, self.plan, v)
        buckets = self.grad_buckets(params_local, stage)
        return ChunkWork(fwd, bwd, params_local, flops[0], flops[1], flops[2], buckets, wire, tp_hidden, cp_hidden,
                         self.bucket_slowdown_s(bwd, buckets))

    def bucket_slowdown_s(self, bwd: dict[str, float], buckets: tuple[CollectivePlan, ...]) -> float:
        """Seconds the last backward pass of a chunk loses to its gradient buckets' NCCL kernels
        (``overlap_slowdown`` times the overlap of the pass's compute and the buckets'
        standalone time; 0 without ``overlap_grad_reduce``). The ``n`` buckets become ready one
        by one, the first after ``1/n`` of the pass, so at most ``(n - 1)/n`` of it overlaps."""
        if not buckets or not self.plan.overlap_grad_reduce or self.ceff.overlap_slowdown == 0:
            return 0.0
        n = len(buckets)
        compute = sum(bwd.get(k, 0.0) for k in PASS_COMPUTE) * (n - 1) / n
        comm = n * buckets[0].standalone_time_s()  # equal buckets
        return self.ceff.overlap_slowdown * min(compute, comm)

    def grad_buckets(self, params_local: float, stage: int) -> tuple[CollectivePlan, ...]:
        """The data-parallel reduction of a chunk's gradients, in equal buckets (none with ZeRO-3 or dp 1)."""
        if self.dp == 1 or self.zero3:
            return ()
        grad_bytes = params_local * self.g_bytes
        n_buckets = max(1, math.ceil(grad_bytes / self.plan.grad_bucket_bytes))
        kind = "all_reduce" if self.plan.zero_stage == 0 else "reduce_scatter"
        bucket = plan_collective(self.topology, kind, self.groups_of[stage]["dp"], grad_bytes / n_buckets,
                                 efficiency=self.net_eff, generation=self.generation)
        return (bucket,) * n_buckets

    def optimizer_s(self, local: float) -> float:
        """Adam on a stage holding ``local`` parameters per TP rank (ZeRO 1+: its shard)."""
        shard = local / self.dp if self.plan.zero_stage >= 1 else local
        hbm_Bps = self.device.hbm_bandwidth_Bps * self.ceff.memory
        return self.ceff.kernel_overhead_s + shard * ADAM_BYTES_PER_PARAM / hbm_Bps

    def param_gather(self, stage: int, local: float) -> CollectivePlan | None:
        """ZeRO 1-2: the all-gather of the updated parameters after the optimizer (unless overlapped)."""
        if self.dp > 1 and self.plan.zero_stage in (1, 2) and not self.plan.overlap_param_gather:
            return plan_collective(self.topology, "all_gather", self.groups_of[stage]["dp"], local * self.w_bytes,
                                   efficiency=self.net_eff, generation=self.generation)
        return None

    def embedding_sync(self) -> CollectivePlan | None:
        """Tied embeddings over pipeline stages: the first and last stages all-reduce the embedding gradient."""
        plan = self.plan
        if not (self.model.tied_embeddings and plan.pp > 1):
            return None
        grid = plan.gpu_grid
        pairs = [(int(grid[k, r, 0]), int(grid[k, r, plan.pp - 1])) for r in range(plan.dp) for k in range(plan.width)]
        return plan_collective(self.topology, "all_reduce", pairs, self.counts.embedding / plan.tp * self.g_bytes,
                               efficiency=self.net_eff, generation=self.generation)
