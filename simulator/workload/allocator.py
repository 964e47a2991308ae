"""What a training process holds on a GPU beyond its live tensors (bytes).

Three statistics describe a GPU's memory, and sources report any of them:

* **allocated**: the peak of live tensors (``torch.cuda.max_memory_allocated``), what
  :func:`~simulator.workload.memory.memory_per_gpu` adds up;
* **reserved**: allocated plus the caching allocator's slack, the cached free blocks it keeps
  (``torch.cuda.max_memory_reserved``; torchtitan's ``memory:`` log line);
* **device**: reserved plus what lives outside PyTorch's allocator, the CUDA context and NCCL's
  communication buffers (``nvidia-smi``); what a job needs to run.

The slack is modelled as ``fragmentation x (activations + buffers)``: model states are
allocated once in large blocks and waste little; the tensors created and freed every
micro-batch leave cached holes. The context is one figure per process; NCCL's buffers one
figure per communicator the rank belongs to (:func:`communicators`). The three parameters and
their sources are in ``allocator.yaml``: priors from published figures, replaced by fitted
values when a fit (``simulator/validation/memory_fit.py``) has recorded them, with the fit's
provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

PARAMETERS = ("fragmentation", "cuda_context_bytes", "nccl_buffer_bytes_per_communicator")


@dataclass(frozen=True)
class AllocatorModel:
    """The allocator slack and the memory outside the allocator.

    ``fragmentation``: reserved-minus-allocated bytes per byte of transient tensors
    (activations and buffers), a fraction; ``cuda_context_bytes``: per process, bytes;
    ``nccl_buffer_bytes_per_communicator``: per communicator, bytes; ``source``: ``"prior"`` or
    the fit's provenance."""

    fragmentation: float
    cuda_context_bytes: float
    nccl_buffer_bytes_per_communicator: float
    source: str = "prior"

    def slack(self, transient_bytes: float) -> float:
        """Reserved minus allocated for ``transient_bytes`` of activations and buffers (bytes)."""
        return self.fragmentation * transient_bytes

    def outside(self, n_communicators: int) -> float:
        """Device minus reserved for a rank in ``n_communicators`` communicators (bytes)."""
        return self.cuda_context_bytes + n_communicators * self.nccl_buffer_bytes_per_communicator


def allocator_file() -> dict[str, Any]:
    """The packaged ``allocator.yaml`` as read."""
    return yaml.safe_load(resources.files("simulator.workload").joinpath("allocator.yaml").read_text())


@cache
def allocator_model() -> AllocatorModel:
    """The packaged parameters: each fitted value where ``allocator.yaml`` records a fit, else its prior."""
    data = allocator_file()
    fitted = data.get("fitted") or {}
    values = {p: float(fitted.get(p, data[p]["prior"])) for p in PARAMETERS}
    source = "prior" if not fitted else f"fitted: {fitted.get('provenance', 'allocator.yaml')}"
    return AllocatorModel(**values, source=source)


NONE = AllocatorModel(0.0, 0.0, 0.0, source="none: allocated = reserved = device")
"""No slack and nothing outside the allocator (reserved and device equal allocated)."""


def communicators(tp: int, cp: int, pp: int, dp_cp: int) -> int:
    """NCCL communicators a rank uses: one per parallel dimension of more than one rank
    (tensor, context, pipeline, and the data-parallel group of ``dp x cp`` ranks). NCCL sets up
    a communicator's buffers when it is first used, so groups a step never uses cost nothing."""
    return sum(1 for n in (tp, cp, pp, dp_cp) if n > 1) - (1 if cp > 1 and dp_cp == cp else 0)
