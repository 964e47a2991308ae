"""Megatron-LM command-line flags for a :class:`ParallelPlan`, and back.

:func:`megatron_flags` writes the arguments of ``pretrain_gpt.py`` that set up the
plan (and the model shape the parallel sizes depend on);
:func:`plan_from_megatron_flags` reads a plan back from a Megatron-LM command line.
For every plan Megatron-LM can run,
``plan_from_megatron_flags(megatron_flags(p, m), p.n_gpus) == p``.

Mapping (plan field: flags):

* ``tp``, ``pp``, ``cp``: ``--tensor-model-parallel-size``, ``--pipeline-model-parallel-size``,
  ``--context-parallel-size`` (written when > 1); ``dp`` is not a flag: Megatron-LM fills the
  world size, ``dp = n_gpus / (tp x cp x pp)``.
* layers per stage: when ``pp`` does not divide the layers (:meth:`ParallelPlan.layers`),
  ``--decoder-first-pipeline-num-layers`` and ``--decoder-last-pipeline-num-layers`` (the middle
  stages must then split the rest evenly, as Megatron-LM requires; raises otherwise, and for
  uneven virtual stages). Reading checks them against the plan's split when ``--num-layers`` is
  given (the split follows from the sizes; a command line asking for another one raises) and
  ignores them otherwise.
* ``vpp``: ``--num-layers-per-virtual-pipeline-stage L / (pp x vpp)`` (with ``--num-layers``);
  newer Megatron-Core's ``--num-virtual-stages-per-pipeline-rank`` is read too.
  Megatron-LM runs interleaved 1F1B when it is set, 1F1B otherwise; it has no GPipe.
* ``micro_batch``, ``global_batch``: ``--micro-batch-size``, ``--global-batch-size``.
* ``sequence_parallel``: ``--sequence-parallel``.
* ``recompute``: ``--recompute-granularity selective``, or ``--recompute-granularity full
  --recompute-method uniform --recompute-num-layers 1`` (every block checkpointed at its input,
  as trainsim models it); the old ``--recompute-activations`` reads as selective.
* ``zero_stage``: 1 is ``--use-distributed-optimizer``. ZeRO-2 and ZeRO-3 have no Megatron-LM
  flag (they are DeepSpeed / FSDP features): :func:`megatron_flags` raises for them.
* ``precision``: ``--bf16``, ``--fp16``, fp8 ``--bf16 --fp8-format hybrid``, fp32 no flag
  (Megatron-LM's default). TF32 has no flag: raises.
* ``placement``: ``tp,dp,pp`` is Megatron-LM's default rank order; ``tp,pp,dp`` is
  ``--use-tp-pp-dp-mapping``; other orders raise.
* ``dp_bucket_bytes``: ``--ddp-bucket-size`` in elements (bytes / bytes per reduced gradient
  element), written when set; unset (None) is Megatron-LM's own default, ``max(40M, 1M x dp)``
  elements (:attr:`ParallelPlan.grad_bucket_bytes`), and so is a command line without it.
* ``overlap_grad_reduce``, ``overlap_param_gather``: ``--overlap-grad-reduce``,
  ``--overlap-param-gather`` (both off by default in Megatron-LM).
* ``grad_reduce_precision`` bf16: ``--grad-reduce-in-bf16``.
* ``attention``: ``standard`` is ``--attention-backend unfused`` (``local`` reads the same);
  ``flash`` writes no flag (Megatron-Core's ``auto`` picks a fused kernel), and reads from
  ``--use-flash-attn`` or any other backend.
* ``tp_overlap``: ``backward`` is Megatron-LM's default (asynchronous input-gradient
  all-reduce), ``full`` is ``--tp-comm-overlap``, ``none`` is
  ``--no-async-tensor-model-parallel-allreduce``.

Unknown flags are ignored when reading; missing ones take Megatron-LM's defaults.
"""

from __future__ import annotations

import re
import shlex

from pydantic import ValidationError

from simulator.core.errors import InputError, from_validation_error
from simulator.workload.legality import fleet_filled
from simulator.workload.model import ModelConfig
from simulator.workload.plan import ParallelPlan

_GRAD_BYTES = {"fp32": 4, "bf16": 2}

