"""The step engine: one optimizer step of a work plan as a discrete-event simulation (SimPy).

Times are seconds of simulated time from the start of the step; bytes are per GPU. Modules:

* :mod:`~simulator.system.engine.simulation`: :class:`StepSimulation`, :class:`StepRun`, the
  deadlock report and the bubble / stall split;
* :mod:`~simulator.system.engine.stage`: the process of one pipeline stage;
* :mod:`~simulator.system.engine.pipeline`: point-to-point transfers between stages;
* :mod:`~simulator.system.engine.dp_stream`: the data-parallel gradient bucket streams;
* :mod:`~simulator.system.engine.barrier`: barrier collectives (parameter gather, embedding sync);
* :mod:`~simulator.system.engine.replicas`: representative and full mode;
* :mod:`~simulator.system.engine.state`: the state the pieces share;
* :mod:`~simulator.system.engine.events`: the typed timeline events.
"""

from __future__ import annotations

from simulator.system.engine.events import (
    TIMELINE_COLUMNS,
    WAIT_TYPES,
    ComputePass,
    DataParallelCollective,
    EmbeddingSync,
    EmbeddingSyncWait,
    GradientBucket,
    GradientReductionWait,
    OptimizerStep,
    ParameterGather,
    ParameterGatherWait,
    PipelineSend,
    PipelineWait,
    TimelineEvent,
    TraceLayout,
    Wait,
    microseconds,
)
from simulator.system.engine.replicas import Mode
from simulator.system.engine.simulation import (
    Progress,
    StepRun,
    StepSimulation,
    StepSize,
)
from simulator.system.engine.state import RankAccount

__all__ = [
    "TIMELINE_COLUMNS",
    "WAIT_TYPES",
    "ComputePass",
    "DataParallelCollective",
    "EmbeddingSync",
    "EmbeddingSyncWait",
    "GradientBucket",
    "GradientReductionWait",
    "Mode",
    "OptimizerStep",
    "ParameterGather",
    "ParameterGatherWait",
    "PipelineSend",
    "PipelineWait",
    "Progress",
    "RankAccount",
    "StepRun",
    "StepSimulation",
    "StepSize",
    "TimelineEvent",
    "TraceLayout",
    "Wait",
    "microseconds",
]
