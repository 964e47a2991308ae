"""Accelerator catalog: what one GPU can do per second, with the source of every figure.

The packaged ``gpus.yaml`` (next to this module) lists accelerators in input units
(``peak_tflops``, ``hbm_GB``, ``hbm_bandwidth_TBps``, ``intra_node_bandwidth_GBps``, ...).
:func:`load_catalog` validates it, converts once to SI and returns a :class:`Catalog` of
:class:`GPUSpec` (FLOP/s, bytes, bytes/s, watts).

A user file in the same format is layered on top: each entry adds a GPU or replaces the packaged
entry of the same slug. An entry with ``base: <slug or alias>`` starts from that GPU and changes only
the fields it gives; ``peak_tflops`` merges precision by precision. A power-capped H100 is::

    h100-500w: {base: h100-sxm, power_limit_W: 500}

``power_limit_W`` is the limit the board is run at, below the ``tdp_W`` its ``peak_tflops`` are
rated at. The spec's compute peaks are then derated by the sustained clock fraction
(:func:`simulator.hardware.clocks.sustained_clock_fraction`, the cube law:
(500/700)^(1/3) = 0.894). :attr:`GPUSpec.tdp_W` is the limit as run, which is what the energy model
needs. The rated figures stay available for MFU conventions (:meth:`GPUSpec.rated_peak_flops_for`).
To state the capped peaks yourself, change ``tdp_W`` and ``peak_tflops`` instead; nothing is then
derated.

Rules for ``base`` (chosen so that nothing surprising is inherited):

* ``base`` is looked up first among the other entries of the same file, then in the layer below
  (the packaged catalog), by slug or alias, case-insensitively. So ``h100-sxm: {base: h100-sxm,
  ...}`` in a user file modifies the packaged H100 in place.
* A derived entry with a NEW slug does not inherit its base's ``aliases`` (two entries may not share
  a name); an entry that keeps its base's slug does.
* If the entry gives no ``source``, its source says which fields the user file changed and then
  repeats the base's source, so no overridden figure is passed off as the vendor's.
* A precision cannot be removed through ``base``; write a full entry instead.

Every problem in an input file raises :class:`~simulator.core.errors.InputError` naming the file and the
field as ``<slug>.<field>`` (``None`` for whole-file problems such as a missing file or bad YAML).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from simulator.core import units
from simulator.core.bounds import Fraction, real, span
from simulator.core.errors import InputError, from_validation_error
from simulator.core.units import PRECISIONS, Precision
from simulator.core.yamlfile import parse_yaml, read_yaml_file
from simulator.hardware.clocks import sustained_clock_fraction

PACKAGED_FILE = "simulator/hardware/gpus.yaml"
"""How errors in the packaged catalog name their file."""

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")

MAX_TFLOPS = 1e5
MAX_HBM_GB = 1e5
MAX_HBM_TBPS = 1e3
MAX_W = 1e5
"""The most power one GPU may draw, watts."""
MAX_LINK_GBPS = 1e6
"""The fastest link, GB/s (1e15 bytes/s)."""
_TFLOPS = real(0, MAX_TFLOPS, lo_open=True)
_HBM_GB = real(0, MAX_HBM_GB, lo_open=True)
_HBM_TBPS = real(0, MAX_HBM_TBPS, lo_open=True)
_WATTS = real(0, MAX_W, lo_open=True)
_LINK = real(0, MAX_LINK_GBPS, lo_open=True)
_FRACTION = span(0, 1, lo_open=True)
_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _GPUEntry(BaseModel):
    """One catalog entry as written in a YAML file (input units; see ``gpus.yaml`` header)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    aliases: list[_Text] = Field(default_factory=list)
    vendor: _Text
    architecture: _Text
    peak_tflops: dict[Precision, _TFLOPS] = Field(
        description=f"Precision -> dense peak TFLOP/s, each in {span(0, MAX_TFLOPS, lo_open=True)}; fp32 required.")
    hbm_GB: _HBM_GB = Field(description=f"Device memory, GB, in {span(0, MAX_HBM_GB, lo_open=True)}.")
    hbm_bandwidth_TBps: _HBM_TBPS = Field(
        description=f"Device memory bandwidth, TB/s, in {span(0, MAX_HBM_TBPS, lo_open=True)}.")
    tdp_W: _WATTS = Field(description=f"Board power limit the peaks are rated at, W, in {span(0, MAX_W, lo_open=True)}.")
    idle_W: real(0, MAX_W) = Field(description=f"Power while waiting, W, in {span(0, MAX_W)} and at most tdp_W.")
    power_limit_W: _WATTS | None = Field(
        None, description=f"Board power limit the part is run at, W, in {span(0, MAX_W, lo_open=True)}, from idle_W "
        "to tdp_W; compute peaks are derated by the sustained clock fraction (None: run at tdp_W).")
    intra_node_bandwidth_GBps: _LINK = Field(
        description=f"Scale-up bandwidth per GPU, one direction, GB/s, in {span(0, MAX_LINK_GBPS, lo_open=True)}.")
    mamf_fraction: Fraction | None = Field(
        None, description=f"Measured maximum achievable bf16 matmul rate, fraction of peak, in {_FRACTION}.")
    mamf_fraction_fp8: Fraction | None = Field(
        None, description=f"Measured maximum achievable fp8 matmul rate, fraction of peak, in {_FRACTION}.")
    source: _Text
    notes: str = ""

    @field_validator("peak_tflops")
    @classmethod
    def _needs_fp32(cls, value: dict[str, float]) -> dict[str, float]:
        if "fp32" not in value:
            raise ValueError(f"must include fp32 (every accelerator runs fp32); allowed keys: {', '.join(PRECISIONS)}")
        return value

    @field_validator("idle_W")
    @classmethod
    def _idle_below_tdp(cls, value: float, info: ValidationInfo) -> float:
        tdp = info.data.get("tdp_W")
        if tdp is not None and value > tdp:
            raise ValueError(f"idle_W={value} exceeds tdp_W={tdp}; idle power must be at most the power limit")
        return value

    @field_validator("power_limit_W")
    @classmethod
    def _limit_within_tdp(cls, value: float | None, info: ValidationInfo) -> float | None:
        tdp, idle = info.data.get("tdp_W"), info.data.get("idle_W")
        if value is not None and tdp is not None and value > tdp:
            raise ValueError(f"power_limit_W={value} exceeds tdp_W={tdp}; a limit above the rating would not "
                             "raise the datasheet peak (give tdp_W and peak_tflops instead)")
        if value is not None and idle is not None and value < idle:
            raise ValueError(f"power_limit_W={value} is below idle_W={idle}")
        return value