# flags that take a value (everything else known is a switch)
_VALUED = {
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--num-layers-per-virtual-pipeline-stage",
    "--num-virtual-stages-per-pipeline-rank", "--virtual-pipeline-model-parallel-size",
    "--micro-batch-size", "--global-batch-size", "--recompute-granularity", "--recompute-method",
    "--recompute-num-layers", "--fp8-format", "--ddp-bucket-size", "--num-layers", "--hidden-size",
    "--ffn-hidden-size", "--num-attention-heads", "--num-query-groups", "--seq-length",
    "--max-position-embeddings", "--attention-backend", "--context-parallel-size",
    "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
}


def megatron_flags(plan: ParallelPlan, model: ModelConfig) -> list[str]:
    """Megatron-LM arguments (``pretrain_gpt.py``) that run ``plan`` for ``model``.

    Raises :class:`InputError` for what Megatron-LM cannot express: ZeRO-2/3, GPipe, TF32,
    a rank placement other than ``tp,dp,pp`` or ``tp,pp,dp``.
    """
    if plan.zero_stage >= 2:
        raise InputError(
            f"ZeRO-{plan.zero_stage} has no Megatron-LM flag (Megatron-LM's distributed optimizer is ZeRO-1; "
            "ZeRO-2/3 are DeepSpeed or PyTorch FSDP features)", field="plan.zero_stage")
    if plan.schedule == "gpipe":
        raise InputError("Megatron-LM has no GPipe schedule (it runs 1F1B or interleaved 1F1B)", field="plan.schedule")
    if plan.precision == "tf32":
        raise InputError("Megatron-LM has no TF32 flag (fp32 is its default; use bf16, fp16 or fp8)",
                         field="plan.precision")
    placement = ",".join(plan.placement)
    if placement not in ("tp,dp,pp", "tp,pp,dp"):
        raise InputError(f"rank placement {placement} has no Megatron-LM flag (tp,dp,pp is its default, "
                         "tp,pp,dp is --use-tp-pp-dp-mapping)", field="plan.placement")

    flags = [
        "--num-layers", str(model.n_layers),
        "--hidden-size", str(model.d_model),
        "--ffn-hidden-size", str(model.ffn),
        "--num-attention-heads", str(model.n_heads),
    ]
    if model.kv_heads != model.n_heads:
        flags += ["--group-query-attention", "--num-query-groups", str(model.kv_heads)]
    flags += [
        "--seq-length", str(model.seq_len),
        "--tensor-model-parallel-size", str(plan.tp),
        "--pipeline-model-parallel-size", str(plan.pp),
    ]
    if plan.cp > 1:
        flags += ["--context-parallel-size", str(plan.cp)]
    split = plan.layers(model.n_layers)
    if len(set(split)) > 1:
        middle = split[1:-1]
        if plan.vpp > 1 or len(set(middle)) > 1:
            raise InputError(f"Megatron-LM cannot split {model.n_layers} layers as {', '.join(map(str, split))} "
                             "(it takes a first and a last stage size and splits the rest evenly, without "
                             "virtual stages); pick a pp that divides the layers", field="plan.pp")
        flags += ["--decoder-first-pipeline-num-layers", str(split[0]),
                  "--decoder-last-pipeline-num-layers", str(split[-1])]
    if plan.vpp > 1:
        flags += ["--num-layers-per-virtual-pipeline-stage", str(model.n_layers // (plan.pp * plan.vpp))]
    flags += ["--micro-batch-size", str(plan.micro_batch), "--global-batch-size", str(plan.global_batch)]
    if plan.sequence_parallel:
        flags.append("--sequence-parallel")
    if plan.recompute == "selective":
        flags += ["--recompute-granularity", "selective"]
    elif plan.recompute == "full":
        flags += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    if plan.zero_stage == 1:
        flags.append("--use-distributed-optimizer")
    if plan.overlap_grad_reduce:
        flags.append("--overlap-grad-reduce")
    if plan.overlap_param_gather:
        flags.append("--overlap-param-gather")
    if plan.grad_reduce_precision == "bf16":
        flags.append("--grad-reduce-in-bf16")
    if plan.dp_bucket_bytes is not None:
        elements = plan.dp_bucket_bytes / _GRAD_BYTES[plan.grad_reduce_precision]
        flags += ["--ddp-bucket-size", str(int(elements)) if elements == int(elements) else repr(elements)]
    if plan.tp_overlap == "full":
        flags.append("--tp-comm-overlap")
    elif plan.tp_overlap == "none":
        flags.append("--no-async-tensor-model-parallel-allreduce")
    if plan.precision == "bf16":
        flags.append("--bf16")
    elif plan.precision == "fp16":
        flags.append("--fp16")
    elif plan.precision == "fp8":
        flags += ["--bf16", "--fp8-format", "hybrid"]
    if placement == "tp,pp,dp":
        flags.append("--use-tp-pp-dp-mapping")
    if plan.attention == "standard":
        flags += ["--attention-backend", "unfused"]
    return flags


def _parse(args: list[str]) -> tuple[dict[str, str], set[str]]:
    values: dict[str, str] = {}
    switches: set[str] = set()
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("--"):
            continue  # a positional or the value of an unknown flag
        if "=" in tok:
            name, value = tok.split("=", 1)
            values[name] = value
        elif tok in _VALUED:
            if i >= len(args):
                raise InputError(f"{tok} needs a value", field=tok)
            values[tok] = args[i]
            i += 1
        else:
            switches.add(tok)
    return values, switches


def _int(values: dict[str, str], flag: str, default: int | None) -> int | None:
    if flag not in values:
        return default
    try:
        return int(values[flag])
    except ValueError:
        raise InputError(f"{flag} must be an integer, got {values[flag]!r}", field=flag) from None


def plan_from_megatron_flags(args: list[str] | str, n_gpus: int) -> ParallelPlan:
    """The plan a Megatron-LM command line (a list of arguments or one string) runs on ``n_gpus``.

    ``dp = n_gpus / (tp x cp x pp)``. Unknown flags are ignored; missing ones take Megatron-LM's
    defaults (tp = pp = 1, micro-batch 1, global batch = micro-batch x dp, fp32, no
    recomputation, no overlap of gradient reduction). Raises :class:`InputError` if the
    sizes do not fit ``n_gpus`` or the virtual pipeline needs ``--num-layers``.
    """
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    values, switches = _parse(argv)
    tp = _int(values, "--tensor-model-parallel-size", 1)
    pp = _int(values, "--pipeline-model-parallel-size", 1)
    cp = _int(values, "--context-parallel-size", 1)
    violation = fleet_filled(tp, cp, pp, None, n_gpus)
    if violation is not None:
        raise InputError(violation.message, field="--tensor-model-parallel-size")
    dp = n_gpus // (tp * cp * pp)

    vpp = _virtual_stages(values, pp)
    micro = _int(values, "--micro-batch-size", 1)
    global_batch = _int(values, "--global-batch-size", micro * dp)
    grad_precision = "bf16" if "--grad-reduce-in-bf16" in switches else "fp32"
    precision, recompute, tp_overlap = _read_modes(values, switches)
    bucket = None
    if "--ddp-bucket-size" in values:
        try:
            bucket = float(values["--ddp-bucket-size"]) * _GRAD_BYTES[grad_precision]
        except ValueError:
            raise InputError(f"--ddp-bucket-size must be a number, got {values['--ddp-bucket-size']!r}",
                             field="--ddp-bucket-size") from None
    try:
        plan = ParallelPlan(
            tp=tp, pp=pp, dp=dp, cp=cp, vpp=vpp, micro_batch=micro, global_batch=global_batch,
            schedule="interleaved" if vpp > 1 else "1f1b",
            sequence_parallel="--sequence-parallel" in switches, recompute=recompute,
            zero_stage=1 if "--use-distributed-optimizer" in switches else 0,
            precision=precision,
            placement=("tp", "pp", "dp") if "--use-tp-pp-dp-mapping" in switches else ("tp", "dp", "pp"),
            dp_bucket_bytes=bucket, overlap_grad_reduce="--overlap-grad-reduce" in switches,
            overlap_param_gather="--overlap-param-gather" in switches,
            grad_reduce_precision=grad_precision, tp_overlap=tp_overlap,
            attention="standard" if values.get("--attention-backend") in ("unfused", "local") else "flash",
        )
    except ValidationError as err:
        raise from_validation_error(err, schema=ParallelPlan, prefix="megatron") from None
    _check_split(values, plan)
    return plan


def _check_split(values: dict[str, str], plan: ParallelPlan) -> None:
    """``--decoder-first/last-pipeline-num-layers`` must be the first and last stage of the split
    trainsim simulates for the plan, with an even middle (checked when ``--num-layers`` is given)."""
    first_n = _int(values, "--decoder-first-pipeline-num-layers", None)
    last_n = _int(values, "--decoder-last-pipeline-num-layers", None)
    layers = _int(values, "--num-layers", None)
    if layers is None or (first_n is None and last_n is None):
        return
    split = plan.layers(layers)
    stated = (split[0] if first_n is None else first_n, split[-1] if last_n is None else last_n)
    if stated != (split[0], split[-1]) or (len(set(split)) > 1 and (plan.vpp > 1 or len(set(split[1:-1])) > 1)):
        raise InputError(f"--decoder-first/last-pipeline-num-layers {first_n}/{last_n}: trainsim splits {layers} "
                         f"layers over pp={plan.pp} (x vpp={plan.vpp}) as {', '.join(map(str, split))} (as even as "
                         "possible, the first and last stages lighter); give those or leave the flags out",
                         field="--decoder-first-pipeline-num-layers")


def _virtual_stages(values: dict[str, str], pp: int) -> int:
    """Model chunks per pipeline rank, from either way Megatron-LM states it (1 if neither)."""
    vpp = _int(values, "--num-virtual-stages-per-pipeline-rank", None) or \
        _int(values, "--virtual-pipeline-model-parallel-size", None)
    per_virtual = _int(values, "--num-layers-per-virtual-pipeline-stage", None)
    if vpp is None and per_virtual is not None:
        layers = _int(values, "--num-layers", None)
        if layers is None:
            raise InputError("--num-layers-per-virtual-pipeline-stage needs --num-layers to give the chunks per stage",
                             field="--num-layers")
        if layers % (pp * per_virtual):
            raise InputError(f"--num-layers {layers} is not a multiple of pp x layers per virtual stage "
                             f"= {pp} x {per_virtual}", field="--num-layers-per-virtual-pipeline-stage")
        vpp = layers // (pp * per_virtual)
    return vpp or 1


def _read_modes(values: dict[str, str], switches: set[str]) -> tuple[str, str, str]:
    """(precision, recompute, tp_overlap) of a command line, with Megatron-LM's defaults."""
    granularity = values.get("--recompute-granularity")
    if granularity == "full":
        recompute = "full"
    elif granularity == "selective" or "--recompute-activations" in switches:
        recompute = "selective"
    else:
        recompute = "none"
    if "--fp8-format" in values or "--fp8-hybrid" in switches:
        precision = "fp8"
    elif "--bf16" in switches:
        precision = "bf16"
    elif "--fp16" in switches:
        precision = "fp16"
    else:
        precision = "fp32"
    if "--tp-comm-overlap" in switches:
        tp_overlap = "full"
    elif "--no-async-tensor-model-parallel-allreduce" in switches:
        tp_overlap = "none"
    else:
        tp_overlap = "backward"
    return precision, recompute, tp_overlap


# Switches that change how a run overlaps or shards, with the plan fields they set. Megatron-LM
# refuses --tp-comm-overlap without --sequence-parallel and --overlap-param-gather without
# --use-distributed-optimizer (argument checks in megatron/training/arguments.py), so those
# switches also state the feature they need.
_OPTION_SWITCHES: dict[str, dict[str, object]] = {
    "--sequence-parallel": {"sequence_parallel": True},
    "--use-distributed-optimizer": {"zero_stage": 1},
    "--overlap-grad-reduce": {"overlap_grad_reduce": True},
    "--overlap-param-gather": {"overlap_param_gather": True, "zero_stage": 1},
    "--tp-comm-overlap": {"tp_overlap": "full", "sequence_parallel": True},
    "--grad-reduce-in-bf16": {"grad_reduce_precision": "bf16"},
}


def options_in_text(text: str) -> tuple[dict[str, object], list[str]]:
    """Plan fields set by the Megatron-LM option switches quoted in free text, and those switches.

    For prose that names the flags a run used (a validation row's notes, say): only
    switches, never sizes, are read, so a number in the text is never mistaken for a
    setting. Recognised: ``--sequence-parallel``, ``--use-distributed-optimizer``,
    ``--overlap-grad-reduce``, ``--overlap-param-gather`` (implies the distributed
    optimizer), ``--tp-comm-overlap`` (``tp_overlap: full``; implies sequence
    parallelism), ``--grad-reduce-in-bf16``.
    """
    found = [flag for flag in _OPTION_SWITCHES if re.search(re.escape(flag) + r"(?![\w-])", text)]
    fields: dict[str, object] = {}
    for flag in found:
        fields.update(_OPTION_SWITCHES[flag])
    return fields, found


__all__ = ["megatron_flags", "options_in_text", "plan_from_megatron_flags"]
