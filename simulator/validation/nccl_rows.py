"""One row of nccl-tests results -> the system NCCL saw and the measurement to compare.

A row of the reference set's ``nccl.csv`` / ``nccl_calibration.csv`` (columns ``case_id,
collective, gpu, n_gpus, n_nodes, gpus_per_node, interconnect, message_bytes, algbw_gbs,
busbw_gbs, time_us, source, notes``) describes its system in words. :func:`parse_row` turns it
into an :class:`NcclRow` (an :class:`~simulator.network.nccl.system.NcclSystem`, the
collective, the size and the measured bus bandwidth) or raises :class:`NotComparable` with the
reason. Every assumption the parser makes for a row is listed in that row's ``notes``.

Rules (``../shared/reference/nccl-model.md`` §3, §4.3, §11):

- **GPU** (``gpu`` column): V100, A100, H100 (SXM, or PCIe when named), H200, B200, GB200,
  MI300X -> the catalog entry (``simulator/hardware/gpus.yaml``) and NCCL's compute capability
  (:data:`~simulator.network.nccl.system.ARCHS`; MI300X (cdna3) uses Hopper's tables, as
  RCCL is not specified).
- **Scale-up** (``interconnect``): NVSwitch (also SXM boards that name only NVLink; said in
  the notes); GB200 NVL72 multi-node NVLink: the NVLink domain (rack) is NCCL's node, so
  ``n_nodes`` = racks and ``gpus_per_node`` = the communicator's GPUs per rack; DGX-1's hybrid
  cube-mesh and MI300X's xGMI as ``mesh``; an NVLink bridge; PCIe. NCCL's NVLink bandwidth =
  links x its per-link constant by sm (§3): V100 6, A100 12, H100 SXM / H200 / B200 / GB200
  18, H100 PCIe bridge 12 links; MI300X 7 x 64 GB/s. PCIe: Gen3 12, Gen4 24, Gen5 48 GB/s.
- **NICs**: ``8x400 Gb/s``, ``2x IB 200 Gb/s``, ``8x ConnectX-6`` (HDR 200), ``4x Mellanox
  HDR``, ``4 NICs per node``; EFA on p5 (``32x100 Gb/s``) as 8 x 400 Gb/s (§4.3: the same
  384 GB/s). Unstated count: one NIC per GPU; unstated rate: :data:`DEFAULT_NIC_GBPS` by
  generation (noted on multi-node rows).
- **Transport**: EFA, GPUDirect-TCPXO, -TCPX, RoCE (also Ethernet ``GbE``, GCP gIB and OCI's
  RDMA cluster network, which is RoCE v2), InfiniBand (IB, HDR, NDR, Quantum), sockets.
- **Plugin latency** (aws-ofi-nccl, §3): p4d/p4de/p5/p5e 75 µs, p5en/p6 35, p3dn 150, other
  EFA 75; 0 otherwise.
- **CPU**: AMD only when the row says so (EPYC / AMD CPU); Grace (GB200) is ``arm``; else Intel.
- **SHARP/CollNet** when the interconnect says SHARP (and not "no SHARP").
- **NCCL version** from the text (``NCCL 2.27.3``, ``NCCL v2.9.9-1``; NGC PyTorch 24.04 ships
  2.21); else 2.27 up to Hopper, 2.28 for Blackwell (§11). Versions below the tables' oldest
  (2.18) are simulated with 2.18, Blackwell rows of NCCL < 2.28 with 2.28 (§11: the older NVLS
  formula overestimates Blackwell); both noted.
- **Forced** ``NCCL_ALGO`` / ``NCCL_PROTO`` from the interconnect or notes.
- **Measurement**: busbw recomputed from ``time_us`` when the row is a single point (the
  printed busbw is rounded to 0.01 GB/s); else the printed ``busbw_gbs``, ``~480`` as 480,
  ``365-370`` as its midpoint. A size range or ``<=X`` (one figure for a sweep) is evaluated at
  its upper end (a sweep's quoted bandwidth is its large-size plateau); a blank size at
  :data:`PLATEAU_BYTES`; a GPU-count range at both ends (the prediction is their mean).
  Not comparable: a value that is not one figure (``96 (peak); 84.8 (avg)``), a maintainer's
  or vendor's expected value, an unknown GPU or collective.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from simulator.network.nccl import tables
from simulator.network.nccl.system import ARCHS, NcclSystem

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "send_recv")
"""Collectives the tuner knows (nccl-tests names without ``_perf``)."""

NVL72_GPUS = 72
"""GPUs of one GB200 NVL72 NVLink domain (rack)."""

PLATEAU_BYTES = float(4 << 30)
"""Size at which a row that quotes one bandwidth without a size is evaluated, bytes."""

DEFAULT_NIC_GBPS = {"volta": 100, "ampere": 200, "hopper": 400, "blackwell": 400}
"""NIC line rate assumed when a multi-node row does not state it, Gb/s (one NIC per GPU):
the common rail NIC of each generation (ConnectX-5 100 GbE, -6 HDR, -7 NDR)."""

DEFAULT_VERSION = {"volta": "2.27", "ampere": "2.27", "hopper": "2.27", "blackwell": "2.28"}
"""NCCL version when a row states none (nccl-model.md §11)."""

OLDEST_VERSION, NEWEST_VERSION = (2, 18), (2, 30)
"""The versions NCCL's tables (``tables.yaml``) cover."""
BLACKWELL_VERSION = (2, 28)
"""The oldest tables used for Blackwell: nccl-model.md §11 ("Use the 2.28+ formula for Blackwell"; v2.27's
NVLS formula gives 933 GB/s on 8 x B200 against 704 measured)."""

