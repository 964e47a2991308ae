"""Typed timeline events of a simulated step, each able to render itself as Chrome trace slices.

An event is one interval on the timeline of a (replica, stage) TP x CP group: ``start_s`` and
``end_s`` are seconds from the start of the step. Communication sizes (``bytes``) are the
buffer per GPU (nccl-tests convention). Data-parallel collectives (gradient buckets, parameter
gathers, the embedding sync) are recorded once, on replica 0; they involve every replica.

:meth:`TimelineEvent.row` gives the event's row of the public ``StepResult.timeline`` table
(columns :data:`TIMELINE_COLUMNS`); :meth:`TimelineEvent.slices` its "X" (complete) events of
the Trace Event Format, times in microseconds rounded to nanoseconds, without the ``pid`` and
``tid`` of the track (the trace assigns those).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from simulator.network.collectives import CollectivePlan

TIMELINE_COLUMNS = ("replica", "stage", "name", "microbatch", "chunk", "start_s", "end_s", "stream", "bytes",
                    "collective", "recompute_s")
"""Columns of the timeline table: ``microbatch`` is the bucket index of a gradient bucket and -1
where neither applies, ``chunk`` the model chunk (virtual stage // pp) or -1, ``stream``
"compute" or "comm", ``collective`` what ran (e.g. "all_reduce by ring over 8 group(s) of 16
GPUs"), ``recompute_s`` the recomputation at the start of a backward pass (seconds)."""

Direction = Literal["activation", "gradient"]  # forward activation to the next stage, gradient to the previous
_DECIMALS = 3  # of microseconds: nanoseconds


def microseconds(seconds: float) -> float:
    """Seconds as microseconds, rounded to nanoseconds (the trace's time unit)."""
    return round(float(seconds) * 1e6, _DECIMALS)


def describe_collective(plan: CollectivePlan) -> str:
    """What a collective plan runs, as NCCL chose it, e.g. "all_reduce by ring/Simple on 16 channels over
    8 group(s) of 16 GPUs" (no protocol and channels when it moves nothing)."""
    how = f"{plan.algorithm}/{plan.protocol} on {plan.channels} channels" if plan.protocol else plan.algorithm
    return f"{plan.kind} by {how} over {plan.n_groups} group(s) of {plan.group_size} GPUs"


@dataclass(frozen=True, slots=True)
class TraceLayout:
    """What the slices of an event need to know about the plan."""

    pp: int
    vpp: int
    dp: int
    zero_stage: int

    def chunk_suffix(self, chunk: int) -> str:
        return f" (chunk {chunk})" if self.vpp > 1 and chunk >= 0 else ""


def _slice(label: str, category: str, start_s: float, end_s: float, args: dict[str, Any]) -> dict[str, Any]:
    ts, end = microseconds(start_s), microseconds(end_s)
    return {"name": label, "cat": category, "ph": "X", "ts": ts, "dur": round(max(0.0, end - ts), _DECIMALS),
            "args": args}


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One interval of a (replica, stage) group; subclasses say what it was."""

    replica: int
    stage: int
    start_s: float
    end_s: float

    name: ClassVar[str]  # the timeline's ``name`` column
    stream: ClassVar[str] = "compute"  # "compute" or "comm"
    involves_all_replicas: ClassVar[bool] = False  # a data-parallel collective: on every replica's comm track

    def row(self) -> tuple:
        """The event's row of the timeline table (:data:`TIMELINE_COLUMNS`)."""
        return (self.replica, self.stage, self.name, -1, -1, self.start_s, self.end_s, self.stream, 0.0, "", 0.0)

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        """Chrome trace "X" events of this interval (none for an empty wait)."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------- compute


@dataclass(frozen=True, slots=True)
class ComputePass(TimelineEvent):
    """A forward ("F") or backward ("B") pass of one micro-batch through one model chunk; a
    backward pass starts with ``recompute_s`` seconds of recomputation (activation checkpointing)."""

    kind: Literal["F", "B"]
    microbatch: int
    chunk: int
    recompute_s: float = 0.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.kind

    def row(self) -> tuple:
        return (self.replica, self.stage, self.kind, self.microbatch, self.chunk, self.start_s, self.end_s,
                "compute", 0.0, "", self.recompute_s)

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        mb, chunk = self.microbatch, self.chunk
        suffix = layout.chunk_suffix(chunk)
        args = {"stage": self.stage, "microbatch": mb, "chunk": chunk, "virtual_stage": chunk * layout.pp + self.stage,
                "pass": "forward" if self.kind == "F" else "backward"}
        whole = _slice(f"{self.kind} mb {mb}{suffix}", "compute", self.start_s, self.end_s, args)
        recompute = microseconds(self.recompute_s)
        if self.kind == "F" or recompute <= 0:
            return [whole]
        ts, end = whole["ts"], microseconds(self.end_s)
        split = round(ts + recompute, _DECIMALS)  # the recomputed forward runs first: its own slice
        return [dict(whole, name=f"recompute mb {mb}{suffix}", dur=round(split - ts, _DECIMALS),
                     args=dict(args, **{"pass": "recompute (forward again)"})),
                dict(whole, ts=split, dur=round(max(0.0, end - split), _DECIMALS))]


@dataclass(frozen=True, slots=True)
class OptimizerStep(TimelineEvent):
    """The optimizer update of the stage's parameters."""

    name: ClassVar[str] = "optimizer"

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        return [_slice("optimizer", "compute", self.start_s, self.end_s, {"stage": self.stage})]


# ------------------------------------------------------------------------------ communication


def _comm_args(stage: int, nbytes: float, collective: str) -> dict[str, Any]:
    args: dict[str, Any] = {"stage": stage}
    if nbytes > 0:
        args.update(bytes_per_gpu=float(nbytes), collective=collective)
    return args


@dataclass(frozen=True, slots=True)
class PipelineSend(TimelineEvent):
    """A point-to-point transfer from this stage (chunk ``chunk``) to stage ``to_stage``
    (chunk ``to_chunk``): an activation forward or a gradient backward, of micro-batch ``microbatch``."""

    microbatch: int
    chunk: int
    direction: Direction
    to_stage: int
    to_chunk: int
    bytes: float
    collective: str

    name: ClassVar[str] = "pp_send"
    stream: ClassVar[str] = "comm"

    def row(self) -> tuple:
        return (self.replica, self.stage, "pp_send", self.microbatch, self.chunk, self.start_s, self.end_s, "comm",
                self.bytes, self.collective, 0.0)

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        args = _comm_args(self.stage, self.bytes, self.collective)
        args.update(microbatch=self.microbatch, chunk=self.chunk)
        if self.direction == "activation":
            what = "act"
            args.update(transfer="point-to-point: forward activation to the next pipeline stage")
        else:
            what = "grad"
            args.update(transfer="point-to-point: backward activation gradient to the previous pipeline stage")
        args.update(to_stage=self.to_stage, to_chunk=self.to_chunk)
        label = f"PP send {what} mb {self.microbatch}{layout.chunk_suffix(self.chunk)}"
        return [_slice(label, "comm", self.start_s, self.end_s, args)]


@dataclass(frozen=True, slots=True)
class DataParallelCollective(TimelineEvent):
    """A collective over the data-parallel replicas, recorded on replica 0."""

    bytes: float
    collective: str

    stream: ClassVar[str] = "comm"
    involves_all_replicas: ClassVar[bool] = True

    def row(self) -> tuple:
        return (self.replica, self.stage, self.name, -1, -1, self.start_s, self.end_s, "comm", self.bytes,
                self.collective, 0.0)


@dataclass(frozen=True, slots=True)
class GradientBucket(DataParallelCollective):
    """The reduction (all-reduce, or reduce-scatter with ZeRO) of gradient bucket ``bucket`` of ``chunk``."""

    bucket: int
    chunk: int

    name: ClassVar[str] = "dp_bucket"

    def row(self) -> tuple:
        return (self.replica, self.stage, "dp_bucket", self.bucket, self.chunk, self.start_s, self.end_s, "comm",
                self.bytes, self.collective, 0.0)

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        reduction = "all-reduce" if layout.zero_stage == 0 else "reduce-scatter"
        args = _comm_args(self.stage, self.bytes, self.collective)
        args.update(bucket=self.bucket, chunk=self.chunk,
                    transfer=f"data-parallel gradient {reduction} over {layout.dp} replicas")
        return [_slice(f"DP bucket {self.bucket}{layout.chunk_suffix(self.chunk)}", "comm", self.start_s, self.end_s,
                       args)]


@dataclass(frozen=True, slots=True)
class ParameterGather(DataParallelCollective):
    """ZeRO 1-2: the all-gather of the updated parameters after the optimizer."""

    name: ClassVar[str] = "param_gather"

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        args = _comm_args(self.stage, self.bytes, self.collective)
        args.update(transfer=f"data-parallel all-gather of the updated parameters over {layout.dp} replicas (ZeRO)")
        return [_slice("param gather", "comm", self.start_s, self.end_s, args)]


@dataclass(frozen=True, slots=True)
class EmbeddingSync(DataParallelCollective):
    """Tied embeddings: the all-reduce of their gradients between the first and the last stage."""

    name: ClassVar[str] = "embedding_sync"

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        args = _comm_args(self.stage, self.bytes, self.collective)
        args.update(transfer=f"all-reduce of the tied embedding gradients between stage 0 and stage {layout.pp - 1}")
        return [_slice("embedding sync", "comm", self.start_s, self.end_s, args)]


# -------------------------------------------------------------------------------------- waits


@dataclass(frozen=True, slots=True)
class Wait(TimelineEvent):
    """The group's compute stream waiting; the breakdown counts it as :attr:`counted_as`."""

    label: ClassVar[str]
    counted_as: ClassVar[str] = "stall or exposed DP communication"
    waiting_for: ClassVar[str]

    def slices(self, layout: TraceLayout) -> list[dict[str, Any]]:
        wait = _slice(self.label, "bubble", self.start_s, self.end_s, self._args(layout))
        if microseconds(self.end_s) <= wait["ts"]:  # nothing to see
            return []
        wait["cname"] = "terrible"  # red in chrome://tracing
        return [wait]

    def _args(self, layout: TraceLayout) -> dict[str, Any]:
        return {"stage": self.stage, "kind": self.counted_as, "waiting_for": self.waiting_for}


@dataclass(frozen=True, slots=True)
class PipelineWait(Wait):
    """Pass ``kind`` of ``microbatch`` (chunk ``chunk``) waiting for its input: the activation
    from the previous virtual stage or the gradient from the next one, ``from_stage`` / ``from_chunk``."""

    kind: Literal["F", "B"]
    microbatch: int
    chunk: int
    from_stage: int
    from_chunk: int

    name: ClassVar[str] = "wait_pp"
    label: ClassVar[str] = "pipeline wait"
    counted_as: ClassVar[str] = "pipeline bubble, stall or exposed PP communication"

    def row(self) -> tuple:
        return (self.replica, self.stage, "wait_pp", self.microbatch, self.chunk, self.start_s, self.end_s, "compute",
                0.0, "", 0.0)

    def _args(self, layout: TraceLayout) -> dict[str, Any]:
        what = "activation" if self.kind == "F" else "activation gradient"
        source = f"stage {self.from_stage}" + layout.chunk_suffix(self.from_chunk)
        return {"stage": self.stage, "kind": self.counted_as,
                "waiting_for": f"the {what} of micro-batch {self.microbatch} from {source}",
                "microbatch": self.microbatch, "chunk": self.chunk}


@dataclass(frozen=True, slots=True)
class GradientReductionWait(Wait):
    """The stage waiting for its data-parallel gradient reduction before the optimizer."""

    name: ClassVar[str] = "wait_dp"
    label: ClassVar[str] = "DP wait"
    waiting_for: ClassVar[str] = "the data-parallel gradient reduction of this stage"


@dataclass(frozen=True, slots=True)
class ParameterGatherWait(Wait):
    """The stage waiting for the all-gather of the updated parameters (ZeRO 1-2)."""

    name: ClassVar[str] = "wait_param_gather"
    label: ClassVar[str] = "param-gather wait"
    waiting_for: ClassVar[str] = "the data-parallel all-gather of the updated parameters"


@dataclass(frozen=True, slots=True)
class EmbeddingSyncWait(Wait):
    """The first or last stage waiting for the tied-embedding gradient all-reduce."""

    name: ClassVar[str] = "wait_embedding_sync"
    label: ClassVar[str] = "embedding-sync wait"
    counted_as: ClassVar[str] = "pipeline bubble, stall or exposed DP communication"
    waiting_for: ClassVar[str] = "the all-reduce of the tied embedding gradients (first and last stage)"


WAIT_TYPES = (PipelineWait, GradientReductionWait, ParameterGatherWait, EmbeddingSyncWait)
