"""NCCL's constants for one version, loaded from ``tables.yaml``.

``tables.yaml`` holds every constant of the model with its NCCL source line and the versions
it applies to (``by_version`` blocks with inclusive ``from``/``until``). :func:`for_version`
resolves the file for one ``"2.xx"`` version into a frozen :class:`Tables`; both the raw file
and each resolved version are cached.

Units: GB/s and µs, as NCCL. Per-protocol triples are ordered (LL, LL128, Simple); rows by GPU
generation are indexed by :func:`generation`; "by nodes" triples by :func:`node_column`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from simulator.core.errors import InputError

PROTOCOL_INDEX = {"LL": 0, "LL128": 1, "Simple": 2}
GENERATIONS = ("volta", "ampere", "hopper", "blackwell")


def generation(sm: int) -> str:
    """NCCL's table row for compute capability ``sm`` (x10): cc >= 100, >= 90, >= 80, else volta."""
    if sm >= 100:
        return "blackwell"
    if sm >= 90:
        return "hopper"
    if sm >= 80:
        return "ampere"
    return "volta"


def node_column(n_nodes: int) -> int:
    """Column of a (1 node, 2 nodes, > 2 nodes) triple."""
    return 0 if n_nodes <= 1 else 1 if n_nodes == 2 else 2


def version_key(version: str) -> tuple[int, int]:
    """``"2.27"`` -> (2, 27)."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@functools.lru_cache(maxsize=1)
def _raw() -> Mapping[str, Any]:
    text = resources.files("simulator.network.nccl").joinpath("tables.yaml").read_text()
    return yaml.safe_load(text)


def supported_versions() -> tuple[str, ...]:
    """The NCCL versions the tables cover, oldest first."""
    return tuple(_raw()["versions"]["supported"])


def _in_range(entry: Mapping[str, Any], key: tuple[int, int]) -> bool:
    low = entry.get("from")
    high = entry.get("until")
    return (low is None or version_key(low) <= key) and (high is None or key <= version_key(high))


def _resolve(node: Any, key: tuple[int, int]) -> Any:
    """``node`` with every ``by_version`` block replaced by its value at ``key``, ``source`` dropped."""
    if isinstance(node, dict):
        if "by_version" in node:
            matches = [e["value"] for e in node["by_version"] if _in_range(e, key)]
            if len(matches) != 1:
                raise ValueError(f"tables.yaml: {len(matches)} by_version entries match {key}")
            return _resolve(matches[0], key)
        return {k: _resolve(v, key) for k, v in node.items() if not str(k).startswith("source")}
    if isinstance(node, list):
        return tuple(_resolve(v, key) for v in node)
    return node


def _frozen(node: Any) -> Any:
    if isinstance(node, dict):
        return MappingProxyType({k: _frozen(v) for k, v in node.items()})
    if isinstance(node, tuple):
        return tuple(_frozen(v) for v in node)
    return node


@dataclass(frozen=True)
class Tables:
    """NCCL's constants at one version (sections of ``tables.yaml``, version-resolved).

    Attributes:
        version: ``"2.xx"``.
        links, plugin_latency_us, search, runtime_channels, latency, bandwidth, selection, p2p:
            read-only mappings, one per top-level section of ``tables.yaml``.
    """

    version: str
    links: Mapping[str, Any]
    plugin_latency_us: Mapping[str, float]
    search: Mapping[str, Any]
    runtime_channels: Mapping[str, Any]
    latency: Mapping[str, Any]
    bandwidth: Mapping[str, Any]
    selection: Mapping[str, Any]
    p2p: Mapping[str, Any]

    def speeds(self, sm: int, with_nic: bool) -> tuple[float, ...]:
        """§4.1 speed array (GB/s per channel, descending) for ``sm``, with or without a NIC."""
        return self.search["speeds_inter" if with_nic else "speeds_intra"][generation(sm)]

    def base_lat(self, algorithm: str, protocol: str) -> float:
        """§5.1 ``baseLat`` of (algorithm, protocol), µs."""
        return self.latency["base_us"][algorithm][PROTOCOL_INDEX[protocol]]

    def hw_lat(self, hardware: str, algorithm: str, protocol: str) -> float:
        """§5.1 ``hwLat`` per step on ``hardware`` ("nvlink", "pci", "net"), µs."""
        return self.latency["hw_us"][hardware][algorithm][PROTOCOL_INDEX[protocol]]

    def net_overhead_us(self, cpu: str) -> float:
        """§5.1 network post overhead of the host CPU, µs."""
        return self.latency["net_overhead_us"]["value"][cpu]

    def cap(self, table: str, sm: int, n_nodes: int) -> float:
        """A §5.2 cap (``per_ch_max_*_GBps`` per channel, or ``ll_max_GBps`` total), GB/s.

        ``ll_max_GBps`` is indexed by GPU generation on one node and by CPU row across nodes;
        use :meth:`ll_max` for it.
        """
        return self.bandwidth[table][generation(sm)][node_column(n_nodes)]

    def ll_max(self, sm: int, n_nodes: int, cpu: str) -> float:
        """§5.2 ``llMaxBws`` (total GB/s): by GPU on one node, by CPU (Intel/ARM row 0, AMD row 1) across."""
        row = generation(sm) if n_nodes <= 1 else ("ampere" if cpu == "amd" else "volta")
        return self.bandwidth["ll_max_GBps"][row][node_column(n_nodes)]

    def nvls_efficiency(self, sm: int) -> float:
        """[2.28+] ``nvlsEfficiency`` (0 = the v2.27 NVLS formula)."""
        return self.bandwidth["nvls_efficiency"][generation(sm)]

    def tree_correction(self, protocol: str, nbytes: float) -> float:
        """§6.3 ``treeCorrectionFactor[protocol][floor(log2(S/64))]``; 1 outside the table."""
        if nbytes < 64:
            return 1.0
        index = int(math.floor(math.log2(nbytes / 64)))
        table = self.bandwidth["tree_correction"][protocol]
        return table[index] if 0 <= index < len(table) else 1.0

    def at_least(self, version: str) -> bool:
        """True if this table's version is ``version`` or later."""
        return version_key(self.version) >= version_key(version)