_GPUS: tuple[tuple[str, str, str, int, float], ...] = (
    # (name pattern, catalog entry, generation, NVLink links, PCIe GT/s of its x16 host link)
    (r"GB200", "gb200", "blackwell", 18, 32),
    (r"B200", "b200", "blackwell", 18, 32),
    (r"H200", "h200", "hopper", 18, 32),
    (r"H100.*PCIe", "h100-pcie", "hopper", 12, 32),
    (r"H100", "h100-sxm", "hopper", 18, 32),
    (r"A100.*40\s*GB", "a100-40gb", "ampere", 12, 16),
    (r"A100", "a100-80gb", "ampere", 12, 16),
    (r"V100.*16\s*GB", "v100-16gb", "volta", 6, 8),
    (r"V100", "v100-32gb", "volta", 6, 8),
    (r"MI300X", "mi300x", "hopper", 7, 32),
)
MI300X_LINK_GBPS = 64.0
"""MI300X Infinity Fabric per link and direction, GB/s (catalog ``mi300x``)."""

_ALGOS = {"ring": "ring", "tree": "tree", "nvls": "nvls", "nvlstree": "nvls_tree", "nvls_tree": "nvls_tree",
          "collnet": "collnet_direct", "collnetdirect": "collnet_direct", "collnet_direct": "collnet_direct",
          "collnetchain": "collnet_chain", "collnet_chain": "collnet_chain", "pat": "pat"}
_PROTOS = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}
_EFA_PLATFORMS = (("p3dn", "p3dn"), ("p4de", "p4de"), ("p4dn", "p4d"), ("p4d", "p4d"), ("p5en", "p5en"),
                  ("p5e", "p5e"), ("p5", "p5"), ("p6-b300", "p6-b300"), ("p6", "p6-b200"))
"""EC2 names in the rows -> aws-ofi-nccl's platform (``p4dn`` is a common misspelling of p4d)."""


class NotComparable(Exception):
    """A row that cannot be compared; the message is the reason."""


@dataclass(frozen=True)
class NcclRow:
    """One comparable nccl-tests row.

    Attributes:
        case_id: the row's id.
        system: what NCCL saw (at the upper end of a GPU-count range).
        kind: collective (:data:`KINDS`).
        n_ranks: ranks of ``system``.
        nbytes: the nccl-tests size S evaluated, bytes.
        measured_busbw_GBps: measured bus bandwidth, GB/s.
        algorithm, protocol: forced by NCCL_ALGO / NCCL_PROTO, else None (NCCL's choice).
        gpu: catalog entry of the GPU.
        source: the source key (repository@commit or issue), for weighting fits.
        notes: the parser's assumptions for this row.
        points: every (system, nbytes) the prediction averages (one, or both ends of a
            GPU-count range).
    """

    case_id: str
    system: NcclSystem
    kind: str
    n_ranks: int
    nbytes: float
    measured_busbw_GBps: float
    algorithm: str | None
    protocol: str | None
    gpu: str
    source: str
    notes: tuple[str, ...] = ()
    points: tuple[tuple[NcclSystem, float], ...] = field(default=())


# --------------------------------------------------------------------------- small parsers


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""


def int_or_range(v: Any, what: str) -> tuple[int, int]:
    """(lo, hi) of ``123``, ``lo-hi`` or ``<=hi`` (lo = 0); NotComparable otherwise."""
    if _blank(v):
        raise NotComparable(f"{what} not given")
    s = str(v).strip()
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
    if m:
        return int(m[1]), int(m[2])
    m = re.fullmatch(r"<=\s*(\d+)", s)
    if m:
        return 0, int(m[1])
    if re.fullmatch(r"\d+(\.0+)?", s):
        return int(float(s)), int(float(s))
    raise NotComparable(f"{what} {s!r} is not a number or a closed range")