_ENTRY_FIELDS: tuple[str, ...] = tuple(_GPUEntry.model_fields)
_ALLOWED_FIELDS = ", ".join((*_ENTRY_FIELDS, "base"))


class GPUSpec(BaseModel):
    """One accelerator in SI units.

    ``peak_flops`` maps precision -> dense peak FLOP/s without sparsity, only for the precisions the
    part runs (a missing ``tf32`` means TF32 mode runs at the fp32 rate). These are the peaks the
    part sustains at its power limit: for a power-capped part (``rated_tdp_W`` set), the rated
    figures (``rated_peak_flops``) times :attr:`clock_fraction`; otherwise the datasheet figures.
    ``hbm_bytes`` is device memory in bytes (GDDR for cards without HBM), ``hbm_bandwidth_Bps`` its
    bandwidth in bytes/s. ``tdp_W`` is the board power limit the part runs at; ``idle_W`` is an
    engineering estimate for a GPU waiting at normal clocks (see ``gpus.yaml``). ``intra_node_bandwidth_Bps`` is the scale-up bandwidth per
    GPU in ONE direction (NVLink / Infinity Fabric, or PCIe for cards without either).

    Treat instances as read-only: the packaged catalog is cached and shared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Catalog slug, lowercase, e.g. 'h100-sxm'.")
    aliases: tuple[str, ...] = Field((), description="Other names accepted by Catalog.get.")
    vendor: str
    architecture: str = Field(description="GPU architecture, e.g. ampere, hopper (efficiency fits apply per architecture).")
    peak_flops: dict[str, real(0, MAX_TFLOPS * units.TFLOPS, lo_open=True)] = Field(
        description=f"Precision -> dense peak FLOP/s, each in {span(0, MAX_TFLOPS * units.TFLOPS, lo_open=True)}.")
    hbm_bytes: real(0, MAX_HBM_GB * units.GB, lo_open=True) = Field(
        description=f"Device memory, bytes, in {span(0, MAX_HBM_GB * units.GB, lo_open=True)}.")
    hbm_bandwidth_Bps: real(0, MAX_HBM_TBPS * units.TB, lo_open=True) = Field(
        description=f"Device memory bandwidth, bytes/s, in {span(0, MAX_HBM_TBPS * units.TB, lo_open=True)}.")
    tdp_W: _WATTS = Field(description=f"Board power limit as run, W, in {span(0, MAX_W, lo_open=True)}.")
    idle_W: real(0, MAX_W) = Field(description=f"Estimated power while waiting, W, in {span(0, MAX_W)}.")
    rated_tdp_W: _WATTS | None = Field(
        None, description="Board power the datasheet peaks are rated at, W, when the part runs below it "
        f"(a power-capped part), in {span(0, MAX_W, lo_open=True)}; None: tdp_W is the rating.")
    rated_peak_flops: dict[str, real(0, MAX_TFLOPS * units.TFLOPS, lo_open=True)] | None = Field(
        None, description="Precision -> datasheet dense peak FLOP/s at rated_tdp_W, each in "
        f"{span(0, MAX_TFLOPS * units.TFLOPS, lo_open=True)}; None: the same as peak_flops.")
    intra_node_bandwidth_Bps: real(0, MAX_LINK_GBPS * units.GB, lo_open=True) = Field(
        description="Scale-up bandwidth per GPU, one direction, bytes/s, in "
        f"{span(0, MAX_LINK_GBPS * units.GB, lo_open=True)}.")
    mamf_fraction: Fraction | None = Field(
        None, description="Measured maximum achievable bf16 matmul FLOP/s as a fraction of the bf16 dense peak, "
        f"in {_FRACTION}.")
    mamf_fraction_fp8: Fraction | None = Field(
        None, description=f"The same measured in fp8, as a fraction of the fp8 dense peak, in {_FRACTION}.")
    source: str = Field(description="Where the figures come from.")
    notes: str = Field("", description="Caveats, conflicts between sources, what is estimated.")

    @property
    def clock_fraction(self) -> float:
        """Fraction of the rated clock that the part sustains at its power limit: 1 unless it is
        power-capped (:func:`~simulator.hardware.clocks.sustained_clock_fraction`)."""
        if self.rated_tdp_W is None:
            return 1.0
        return sustained_clock_fraction(self.tdp_W, self.rated_tdp_W)

    def rated_peak_flops_for(self, precision: str) -> float:
        """The datasheet dense peak FLOP/s at ``precision``, before any power-cap derate. This is the
        figure MFU conventions divide by (e.g. torchtitan divides by the H100 SXM's 989 TFLOP/s for
        its power-capped H100s). It equals :meth:`peak_flops_for` for a part run at its rating."""
        sustained = self.peak_flops_for(precision)  # validates precision, as there
        if self.rated_peak_flops is None:
            return sustained
        key = precision.strip().lower()
        return self.rated_peak_flops.get(key, self.rated_peak_flops["fp32"])  # tf32 at the fp32 rate

    @property
    def generation(self) -> str:
        """The GPU architecture (``ampere``, ``hopper``, ...): efficiency parameters fitted per
        generation apply to every part of it (an H200 computes like an H100)."""
        return self.architecture

    def matmul_ratio(self, precision: str) -> float:
        """How much nearer its peak a matmul gets at ``precision`` than in bf16, from the measured
        maximum achievable rates (fp8 on an H100: 0.709 / 0.803); 1 where not measured."""
        if precision == "fp8" and self.mamf_fraction and self.mamf_fraction_fp8:
            return self.mamf_fraction_fp8 / self.mamf_fraction
        return 1.0

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions :meth:`peak_flops_for` accepts, in display order (tf32 included via fp32)."""
        return tuple(p for p in PRECISIONS if p in self.peak_flops or (p == "tf32" and "fp32" in self.peak_flops))

    def peak_flops_for(self, precision: str) -> float:
        """Dense peak FLOP/s at ``precision`` (one of ``fp32, tf32, bf16, fp16, fp8``).

        TF32 on a part without TF32 runs at the fp32 rate. There is no other fallback: bf16 on a
        V100, or fp8 on an A100, raises :class:`InputError` naming the GPU and what it supports.
        """
        key = precision.strip().lower() if isinstance(precision, str) else None
        if key in self.peak_flops:
            return self.peak_flops[key]
        if key == "tf32" and "fp32" in self.peak_flops:
            return self.peak_flops["fp32"]
        if key not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}", field="precision")
        supported = [p if p in self.peak_flops else f"{p} (at the fp32 rate)" for p in self.precisions]
        raise InputError(f"{self.name} does not support {key}; it supports {', '.join(supported)}", field="precision")

    @classmethod
    def _from_entry(cls, name: str, entry: _GPUEntry) -> "GPUSpec":
        rated = {p: entry.peak_tflops[p] * units.TFLOPS for p in PRECISIONS if p in entry.peak_tflops}
        capped = entry.power_limit_W is not None and entry.power_limit_W < entry.tdp_W
        fraction = sustained_clock_fraction(entry.power_limit_W, entry.tdp_W) if capped else 1.0
        return cls(
            name=name,
            aliases=tuple(entry.aliases),
            vendor=entry.vendor,
            architecture=entry.architecture,
            peak_flops={p: v * fraction for p, v in rated.items()},
            rated_peak_flops=rated if capped else None,
            hbm_bytes=entry.hbm_GB * units.GB,
            hbm_bandwidth_Bps=entry.hbm_bandwidth_TBps * units.TB,
            tdp_W=entry.power_limit_W if capped else entry.tdp_W,
            rated_tdp_W=entry.tdp_W if capped else None,
            idle_W=entry.idle_W,
            intra_node_bandwidth_Bps=units.GBps_to_Bps(entry.intra_node_bandwidth_GBps),
            mamf_fraction=entry.mamf_fraction,
            mamf_fraction_fp8=entry.mamf_fraction_fp8,
            source=entry.source,
            notes=entry.notes,
        )


