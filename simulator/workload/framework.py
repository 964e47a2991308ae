"""Training frameworks as data: what each one does that a plan does not say.

A framework (``simulator/workload/frameworks/<name>.yaml``, one file each, every trait with its
source) is a set of behaviours, not a fitted factor:

* ``defaults``: the plan options it turns on when the user leaves them open (sequence
  parallelism with TP, TP-communication overlap, the distributed optimizer, the gradient-reduce
  precision, ...), each optionally only ``when: tp>1``;
* ``attention_kernel``: the fused attention kernel family it runs on each GPU generation;
* ``checkpointing``: what its checkpointing modes mean in trainsim's terms (torchtitan's
  "selective" is per-op, Megatron's is the attention core);
* ``fsdp``: its ZeRO-3 resharding behaviour; ``pipeline_engine``: whether point-to-point
  transfers block the pipeline engine;
* ``fused_elementwise``: whether element-wise ops are fused (or compiled) or run eagerly;
* ``fp8_saved_inputs``: whether fp8 linear layers save their input in fp8;
* ``flop_formula``: how it turns a step time into the TFLOP/s it prints;
* ``fp32_master_parameters``: whether its fp32 parameters are the optimizer's master copy (no
  persistent 16-bit weights: FSDP, FSDP2, DDP under autocast); ``gradient_bucket_copy``: whether
  its gradient reduction keeps a second copy of every gradient (PyTorch DDP).

A plan names its framework (:attr:`~simulator.workload.plan.ParallelPlan.framework`); every
default can be overridden by writing the option in the plan.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

FrameworkName = Literal["megatron-lm", "megatron-core", "megatron-deepspeed", "deepspeed", "torchtitan",
                        "llm-foundry", "ddp"]
DEFAULT_FRAMEWORK: FrameworkName = "megatron-lm"
"""The framework of a plan that names none: its defaults are :class:`ParallelPlan`'s own."""

KernelFamily = Literal["standard", "flash2", "flash3", "cudnn", "sdpa"]
FlopFormula = Literal["megatron_eq3", "6N+12Lhs", "6N+6Lhs"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Default(_Strict):
    """A plan option the framework sets when the plan leaves it open."""

    value: Any
    when: Literal["tp>1", "sequence_parallel"] | None = None
    """Only for plans with tp > 1, or only for plans with sequence parallelism (written or defaulted)."""


class AttentionKernels(_Strict):
    kernels: dict[str, KernelFamily]
    source: str


class CheckpointMode(_Strict):
    recompute: Literal["none", "selective", "per_op", "full"]


class Checkpointing(_Strict):
    modes: dict[str, CheckpointMode]
    source: str


class Fsdp(_Strict):
    reshard_after_forward: bool
    keeps_gathered_with_pp: bool = False
    source: str


class PipelineEngine(_Strict):
    blocking_p2p: bool
    source: str


class Framework(_Strict):
    """One framework's behaviours (see the module docstring)."""

    name: FrameworkName
    title: str
    covers: list[str]
    source: str
    defaults: dict[str, Default]
    attention_kernel: AttentionKernels
    checkpointing: Checkpointing
    fsdp: Fsdp
    pipeline_engine: PipelineEngine
    fused_elementwise: bool
    fused_elementwise_source: str
    fp8_saved_inputs: bool
    fp8_saved_inputs_source: str
    flop_formula: FlopFormula
    flop_formula_source: str
    fp32_master_parameters: bool
    fp32_master_parameters_source: str
    gradient_bucket_copy: bool
    gradient_bucket_copy_source: str

    def defaults_for(self, open_fields: set[str], tp: int, pp: int, sequence_parallel: bool = False
                     ) -> dict[str, Any]:
        """The values this framework gives the plan options in ``open_fields`` (those a plan leaves
        open) for a plan with tensor-parallel size ``tp``, ``pp`` pipeline stages and, if written,
        ``sequence_parallel``: its ``defaults`` and the plan options its traits set
        (``fp8_saved_inputs``, ``fused_elementwise``, ``reshard_after_forward``)."""
        sp_default = self.defaults.get("sequence_parallel")
        if "sequence_parallel" in open_fields and sp_default is not None and (sp_default.when is None or tp > 1):
            sequence_parallel = bool(sp_default.value)
        holds = {None: True, "tp>1": tp > 1, "sequence_parallel": sequence_parallel and tp > 1}
        values = {name: d.value for name, d in self.defaults.items() if holds[d.when]}
        values["fp8_saved_inputs"] = self.fp8_saved_inputs
        values["fused_elementwise"] = self.fused_elementwise
        values["reshard_after_forward"] = self.fsdp.reshard_after_forward and not (
            pp > 1 and self.fsdp.keeps_gathered_with_pp)
        return {name: v for name, v in values.items() if name in open_fields}

    def attention_kernel_on(self, generation: str) -> KernelFamily:
        """The fused attention kernel family this framework runs on a GPU generation (flash2 if
        the generation is not listed)."""
        return self.attention_kernel.kernels.get(generation, "flash2")

    def recompute_for(self, mode: str) -> str:
        """trainsim's ``recompute`` for one of this framework's checkpointing mode names (a
        trainsim value passes through)."""
        found = self.checkpointing.modes.get(mode)
        return found.recompute if found is not None else mode


def framework_names() -> tuple[str, ...]:
    return FrameworkName.__args__


@cache
def get_framework(name: str) -> Framework:
    """The packaged framework ``name``; ``KeyError`` naming the known ones otherwise."""
    if name not in framework_names():
        raise KeyError(f"unknown framework {name!r}; known: {', '.join(framework_names())}")
    text = resources.files("simulator.workload.frameworks").joinpath(f"{name}.yaml").read_text()
    return Framework(**yaml.safe_load(text))


def traits_table() -> str:
    """The frameworks side by side, as the Markdown table in the README (a test holds them equal)."""
    frameworks = [get_framework(n) for n in framework_names()]
    rows = [
        ("plan defaults", lambda f: "<br>".join(
            f"{k}={v.value}" + (f" if {v.when}" if v.when else "") for k, v in f.defaults.items()) or "(trainsim's)"),
        ("attention kernel (Ampere / Hopper / Blackwell)", lambda f: " / ".join(
            f.attention_kernel_on(g) for g in ("ampere", "hopper", "blackwell"))),
        ('"selective" means', lambda f: f.recompute_for("selective")),
        ("ZeRO-3 reshards after forward", lambda f: "yes" + (", not with PP" if f.fsdp.keeps_gathered_with_pp else "")
         if f.fsdp.reshard_after_forward else "no"),
        ("pipeline p2p", lambda f: "blocking" if f.pipeline_engine.blocking_p2p else "overlapped"),
        ("element-wise ops", lambda f: "fused" if f.fused_elementwise else "eager"),
        ("fp8 saved inputs", lambda f: "fp8" if f.fp8_saved_inputs else "bf16"),
        ("TFLOP/s it prints", lambda f: f.flop_formula),
    ]
    lines = ["| trait | " + " | ".join(f"`{f.name}`" for f in frameworks) + " |",
             "| --- |" + " --- |" * len(frameworks)]
    lines += [f"| {name} | " + " | ".join(str(cell(f)) for f in frameworks) + " |" for name, cell in rows]
    return "\n".join(lines)