def check_version(version: str) -> str:
    """``version`` if the tables cover it, else :class:`InputError` (field ``nccl_version``)."""
    allowed = supported_versions()
    if version not in allowed:
        raise InputError(
            f"NCCL version {version!r} is not modelled; use one of {', '.join(allowed)}",
            field="nccl_version",
        )
    return version


@functools.lru_cache(maxsize=None)
def for_version(version: str) -> Tables:
    """The constants of NCCL ``version`` (``"2.18"`` ... ``"2.30"``); InputError otherwise."""
    check_version(version)
    resolved = _resolve({k: v for k, v in _raw().items() if k != "versions"}, version_key(version))
    fields = {k: _frozen(resolved[k]) for k in Tables.__dataclass_fields__ if k != "version"}
    fields["plugin_latency_us"] = fields["plugin_latency_us"]["value"]
    return Tables(version=version, **fields)


def nvlink_per_link_GBps(sm: int) -> float:
    """§3 NCCL's bandwidth of one NVLink for compute capability ``sm`` (largest listed cc <= sm), GB/s."""
    table = _raw()["links"]["nvlink_per_link_GBps"]["value"]
    keys = [cc for cc in table if cc <= sm]
    return float(table[max(keys)]) if keys else float(table[min(table)])


def pcie_GBps(speed_GTps: float, width: int) -> float:
    """§3 NCCL's PCIe bandwidth, width x per-lane speed / 80 (Gen4 x16 = 24 GB/s)."""
    block = _raw()["links"]["pcie_per_lane"]
    return width * block["speed_by_GTps"][speed_GTps] / block["divisor"]


def nic_GBps(speed_mbps: float | None) -> float:
    """§3 NCCL's NIC bandwidth, reported Mb/s / 8000 (400 Gb/s -> 50 GB/s); unknown -> 10 Gb/s."""
    block = _raw()["links"]
    mbps = speed_mbps if speed_mbps else block["nic"]["unknown_speed_Gbps"] * 1000
    return mbps / block["nic"]["mbps_per_GBps"]


def plugin_latency_us(platform: str) -> float:
    """§3 network plugin latency (``graph->latencyInter``), µs: ib/roce 0; aws-ofi-nccl by EC2
    platform (``p4d``, ``p5``, ``p5en``, ``p6-b200`` ...), other EFA platforms 75."""
    table = _raw()["plugin_latency_us"]["value"]
    return float(table.get(platform, table["efa_default"]))
