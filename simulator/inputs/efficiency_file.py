"""The efficiency file: the named efficiency parameters of a simulation as written in YAML.

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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from simulator.core.bounds import real, span
from simulator.core.errors import InputError, from_validation_error
from simulator.core.units import US
from simulator.core.yamlfile import parse_yaml, read_yaml_file
from simulator.hardware.compute import ComputeEfficiency
from simulator.hardware.power import PowerFractions
from simulator.network.efficiency import MAX_LATENCY_S, NetworkEfficiency
from simulator.system.efficiency import Efficiency

_MICROSECONDS = {"kernel_overhead_s": "kernel_overhead_us", "pipeline_dispatch_s": "pipeline_dispatch_us"}
"""The parameters in seconds, and their names in the file, which states them in microseconds."""
_SECONDS = {file_name: name for name, file_name in _MICROSECONDS.items()}


_MAX_US = 1e6
"""The largest fixed cost of a kernel or a collective, microseconds (1 s)."""


def _in_microseconds(name: str, description: str, default_s: float | None = None) -> tuple[Any, Any]:
    """The file's name and field of a parameter in seconds, stated in microseconds (``default_s``:
    its default, seconds; None: required)."""
    extra = {} if default_s is None else {"default": default_s / US}
    return _MICROSECONDS[name], (real(0, _MAX_US), Field(description=f"{description}, in {span(0, _MAX_US)}",
                                                         **extra))


def _compute_fields() -> dict[str, tuple[Any, Any]]:
    """The file's ``compute`` section: :class:`ComputeEfficiency`'s fields, times in microseconds."""
    fields = {}
    for name, info in ComputeEfficiency.model_fields.items():
        if name in _MICROSECONDS:
            what = ("fixed cost per kernel launch" if name == "kernel_overhead_s" else
                    "host dispatch per pass of a blocking pipeline engine")
            written, field = _in_microseconds(name, f"{what}, microseconds",
                                              None if info.is_required() else info.default)
        else:
            written, field = name, (info.annotation, info)
        fields[written] = field
    return fields


def _network_fields() -> dict[str, tuple[Any, Any]]:
    """The file's ``network`` section: :class:`NetworkEfficiency`'s fields, latencies (``*_s``)
    stated in microseconds (``*_us``)."""
    fields = {}
    for name, info in NetworkEfficiency.model_fields.items():
        if name.endswith("_s"):
            hi_us = MAX_LATENCY_S / US
            text = info.description.replace("seconds", "microseconds").replace(span(0, MAX_LATENCY_S), span(0, hi_us))
            fields[name[:-2] + "_us"] = (real(0, hi_us), Field(default=info.default / US, description=text))
        else:
            fields[name] = (info.annotation, info)
    return fields


_FORBID = ConfigDict(extra="forbid")
_ComputeSection = create_model("compute", __config__=_FORBID, **_compute_fields())
_NetworkSection = create_model("network", __config__=_FORBID, **_network_fields())


def _runtime_values(values: dict[str, Any]) -> dict[str, Any]:
    """A section's values in SI, under the runtime parameters' names."""
    out = {}
    for k, v in values.items():
        if k in _SECONDS:
            out[_SECONDS[k]] = v * US
        elif k.endswith("_us"):
            out[k[:-3] + "_s"] = v * US
        else:
            out[k] = v
    return out


def _file_values(values: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_runtime_values`: input units, the file's names."""
    out = {}
    for k, v in values.items():
        if k in _MICROSECONDS:
            out[_MICROSECONDS[k]] = v / US
        elif k.endswith("_s") and isinstance(v, float):
            out[k[:-2] + "_us"] = round(v / US, 6)  # 30.84, not 30.840000000000003
        else:
            out[k] = v
    return out


class EfficiencyFile(BaseModel):
    """The layout of ``efficiency.yaml``: the sections are derived from the parameters'
    own types (:class:`ComputeEfficiency`, :class:`NetworkEfficiency`, :class:`PowerFractions`),
    with times in microseconds (input units)."""

    model_config = ConfigDict(extra="forbid")
    compute: _ComputeSection
    network: _NetworkSection
    power: PowerFractions
    source: str = Field(description="how the values were obtained")
    fit: dict[str, Any] | None = Field(None, description="the fit record of `trainsim calibrate`")
    network_fit: dict[str, Any] | None = Field(None, description="the record of the network section's fit "
                                               "(`trainsim calibrate` on nccl-tests files)")


def efficiency_from_dict(raw: Any, *, file: str | Path | None = None) -> Efficiency:
    """An :class:`Efficiency` from the YAML layout of ``efficiency.yaml`` (input units); an
    :class:`InputError` naming ``file`` and the field if it does not follow the layout."""
    if not isinstance(raw, dict):
        raise InputError(f"expected a mapping with {', '.join(EfficiencyFile.model_fields)}", file=file)
    try:
        f = EfficiencyFile(**raw)
    except ValidationError as err:
        raise from_validation_error(err, schema=EfficiencyFile, file=file) from None
    return Efficiency(
        compute=ComputeEfficiency(**_runtime_values(f.compute.model_dump())),
        network=NetworkEfficiency(**_runtime_values(f.network.model_dump())),
        power=f.power,
        source=f.source,
        fit=f.fit,
        network_fit=f.network_fit,
    )


def efficiency_to_dict(eff: Efficiency) -> dict[str, Any]:
    """The YAML layout of ``efficiency.yaml`` (input units), the inverse of :func:`efficiency_from_dict`."""
    return {
        "compute": _file_values(eff.compute.model_dump()),
        "network": _file_values(eff.network.model_dump()),
        "power": eff.power.model_dump(),
        "source": eff.source,
        "fit": eff.fit,
        "network_fit": eff.network_fit,
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
    changed; its ``fit`` is the file's (none if it has none), and so is its ``network_fit`` when
    the file has a ``network`` section. Raises :class:`InputError` naming the file and the field."""
    raw = read_yaml_file(path, expected="efficiency parameters (format: simulator/inputs/efficiency.yaml)")
    if not isinstance(raw, dict) or not raw:
        raise InputError("expected a mapping with any of " + ", ".join(EfficiencyFile.model_fields), file=path)
    packaged = {**_packaged(), "fit": None}
    if "network" in raw:  # the packaged network record no longer describes the values
        packaged["network_fit"] = None
    merged = _merged(packaged, raw)
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
