"""The named efficiency parameters of one simulation, and where they came from.

trainsim predicts from first principles plus this small set of parameters:
achieved fractions of peak compute and memory bandwidth, of nominal link
bandwidth per link kind, fixed per-kernel and per-collective overheads, and GPU
power per state. :func:`default_efficiency` reads the packaged values
(``efficiency.yaml``, whose ``source`` says how they were obtained);
:func:`load_efficiency` reads a user file in the same format (for example one
written by ``trainsim calibrate --out``, or a few values to change: the file's
values replace the packaged ones, the rest stay); a study may build its own
:class:`Efficiency` (``dataclasses.replace`` changes one part).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.core.errors import InputError, from_validation_error
from simulator.core.units import US
from simulator.core.yamlfile import parse_yaml, read_yaml_file
from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.network.efficiency import NetworkEfficiency
from simulator.system.efficiency import Efficiency

_Fraction = Annotated[float, Field(gt=0, le=1)]


class _ComputeSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gemm: _Fraction = Field(description="large-GEMM fraction of peak for generations not listed")
    gemm_by_generation: dict[str, _Fraction] = Field(description="large-GEMM fraction of peak per architecture")
    gemm_of_mamf: _Fraction | None = Field(None, description="GEMM rate over the measured achievable matmul rate")
    gemm_half_dim: float = Field(0.0, ge=0, description="GEMM size at half efficiency (0: no size effect)")
    attention: _Fraction = Field(description="fused attention kernel fraction of peak")
    memory: _Fraction = Field(description="streaming kernels' fraction of HBM bandwidth")
    kernel_overhead_us: float = Field(ge=0, description="fixed cost per kernel launch, microseconds")


class _NetworkSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nvlink: _Fraction
    pcie: _Fraction
    nic: _Fraction
    fabric: _Fraction
    collective_overhead_us: float = Field(ge=0, description="fixed cost per collective, microseconds")


class EfficiencyFile(BaseModel):
    """The layout of ``efficiency.yaml`` (input units: fractions, microseconds)."""

    model_config = ConfigDict(extra="forbid")
    compute: _ComputeSection
    network: _NetworkSection
    power: PowerFractions
    source: str = Field(description="how the values were obtained")
    fit: dict[str, Any] | None = Field(None, description="the fit record of `trainsim calibrate`")


def efficiency_from_dict(raw: Any, *, file: str | Path | None = None) -> Efficiency:
    """An :class:`Efficiency` from the YAML layout of ``efficiency.yaml`` (input units); an
    :class:`InputError` naming ``file`` and the field if it does not follow the layout."""
    if not isinstance(raw, dict):
        raise InputError(f"expected a mapping with {', '.join(EfficiencyFile.model_fields)}", file=file)
    try:
        f = EfficiencyFile(**raw)
    except ValidationError as err:
        raise from_validation_error(err, schema=EfficiencyFile, file=file) from None
    c, n = f.compute, f.network
    return Efficiency(
        compute=ComputeEfficiency(
            gemm=c.gemm, gemm_by_generation=c.gemm_by_generation, gemm_of_mamf=c.gemm_of_mamf,
            gemm_half_dim=c.gemm_half_dim, attention=c.attention, memory=c.memory,
            kernel_overhead_s=c.kernel_overhead_us * US,
        ),
        network=NetworkEfficiency(nvlink=n.nvlink, pcie=n.pcie, nic=n.nic, fabric=n.fabric,
                                  overhead_s=n.collective_overhead_us * US),
        power=f.power,
        source=f.source,
        fit=f.fit,
    )


def efficiency_to_dict(eff: Efficiency) -> dict[str, Any]:
    """The YAML layout of ``efficiency.yaml`` (input units), the inverse of :func:`efficiency_from_dict`."""
    c, n = eff.compute, eff.network
    return {
        "compute": {"gemm": c.gemm, "gemm_by_generation": dict(c.gemm_by_generation), "gemm_of_mamf": c.gemm_of_mamf,
                    "gemm_half_dim": c.gemm_half_dim, "attention": c.attention, "memory": c.memory,
                    "kernel_overhead_us": c.kernel_overhead_s / US},
        "network": {"nvlink": n.nvlink, "pcie": n.pcie, "nic": n.nic, "fabric": n.fabric,
                    "collective_overhead_us": n.overhead_s / US},
        "power": eff.power.model_dump(),
        "source": eff.source,
        "fit": eff.fit,
    }


PACKAGED_FILE = "simulator/inputs/efficiency.yaml"


@lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    return parse_yaml(resources.files("simulator.inputs").joinpath("efficiency.yaml").read_text(), file=PACKAGED_FILE)


@lru_cache(maxsize=1)
def default_efficiency() -> Efficiency:
    """The packaged parameters (``simulator/inputs/efficiency.yaml``)."""
    return efficiency_from_dict(_packaged(), file=PACKAGED_FILE)


def load_efficiency(path: str | Path) -> Efficiency:
    """The packaged parameters with those of the YAML file ``path`` (same layout; any part of
    it) in their place. Without its own ``source`` the result's says which values the file
    changed; its ``fit`` is the file's (none if it has none). Raises :class:`InputError`
    naming the file and the field."""
    raw = read_yaml_file(path, expected="efficiency parameters (format: simulator/inputs/efficiency.yaml)")
    if not isinstance(raw, dict) or not raw:
        raise InputError("expected a mapping with any of " + ", ".join(EfficiencyFile.model_fields), file=path)
    merged = _merged({**_packaged(), "fit": None}, raw)
    if "source" not in raw:
        changed = ", ".join(_leaves({k: v for k, v in raw.items() if k != "fit"}))
        merged["source"] = f"{Path(path).name}: {changed} from this file; the rest: {PACKAGED_FILE} ({merged['source']})"
    return efficiency_from_dict(merged, file=path)


def _merged(base: Any, over: Any) -> Any:
    """``over`` in place of ``base``, mapping by mapping."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in over.items()}}
    return over


def _leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values in nested mappings."""
    return [name for k, v in tree.items()
            for name in (_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])]
