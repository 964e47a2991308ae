"""Every rule a parallel plan must follow, each with one message that says what to change.

A rule takes plain counts and returns ``None`` when it holds, or a :class:`Violation`: the plan
field to change and the message. The plan's own checks (:class:`~simulator.workload.plan.ParallelPlan`),
the check against a model and a fleet (:func:`~simulator.workload.plan.check_plan`), the work
functions of :mod:`simulator.workload.ops`, scenario loading, the planner's enumeration, the
validation of published rows and the Megatron-LM flags all ask these functions, so one rule
has one wording wherever it is broken.
"""

from __future__ import annotations

from typing import NamedTuple

from simulator.core.errors import PlanError


class Violation(NamedTuple):
    """A broken rule: the field to change (``plan.tp``, ``gpus``, ...) and what to do."""

    field: str
    message: str

    def error(self) -> PlanError:
        return PlanError(self.message, field=self.field)


def _divisors(n: int, limit: int = 64) -> str:
    return ", ".join(str(d) for d in range(1, min(n, limit) + 1) if n % d == 0)


def _sizes(tp: int, cp: int, pp: int) -> tuple[str, str]:
    """The names and values of the model-parallel sizes, cp shown only when it is on."""
    return ("tp x cp x pp", f"{tp} x {cp} x {pp}") if cp > 1 else ("tp x pp", f"{tp} x {pp}")


# ------------------------------------------------------------------ the fleet

def fleet_filled(tp: int, cp: int, pp: int, dp: int | None, n_gpus: int) -> Violation | None:
    """``tp x cp x pp x dp`` GPUs fill the fleet (``dp`` None: the one that would, if any)."""
    names, sizes = _sizes(tp, cp, pp)
    fixed = tp * cp * pp
    if n_gpus % fixed:
        return Violation("plan.dp", f"{names} = {sizes} = {fixed} GPUs per replica does not fill the fleet of "
                                    f"{n_gpus} GPUs with whole replicas; pick sizes whose product divides {n_gpus}")
    if dp is not None and fixed * dp != n_gpus:
        return Violation("plan.dp", f"{names} x dp = {sizes} x {dp} = {fixed * dp} GPUs does not fill the fleet "
                                    f"of {n_gpus}; set dp to {n_gpus // fixed} (or leave it out)")
    return None


def whole_nodes(n_gpus: int, gpus_per_node: int) -> Violation | None:
    """A fleet larger than a node is a whole number of nodes."""
    if n_gpus > gpus_per_node and n_gpus % gpus_per_node:
        return Violation("gpus", f"{n_gpus} GPUs is not a whole number of {gpus_per_node}-GPU nodes")
    return None


# ------------------------------------------------------------------ the model

def tp_splits_heads(tp: int, n_heads: int) -> Violation | None:
    """Tensor parallelism splits the query heads evenly."""
    if n_heads % tp:
        return Violation("plan.tp", f"tp={tp} does not divide n_heads={n_heads}; use one of {_divisors(n_heads)}")
    return None


def tp_splits_kv_heads(tp: int, n_kv_heads: int) -> Violation | None:
    """The key/value heads are split by tp, or replicated over a multiple of them."""
    if n_kv_heads % tp and tp % n_kv_heads:
        return Violation("plan.tp", f"tp={tp} and n_kv_heads={n_kv_heads}: one must divide the other")
    return None


def tp_splits_ffn(tp: int, d_ffn: int) -> Violation | None:
    """Tensor parallelism splits the MLP's hidden width evenly."""
    if d_ffn % tp:
        return Violation("plan.tp", f"tp={tp} does not divide d_ffn={d_ffn}; use one of {_divisors(d_ffn)}")
    return None


def enough_layers(n_layers: int, n_virtual: int) -> Violation | None:
    """Every virtual pipeline stage holds at least one transformer block."""
    if n_layers < n_virtual:
        return Violation("plan.pp", f"n_layers={n_layers} is fewer than the pp x vpp = {n_virtual} virtual "
                                    "pipeline stages; every stage needs at least one layer")
    return None