def value(v: Any, what: str) -> tuple[float, str]:
    """(value, note) of ``480``, ``~480`` (approximate) or ``365-370`` (midpoint)."""
    if _blank(v):
        raise NotComparable(f"{what} not given")
    s = str(v).strip()
    if re.fullmatch(r"\d+(\.\d*)?", s):
        return float(s), ""
    m = re.fullmatch(r"~\s*(\d+(?:\.\d*)?)", s)
    if m:
        return float(m[1]), f"{what} approximate ({s})"
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)", s)
    if m:
        return (float(m[1]) + float(m[2])) / 2, f"{what} given as range {s}: midpoint used"
    raise NotComparable(f"{what} {s!r} is not a single figure (a summary of a sweep or several values)")


def bus_factor(kind: str, n: int) -> float:
    """nccl-tests' busbw / algbw: 2(n-1)/n all-reduce; (n-1)/n all-gather, reduce-scatter,
    all-to-all; 1 otherwise."""
    if kind == "all_reduce":
        return 2.0 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def source_key(source: str) -> str:
    """The source a row came from, without location details: ``owner/repo@commit`` or
    ``owner/repo#issue`` (a leading ``github`` dropped)."""
    s = str(source).strip()
    s = re.sub(r"^github\s+", "", s)
    return s.split()[0] if s else "unknown"


def _version(text: str, generation: str, notes: list[str]) -> str:
    m = re.search(r"\bNCCL[ _-]?v?(\d+)\.(\d+)", text) or re.search(r"issue title names (\d+)\.(\d+)", text)
    if m:
        ver = (int(m[1]), int(m[2]))
        stated = f"{ver[0]}.{ver[1]}"
    elif re.search(r"pytorch:24\.04", text):
        ver, stated = (2, 21), "2.21"
        notes.append("NCCL 2.21 (the NGC PyTorch 24.04 container's)")
    else:
        v = DEFAULT_VERSION[generation]
        notes.append(f"NCCL version not stated: {v} assumed")
        return v
    if generation == "blackwell" and ver < BLACKWELL_VERSION:
        v = f"{BLACKWELL_VERSION[0]}.{BLACKWELL_VERSION[1]}"
        notes.append(f"NCCL {stated} on Blackwell simulated with {v}'s tables (nccl-model.md §11: the older NVLS "
                     "formula overestimates Blackwell)")
        return v
    if ver < OLDEST_VERSION:
        v = f"{OLDEST_VERSION[0]}.{OLDEST_VERSION[1]}"
        notes.append(f"NCCL {stated} is older than the tables: simulated as {v}")
        return v
    if ver > NEWEST_VERSION:
        return f"{NEWEST_VERSION[0]}.{NEWEST_VERSION[1]}"
    return stated


def _forced(text: str) -> tuple[str | None, str | None]:
    """The algorithm and protocol ``NCCL_ALGO`` / ``NCCL_PROTO`` force in ``text`` (None: not forced)."""
    return (_forced_name(text, "ALGO", r"[A-Za-z_]+", _ALGOS, "an algorithm"),
            _forced_name(text, "PROTO", r"[A-Za-z0-9]+", _PROTOS, "a protocol"))


def _forced_name(text: str, variable: str, pattern: str, names: dict[str, str], what: str) -> str | None:
    m = re.search(rf"NCCL_{variable}\s*=\s*({pattern})", text)
    if not m:
        return None
    if m[1].lower() not in names:
        raise NotComparable(f"NCCL_{variable}={m[1]} is not {what} of the tuner")
    return names[m[1].lower()]


def _transport(text: str) -> str | None:
    for pattern, name in ((r"EFA", "efa"), (r"TCPXO", "tcpxo"), (r"TCPX", "tcpx"),
                          (r"RoCE|GbE|gIB|RDMA cluster network", "roce"),
                          (r"InfiniBand|\bIB\b|\bHDR\b|\bNDR\b|\bXDR\b|Quantum", "ib"),
                          (r"socket|\bTCP\b", "socket")):
        if re.search(pattern, text):
            return name
    return None


