"""Every bundled topology file loads, builds at two fleet sizes, names a catalog GPU and states
its NCCL-facing fields consistently with its scale-up kind and transport."""

from __future__ import annotations

import pytest

from simulator.hardware.catalog import load_catalog
from simulator.network.topology import bundled_topologies, load_topology

NEW = {"hgx-h200", "dgx-b200-superpod", "gb200-nvl72", "mi300x-oci", "aws-p5", "aws-p5en", "gcp-a3-high",
       "gcp-a3-mega", "azure-ndv5", "roce-h100", "pcie-nvlink-bridge"}


def sizes(name: str) -> tuple[int, int]:
    """One node, and up to four nodes (as many as the file allows)."""
    spec = load_topology(name, 1).spec
    per_node = spec.node.gpus
    return per_node, per_node * min(4, spec.fabric.max_nodes if not spec.fabric.grow else 4)


def test_the_issue_14_files_are_bundled():
    assert NEW <= set(bundled_topologies())


@pytest.mark.parametrize("name", bundled_topologies())
def test_each_bundled_file_builds_at_two_sizes(name):
    for n_gpus in sizes(name):
        topo = load_topology(name, n_gpus)
        assert topo.n_gpus == n_gpus
        ids, pair = topo.path_ids_many([0, 0], [n_gpus - 1, min(1, n_gpus - 1)])
        assert ids.size > 0
        assert topo.path_latency_s(0, n_gpus - 1) > 0


@pytest.mark.parametrize("name", bundled_topologies())
def test_each_bundled_file_names_a_catalog_gpu_and_coherent_nccl_fields(name):
    spec = load_topology(name, 1).spec
    catalog = load_catalog()
    assert spec.gpu is not None and catalog.get(spec.gpu) is not None
    su, node = spec.node.scale_up, spec.node
    if node.transport == "efa":
        assert node.net_plugin_latency_us in (35.0, 75.0)
    if su.kind == "mesh":
        assert su.nvlink_links == node.gpus - 1
    if name in NEW:
        assert "transport" in node.model_fields_set and "cpu" in node.model_fields_set
        if su.kind == "nvswitch":
            assert su.nvlink_links == 18 and su.multicast is True


@pytest.mark.parametrize(
    ("name", "nic_Gbps", "nics", "transport", "latency_us"),
    [("aws-p5", 400, 8, "efa", 75), ("aws-p5en", 400, 8, "efa", 35), ("gcp-a3-high", 200, 4, "tcpx", None),
     ("gcp-a3-mega", 200, 8, "tcpxo", None), ("azure-ndv5", 400, 8, "ib", None), ("gb200-nvl72", 400, 72, "ib", None)],
)
def test_cloud_nodes_carry_their_sourced_nic_figures(name, nic_Gbps, nics, transport, latency_us):
    node = load_topology(name, 1).spec.node
    assert (node.nic_bandwidth_Gbps, node.nics, node.transport, node.net_plugin_latency_us) == (
        nic_Gbps, nics, transport, latency_us)


def test_azure_enables_collnet_and_the_nvl72_node_is_one_rack_of_arm_hosts():
    assert load_topology("azure-ndv5", 8).spec.fabric.collnet is True
    nvl72 = load_topology("gb200-nvl72", 144)
    assert (nvl72.gpus_per_node, nvl72.n_nodes, nvl72.spec.node.cpu) == (72, 2, "arm")
    assert nvl72.nic_of(71) == 71


def test_the_mi300x_node_is_a_mesh_of_64_GBps_links_and_the_bridged_node_pairs_gpus():
    mi = load_topology("mi300x-oci", 16)
    assert [mi.link_kind[i] for i in mi.path_ids(0, 5)] == ["nvlink"]
    assert float(mi.bandwidth_Bps[mi.path_ids(0, 5)[0]]) == pytest.approx(64e9)
    br = load_topology("pcie-nvlink-bridge", 16)
    assert br.spec.node.scale_up.bridge_links == 12
    assert [br.link_kind[i] for i in br.path_ids(6, 7)] == ["nvlink"]
    assert [br.link_kind[i] for i in br.path_ids(5, 6)] == ["pcie", "pcie"]