def cp_splits_sequence(seq_len: int, cp: int) -> Violation | None:
    """Context parallelism cuts each sequence into ``2 cp`` load-balanced chunks."""
    if cp > 1 and seq_len % (2 * cp):
        return Violation("plan.cp", f"context parallelism splits seq_len={seq_len} into 2 x cp = {2 * cp} chunks, "
                                    "which does not divide it; pick a cp with seq_len divisible by 2 x cp")
    return None


def sp_splits_sequence(seq_len: int, cp: int, tp: int, sequence_parallel: bool) -> Violation | None:
    """Sequence parallelism splits a rank's tokens over the tensor-parallel peers."""
    if sequence_parallel and (seq_len // cp) % tp:
        per_rank = f" / cp={cp} = {seq_len // cp} tokens per rank" if cp > 1 else ""
        return Violation("plan.sequence_parallel",
                         f"sequence parallelism splits seq_len={seq_len}{per_rank} over tp={tp}, which does not "
                         "divide it; turn sequence_parallel off or pick a tp that divides it")
    return None


# ------------------------------------------------------------------ the batch and the schedule

def batch_splits(global_batch: int, dp: int, micro_batch: int) -> Violation | None:
    """Every replica runs a whole number of micro-batches."""
    if global_batch % (dp * micro_batch):
        return Violation("plan.global_batch",
                         f"global_batch={global_batch} is not divisible by dp x micro_batch = {dp} x {micro_batch}; "
                         f"pick a global batch that is a multiple of {dp * micro_batch}")
    return None


def interleaving_fits(schedule: str, n_microbatches: int, pp: int) -> Violation | None:
    """The interleaved schedule runs the micro-batches in groups of ``pp``."""
    if schedule == "interleaved" and n_microbatches % pp:
        return Violation("plan.global_batch", f"the interleaved schedule needs the number of micro-batches "
                                              f"({n_microbatches}) to be a multiple of pp={pp}")
    return None


def schedule_matches_vpp(schedule: str, vpp: int, pp: int) -> Violation | None:
    """Virtual stages (``vpp > 1``) and the interleaved schedule go together, and need a pipeline."""
    if schedule == "interleaved" and vpp == 1:
        return Violation("plan.vpp", "schedule 'interleaved' needs vpp > 1")
    if vpp > 1 and schedule != "interleaved":
        return Violation("plan.schedule", f"vpp={vpp} needs schedule 'interleaved', got '{schedule}'")
    if vpp > 1 and pp == 1:
        return Violation("plan.vpp", "vpp > 1 needs pp > 1")
    return None


# ------------------------------------------------------------------ features that need each other

def placement_complete(placement: tuple[str, ...]) -> Violation | None:
    """The rank order names tp, dp and pp once each."""
    if sorted(placement) != ["dp", "pp", "tp"]:
        return Violation("plan.placement", f"placement must order tp, dp and pp once each, got {list(placement)}")
    return None


def cp_has_flash(cp: int, attention: str) -> Violation | None:
    """Megatron-Core runs context parallelism inside the fused attention kernels."""
    if cp > 1 and attention != "flash":
        return Violation("plan.attention", "context parallelism (cp > 1) needs attention 'flash': Megatron-Core "
                                           "runs it inside the fused attention kernels")
    return None


def full_tp_overlap_has_sp(tp_overlap: str, sequence_parallel: bool, tp: int) -> Violation | None:
    """Transformer Engine overlaps the sequence-parallel all-gathers and reduce-scatters."""
    if tp_overlap == "full" and not sequence_parallel and tp > 1:
        return Violation("plan.tp_overlap", "tp_overlap 'full' needs sequence_parallel (Transformer Engine overlaps "
                                            "the sequence-parallel all-gathers and reduce-scatters); use 'backward' "
                                            "without it")
    return None


def first(*checks: Violation | None) -> None:
    """Raise the :class:`PlanError` of the first broken rule, if any."""
    for violation in checks:
        if violation is not None:
            raise violation.error()