def _nics(interconnect: str, transport: str | None) -> tuple[int | None, float | None]:
    """(count, Gb/s) stated in the interconnect text; None where not stated."""
    m = re.search(r"(\d+)\s*x\s*(?:IB\s+)?(\d+)\s*(?:Gb/s|Gbps|GbE|G\b)", interconnect)
    if m:
        count, rate = int(m[1]), float(m[2])
        if transport == "efa" and count > 8:
            # p5: 32 x 100 Gb/s EFA = 8 x 400 for NCCL (nccl-model.md §4.3)
            return 8, count * rate / 8
        return count, rate
    m = re.search(r"(\d+)\s*x\s*(?:Mellanox\s+)?(HDR|NDR|XDR|ConnectX-(\d))", interconnect)
    if m:
        kind = m[2]
        rate = {"HDR": 200.0, "NDR": 400.0, "XDR": 800.0}.get(kind)
        if rate is None:
            rate = {5: 100.0, 6: 200.0, 7: 400.0, 8: 800.0}.get(int(m[3]))
        return int(m[1]), rate
    m = re.search(r"(\d+)\s*NICs?\b", interconnect)
    if m:
        return int(m[1]), None
    return None, None


def _plugin_latency_us(text: str, transport: str) -> tuple[float, str]:
    if transport != "efa":
        return 0.0, ""
    for name, platform in _EFA_PLATFORMS:
        if re.search(rf"\b{name}", text):
            lat = tables.plugin_latency_us(platform)
            return lat, f"aws-ofi-nccl latency {lat:g} us ({platform})"
    lat = tables.plugin_latency_us("efa_default")
    return lat, f"aws-ofi-nccl latency {lat:g} us (platform not named: its default)"


# --------------------------------------------------------------------------- the row


def _gpu(gpu: str) -> tuple[str, str, int, float]:
    for pattern, catalog, generation, links, pcie in _GPUS:
        if re.search(pattern, gpu):
            return catalog, generation, links, pcie
    raise NotComparable(f"GPU {gpu!r} not recognised (known: V100, A100, H100, H200, B200, GB200, MI300X)")


def build_system(row: Mapping[str, Any], n_ranks: int, notes: list[str]) -> NcclSystem:
    """The :class:`NcclSystem` of ``row`` for a communicator of ``n_ranks`` GPUs; appends the
    assumptions made to ``notes``."""
    gpu_text = str(row.get("gpu", ""))
    inter = str(row.get("interconnect", ""))
    text = " ".join(str(row.get(k, "")) for k in ("gpu", "interconnect", "notes", "source"))
    catalog, generation, links, pcie = _gpu(gpu_text)
    sm = ARCHS[generation]
    amd_gpu = catalog == "mi300x"
    if amd_gpu:
        notes.append("RCCL on MI300X modelled with NCCL's Hopper tables")

    # ranks per node as NCCL sees them
    mnnvl = bool(re.search(r"MNNVL|NVL72", inter + " " + gpu_text))
    if mnnvl:
        n_nodes = max(1, math.ceil(n_ranks / NVL72_GPUS))
        g = n_ranks // n_nodes
        notes.append(f"NVL72: the NVLink domain is NCCL's node ({n_nodes} x {g} GPUs)")
    else:
        n_nodes_text = str(row.get("n_nodes", "")).strip()
        gpn = str(row.get("gpus_per_node", "")).strip()
        if re.fullmatch(r"\d+", gpn) and int(gpn) > 0 and n_ranks % int(gpn) == 0:
            g = int(gpn)
            n_nodes = n_ranks // g
        elif re.fullmatch(r"\d+", n_nodes_text) and int(n_nodes_text) > 0:
            n_nodes = int(n_nodes_text)
            g = n_ranks // n_nodes
        else:  # gpus_per_node a range (a GPU-count sweep on one node)
            n_nodes, g = 1, n_ranks
    # scale-up
    if mnnvl or re.search(r"NVSwitch", inter):
        scale_up = "nvswitch"
    elif re.search(r"cube-mesh", inter):
        scale_up = "mesh"
        notes.append("DGX-1 hybrid cube-mesh modelled as a mesh of the GPU's 6 NVLink2 links")
    elif re.search(r"Infinity Fabric|xGMI", inter) or amd_gpu:
        scale_up = "mesh"
    elif re.search(r"NVLink bridge", inter, re.I):
        scale_up = "nvlink_bridge"
    elif catalog == "h100-pcie" or re.search(r"\bPCIe\b", inter):
        scale_up = "pcie"
    else:
        scale_up = "nvswitch"
        if g > 1:
            notes.append("NVSwitch assumed (SXM board; the row names NVLink only)")
    if scale_up == "pcie":
        nvlink = 0.0
    elif amd_gpu:
        nvlink = links * MI300X_LINK_GBPS
    else:
        nvlink = links * tables.nvlink_per_link_GBps(sm)
    # network
    transport = _transport(inter) or "ib"
    count, rate = _nics(inter, transport)
    multi = n_nodes > 1
    if count is None:
        count = g if not mnnvl else g
        if multi:
            notes.append(f"NIC count not stated: one per GPU ({count})")
    if rate is None:
        rate = float(DEFAULT_NIC_GBPS[generation])
        if multi:
            notes.append(f"NIC rate not stated: {rate:g} Gb/s assumed ({generation})")
    if multi and _transport(inter) is None:
        notes.append("transport not stated: InfiniBand assumed")
    latency, lat_note = _plugin_latency_us(text, transport)
    if lat_note and multi:
        notes.append(lat_note)
    if re.search(r"EPYC|AMD CPU", text):
        cpu = "amd"
    elif catalog == "gb200":
        cpu = "arm"
    else:
        cpu = "intel"
    collnet = bool(re.search(r"SHARP", inter)) and not re.search(r"no SHARP", text)
    multicast = scale_up == "nvswitch" and sm >= 90 and not amd_gpu
    version = _version(text, generation, notes)
    return NcclSystem(sm=sm, n_nodes=n_nodes, gpus_per_node=g, scale_up=scale_up, nvlink_GBps=nvlink,
                      pcie_GBps=tables.pcie_GBps(pcie, 16), nics_per_node=count, nic_GBps=tables.nic_GBps(rate * 1000), transport=transport,
                      latency_inter_us=latency, cpu=cpu, multicast=multicast, collnet=collnet, version=version)


