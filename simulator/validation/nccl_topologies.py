"""The topologies of the nccl-tests comparison, and which one describes a measured row.

:data:`TOPOLOGY_RULES` maps a row of the reference set's ``nccl.csv`` to a topology:
a bundled file when one describes the system, else one of :data:`EXTRA_TOPOLOGIES`,
topology-file data built here from the reference figures (each figure cites its row
of ``systems.csv`` / ``gpus.csv``; figures the reference set lacks are marked
estimates). Units are those of the topology file (GB/s, Gbit/s, microseconds, watts).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import yaml

from simulator.network.topology import Topology, build_topology, load_topology
from simulator.network.topology_file import TopologyFile, parse_topology_file

EXTRA_TOPOLOGIES: dict[str, dict] = {
    # GCP A3 Mega: 8x H100 per VM, NVLink 4 through NVSwitch, 8 GPUDirect-TCPXO NICs.
    "gcp-a3-mega": {
        "name": "GCP A3 Mega (8x H100, 8x 200 Gb/s GPUDirect-TCPXO)",
        "source": "systems.csv gcp_a3mega (stas00/ml-engineering@744d01e1 network/README.md, citing GCP "
        "GPUDirect-TCPX docs); gpus.csv H100-SXM5-80GB. Fabric and latencies: estimates.",
        "gpu": "h100-sxm",
        "node": {
            "gpus": 8,  # systems.csv gcp_a3mega: gpus = 8
            "scale_up": {
                "kind": "nvswitch",
                # systems.csv gcp_a3mega: nvlink_per_gpu_gbs_bidir 900 -> 450 GB/s one direction
                # (gpus.csv H100-SXM5-80GB notes: '18 links, 450 GB/s per direction').
                "bandwidth_GBps": 450,
                # Estimate, the same prior as topologies/dgx-h100-superpod.yaml (NVSwitch hop).
                "latency_us": 1.0,
            },
            "nics": 8,  # systems.csv gcp_a3mega: compute_nics '8x GPUDirect-TCPXO NICs'
            "nic_bandwidth_Gbps": 200,  # systems.csv gcp_a3mega: compute_nic_gbps 200
            # Estimate, not fitted to nccl.csv: TCPXO is a TCP transport with a receive-side
            # data path offload, not RDMA; taken as 5 us per NIC traversal (vs 1.5 us for the
            # InfiniBand NICs of the bundled DGX files). No figure in the reference set.
            "nic_latency_us": 5.0,
            # gpus.csv H100-SXM5-80GB: PCIe Gen5 x16, 128 GB/s both directions -> 64 per direction.
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            # Estimate: GCP does not describe its fabric in the reference set; two VMs are
            # modelled as one non-blocking switch (the busbw of 2 nodes does not depend on it).
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 2, "max_nodes": 2, "grow": False,
            "switch_latency_us": 1.0,  # estimate (data-centre Ethernet, possibly several hops)
            "switch_ports": 16, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # One H100 per node with 4 RoCE NICs (nccl.csv iss232_*: '4 NICs per node (RoCE, GID 3)').
    "h100-1gpu-4nic-roce": {
        "name": "1x H100 per node, 4x 400 Gb/s RoCE NICs",
        "source": "nccl.csv iss232 rows (1 GPU per node, 4 NICs); gpus.csv H100-SXM5-80GB; "
        "systems.csv sys_dgx_h100 (NIC rate). Fabric and latencies: estimates.",
        "gpu": "h100-sxm",
        "node": {
            "gpus": 1,  # nccl.csv iss232_*: gpus_per_node 1
            "scale_up": {
                "kind": "nvswitch",
                # gpus.csv H100-SXM5-80GB: 450 GB/s per direction (unused: one GPU per node).
                "bandwidth_GBps": 450,
                "latency_us": 1.0,  # estimate (unused: one GPU per node)
            },
            # 4 NICs for 1 GPU, described as one NIC of 4x the rate (topology.py: nics must
            # divide gpus). Rate per NIC 400 Gb/s: ConnectX-7 class, systems.csv sys_dgx_h100
            # compute_nic_gbps 400 (the row's note 'user expected 200' GB/s = 4 x 400 Gb/s agrees).
            "nics": 1,
            "nic_bandwidth_Gbps": 1600,
            "nic_latency_us": 1.5,  # estimate, the prior of the bundled DGX files (RDMA NIC)
            # gpus.csv H100-SXM5-80GB: PCIe Gen5 x16, 128 GB/s both directions -> 64 per direction;
            # the GPU's one x16 link carries its traffic to all four NICs.
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 2, "max_nodes": 2, "grow": False,
            "switch_latency_us": 0.6,  # estimate: cut-through Ethernet switch
            "switch_ports": 64, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # Two H100 PCIe cards joined by NVLink bridges (nccl.csv iss1161_*: 'NVLink bridge').
    "h100-pcie-nvlink-bridge": {
        "name": "2x H100 PCIe with NVLink bridge",
        "source": "gpus.csv H100-PCIe-80GB (nvlink_gbps_bidir_per_gpu '600 (NVLink bridge)'); "
        "nccl.csv iss1161 rows (2 GPUs, one node). Latencies: estimates.",
        "gpu": "h100-pcie",
        "node": {
            "gpus": 2,  # nccl.csv iss1161_*: n_gpus 2, gpus_per_node 2
            "scale_up": {
                # A bridge is a point-to-point NVLink; with two GPUs a 'switch' whose per-GPU
                # edges have the bridge bandwidth gives the same GPU-to-GPU path bandwidth.
                "kind": "nvswitch",
                # gpus.csv H100-PCIe-80GB: NVLink bridge 600 GB/s both directions -> 300 per direction.
                "bandwidth_GBps": 300,
                "latency_us": 1.0,  # estimate, the H100 NVLink prior of dgx-h100-superpod.yaml
            },
            "nics": 1,
            "nic_bandwidth_Gbps": 200,  # estimate (unused: one node)
            "nic_latency_us": 1.5,  # estimate (unused: one node)
            # gpus.csv H100-PCIe-80GB: PCIe Gen5 x16, 128 GB/s -> 64 per direction (unused: one node).
            "pcie_bandwidth_GBps": 64,
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 1, "max_nodes": 1, "grow": False,
            "switch_latency_us": 0.6, "switch_ports": 64, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
    # DGX-A100-like node with only 2 compute NICs (nccl.csv iss837_*: '2x IB 200 Gb/s per node').
    "a100-2nic-hdr": {
        "name": "8x A100 NVSwitch, 2x HDR 200 Gb/s per node",
        "source": "systems.csv sys_dgx_a100 (node); nccl.csv iss837 rows (2 NICs per node); "
        "systems.csv ib_gen_rates (HDR 200 Gb/s); gpus.csv A100-SXM4-80GB. Latencies: estimates.",
        "gpu": "a100-80gb",
        "node": {
            "gpus": 8,  # systems.csv sys_dgx_a100: gpus 8
            "scale_up": {
                "kind": "nvswitch",
                # systems.csv sys_dgx_a100: nvlink_per_gpu_gbs_bidir 600 -> 300 per direction.
                "bandwidth_GBps": 300,
                "latency_us": 2.0,  # estimate, the prior of dgx-a100-superpod.yaml
            },
            "nics": 2,  # nccl.csv iss837_*: '2x IB 200 Gb/s per node'
            "nic_bandwidth_Gbps": 200,  # same; HDR 4x port = 200 Gb/s [systems.csv ib_gen_rates]
            "nic_latency_us": 1.5,  # estimate, the prior of the bundled DGX files
            "pcie_bandwidth_GBps": 32,  # gpus.csv A100-SXM4-40GB: PCIe Gen4 x16 (32+32 GB/s)
            "power_W": 0,
            "power_source": "estimate: not used by the nccl validation (bandwidth only)",
        },
        "fabric": {
            "kind": "fat_tree", "tiers": 1, "nodes_per_unit": 4, "max_nodes": 4, "grow": False,
            "switch_latency_us": 0.3,  # estimate, the HDR prior of dgx-a100-superpod.yaml
            "switch_ports": 40, "switch_power_W": 0,
            "switch_power_source": "estimate: not used by the nccl validation",
        },
    },
}
"""Topologies for rows no bundled file describes, as topology-file data (validated by
:func:`simulator.network.topology_file.parse_topology_file` when built)."""


def topology_spec(key: str) -> TopologyFile:
    """The validated :class:`TopologyFile` of :data:`EXTRA_TOPOLOGIES` ``[key]``.

    Raises :class:`KeyError` for an unknown key and :class:`InputError` if the data
    breaks the topology schema.
    """
    return parse_topology_file(yaml.safe_dump(EXTRA_TOPOLOGIES[key]), f"<nccl_validation:{key}>")


def comparison_topology(key: str, n_gpus: int) -> Topology:
    """A topology for ``n_gpus`` GPUs: a bundled name (via :func:`load_topology`) or a key
    of :data:`EXTRA_TOPOLOGIES` (whole nodes, or one partial node when ``n_gpus`` is at
    most one node; growth and errors as in :func:`load_topology`)."""
    if key not in EXTRA_TOPOLOGIES:
        return load_topology(key, n_gpus)
    return build_topology(topology_spec(key), n_gpus, path=f"<nccl_validation:{key}>")


def _has(text: str, *words: str) -> bool:
    low = text.lower()
    return all(w.lower() in low for w in words)


TOPOLOGY_RULES: tuple[tuple[str, Callable[[pd.Series], bool]], ...] = (
    ("gcp-a3-mega", lambda r: _has(r["gpu"], "A3 Mega") or _has(r["interconnect"], "TCPXO")),
    ("h100-pcie-nvlink-bridge", lambda r: _has(r["gpu"], "H100", "PCIe") and _has(r["interconnect"], "NVLink bridge")),
    ("h100-1gpu-4nic-roce", lambda r: _has(r["gpu"], "H100") and str(r["gpus_per_node"]).strip() == "1"
     and _has(r["interconnect"], "4 NICs")),
    ("a100-2nic-hdr", lambda r: _has(r["gpu"], "A100") and _has(r["interconnect"], "2x IB 200")),
    ("dgx-a100-superpod", lambda r: _has(r["gpu"], "A100") and str(r["n_nodes"]).strip() == "1"
     and (_has(r["interconnect"], "NVLink3") or _has(r["interconnect"], "NVSwitch"))),
    ("dgx-h100-superpod", lambda r: _has(r["gpu"], "H100") and not _has(r["gpu"], "PCIe")
     and str(r["n_nodes"]).strip() == "1" and _has(r["interconnect"], "NVLink4")),
)
"""(topology, predicate on an nccl.csv row), tried in order; the first match is used."""


def topology_for(row: pd.Series) -> str | None:
    """Topology name (bundled or :data:`EXTRA_TOPOLOGIES` key) for an nccl.csv row, or None."""
    for key, rule in TOPOLOGY_RULES:
        if rule(row):
            return key
    return None