class Catalog:
    """A set of :class:`GPUSpec`, looked up by slug or alias, case-insensitively.

    Raises :class:`InputError` (``field="<slug>.aliases"`` or ``"<slug>"``) if two GPUs share a name.
    """

    def __init__(self, specs: Iterable[GPUSpec], *, _entries: Mapping[str, _GPUEntry] | None = None):
        self._specs: dict[str, GPUSpec] = {}
        self._index: dict[str, str] = {}
        for spec in specs:
            self._specs[spec.name] = spec
            for i, label in enumerate((spec.name, *spec.aliases)):
                key = label.strip().lower()
                owner = self._index.setdefault(key, spec.name)
                if owner != spec.name:
                    raise InputError(
                        f"{label!r} already names GPU {owner!r}; every slug and alias must be unique "
                        f"(case-insensitive), pick another name",
                        field=spec.name if i == 0 else f"{spec.name}.aliases",
                    )
        # Input-unit entries, kept so that a later layer's `base:` merges exact file values.
        self._entries: dict[str, _GPUEntry] = dict(_entries or {})

    def get(self, name: str) -> GPUSpec:
        """The GPU called ``name`` (slug or alias, any case); unknown names raise :class:`InputError`."""
        slug = self._resolve(name)
        if slug is None:
            hint = ""
            if isinstance(name, str):
                close = difflib.get_close_matches(name.strip().lower(), list(self._index), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(
                f"unknown GPU {name!r}{hint}; known: {', '.join(self.names())} "
                f"(aliases such as 'A100-SXM4-80GB' are also accepted, case-insensitive)",
                field="gpu",
            )
        return self._specs[slug]

    def names(self) -> list[str]:
        """All slugs, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return self._resolve(name) is not None

    def __iter__(self) -> Iterator[GPUSpec]:
        return (self._specs[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Catalog({', '.join(self.names())})"

    def _resolve(self, name: object) -> str | None:
        if not isinstance(name, str):
            return None
        return self._index.get(name.strip().lower())


def load_catalog(user_file: str | Path | None = None) -> Catalog:
    """The packaged catalog, with the entries of ``user_file`` (same YAML format) layered on top.

    The packaged part is read once per process and cached. Any problem in ``user_file`` raises
    :class:`InputError` with ``file=user_file`` and ``field="<slug>.<field>"``.
    """
    packaged = _packaged_catalog()
    if user_file is None:
        return packaged
    path = Path(user_file)
    raw = read_yaml_file(path, expected="a YAML GPU catalog (format: simulator/hardware/gpus.yaml)")
    return _apply_layer(packaged, raw, file=path)


@lru_cache(maxsize=1)
def _packaged_catalog() -> Catalog:
    text = resources.files(__package__).joinpath("gpus.yaml").read_text(encoding="utf-8")
    return _apply_layer(Catalog(()), parse_yaml(text, file=PACKAGED_FILE), file=PACKAGED_FILE)


# --- layering -----------------------------------------------------------------------------------


def _apply_layer(lower: Catalog, raw: Any, *, file: str | Path) -> Catalog:
    """``lower`` with the entries of one parsed file added or replacing same-slug entries."""
    if raw is None:
        raise InputError("file is empty; expected a mapping of GPU slug -> entry", file=file)
    if not isinstance(raw, dict):
        raise InputError(
            f"expected a mapping of GPU slug -> entry at the top level, got {_type_name(raw)}", file=file
        )
    for slug in raw:
        if not isinstance(slug, str) or not _SLUG_RE.match(slug):
            raise InputError(
                f"GPU slug {slug!r} is not allowed; use lowercase letters, digits and . _ + - "
                f"(starting with a letter or digit), e.g. 'h100-sxm'",
                file=file,
                field=str(slug),
            )

    resolved: dict[str, _GPUEntry] = {}
    for slug in raw:
        _resolve_entry(slug, raw, lower, resolved, chain=(), file=file)

    entries = {**lower._entries, **resolved}
    kept = [spec for spec in lower if spec.name not in resolved]
    new = [GPUSpec._from_entry(slug, resolved[slug]) for slug in raw]
    try:
        return Catalog([*kept, *new], _entries=entries)
    except InputError as exc:
        raise exc.with_file(file) from None


def _resolve_entry(
    slug: str,
    raw: dict[str, Any],
    lower: Catalog,
    resolved: dict[str, _GPUEntry],
    *,
    chain: tuple[str, ...],
    file: str | Path,
) -> _GPUEntry:
    """Validate entry ``slug`` of ``raw``, first resolving its ``base`` (recursively); memoised."""
    if slug in resolved:
        return resolved[slug]
    body = raw[slug]
    if not isinstance(body, dict):
        raise InputError(
            f"expected a mapping of fields ({_ALLOWED_FIELDS}), got {_type_name(body)}", file=file, field=slug
        )

    fields = dict(body)
    if "base" in fields:
        fields = _derive(slug, fields, raw, lower, resolved, chain=chain, file=file)

    try:
        entry = _GPUEntry.model_validate(fields)
    except ValidationError as exc:
        raise from_validation_error(exc, schema=_GPUEntry, file=file, prefix=slug, also_allowed=("base",),
                                    hint="or start from a known GPU with `base: <slug>`") from None
    resolved[slug] = entry
    return entry


def _derive(
    slug: str,
    fields: dict[str, Any],
    raw: dict[str, Any],
    lower: Catalog,
    resolved: dict[str, _GPUEntry],
    *,
    chain: tuple[str, ...],
    file: str | Path,
) -> dict[str, Any]:
    """The fields of entry ``slug`` merged onto those of its ``base``."""
    base_name = fields.pop("base")
    if not isinstance(base_name, str) or not base_name.strip():
        raise InputError(
            f"base must be the slug or alias of a known GPU, got {base_name!r}", file=file, field=f"{slug}.base"
        )
    key = base_name.strip().lower()
    if key in raw and key != slug:
        if key in chain:
            cycle = " -> ".join((*chain, slug, key))
            raise InputError(
                f"base entries form a cycle ({cycle}); one of them must be a full entry", file=file, field=f"{slug}.base"
            )
        base_entry = _resolve_entry(key, raw, lower, resolved, chain=(*chain, slug), file=file)
        base_slug = key
    elif key in lower:
        base_slug = lower.get(key).name
        base_entry = lower._entries[base_slug]
    else:
        known = sorted({*lower.names(), *(k for k in raw if k != slug)})
        raise InputError(
            f"unknown base GPU {base_name!r}; known: {', '.join(known)}", file=file, field=f"{slug}.base"
        )

    merged = base_entry.model_dump()
    if slug != base_slug:
        merged["aliases"] = []
    for name, value in fields.items():
        if name == "peak_tflops" and isinstance(value, dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    if "source" not in fields:
        changed = ", ".join(n for n in fields if n not in ("aliases", "notes")) or "no figures"
        merged["source"] = (
            f"{file}: {slug} = {base_slug} with {changed} changed by the user; other figures: {base_entry.source}"
        )
    return merged


def _type_name(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