def _measured(row: Mapping[str, Any], kind: str, n: int, nbytes: float, single: bool,
              notes: list[str]) -> float:
    """Measured busbw, GB/s: from time_us for a single point, else the printed figure."""
    if single and not _blank(row.get("time_us")):
        try:
            t_us = float(str(row["time_us"]).strip())
        except ValueError:
            t_us = float("nan")
        if math.isfinite(t_us) and t_us > 0:
            return nbytes / (t_us * 1e-6) * bus_factor(kind, n) / 1e9
    busbw, note = value(row.get("busbw_gbs"), "busbw")
    if note:
        notes.append(note)
    return busbw


def parse_row(row: Mapping[str, Any]) -> NcclRow:
    """The comparable content of one nccl-tests row; raises :class:`NotComparable`."""
    notes: list[str] = []
    kind = str(row.get("collective", "")).strip()
    if kind not in KINDS:
        raise NotComparable(f"collective {kind!r} unknown (known: {', '.join(KINDS)})")
    row_notes = str(row.get("notes", ""))
    low = row_notes.lower()
    if "expected value" in low and "not a pasted measurement" in low:
        raise NotComparable("an expected value stated by a maintainer, not a measurement")
    if "not one run" in low:
        raise NotComparable("a vendor's expected baseline, not one run")
    n_lo, n_hi = int_or_range(row.get("n_gpus"), "n_gpus")
    size_text = str(row.get("message_bytes", "")).strip()
    if _blank(size_text):
        s_lo = s_hi = PLATEAU_BYTES
        notes.append(f"no message size: evaluated at {PLATEAU_BYTES / (1 << 30):g} GiB (large-size plateau)")
    else:
        s_lo, s_hi = int_or_range(size_text, "message size")
        if s_lo != s_hi:
            notes.append(f"one figure for sizes {size_text}: evaluated at the upper end")
    nbytes = float(s_hi)
    single = n_lo == n_hi and s_lo == s_hi and not _blank(size_text)
    measured = _measured(row, kind, n_hi, nbytes, single, notes)
    if not measured > 0:
        raise NotComparable(f"measured busbw {measured:g} is not positive")
    text = " ".join(str(row.get(k, "")) for k in ("interconnect", "notes"))
    algorithm, protocol = _forced(text)
    points = []
    for n in sorted({n_lo, n_hi}):
        if n < 2:
            raise NotComparable(f"n_gpus {n}: a collective needs two ranks")
        points.append((build_system(row, n, notes if n == n_hi else []), nbytes))
    if n_lo != n_hi:
        notes.append(f"GPU counts {n_lo}-{n_hi}: mean of the predictions at both ends")
    system = points[-1][0]
    return NcclRow(case_id=str(row.get("case_id", "")), system=system, kind=kind, n_ranks=system.n_ranks,
                   nbytes=nbytes, measured_busbw_GBps=measured, algorithm=algorithm, protocol=protocol,
                   gpu=_gpu(str(row.get("gpu", "")))[0], source=source_key(str(row.get("source", ""))),
                   notes=tuple(dict.fromkeys(notes)), points=tuple(points))
