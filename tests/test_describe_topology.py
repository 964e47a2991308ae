"""A topology from a short description: the catalog fills the scale-up bandwidth, the fabric is a
rail-optimised non-blocking two-tier Clos, and bad descriptions fail naming what to change."""

from __future__ import annotations

import pytest

from simulator.core.errors import InputError
from simulator.hardware.catalog import load_catalog
from simulator.network.describe import SOURCE, describe_topology, describe_topology_file

H100 = load_catalog().get("h100-sxm")
MI300X = load_catalog().get("mi300x")


def test_an_h100_description_takes_its_nvlink_bandwidth_from_the_catalog():
    topo = describe_topology(H100, 8, "nvswitch", 8, 400, n_gpus=64)
    spec = topo.spec
    assert (topo.n_gpus, topo.n_nodes, topo.gpus_per_node) == (64, 8, 8)
    assert spec.node.scale_up.bandwidth_GBps == pytest.approx(450)  # gpus.yaml h100-sxm
    assert spec.source == SOURCE and spec.gpu == "h100-sxm"
    assert (spec.fabric.kind, spec.fabric.tiers, spec.fabric.oversubscription) == ("rail_optimized", 2, 1.0)
    assert spec.fabric.nodes_per_unit == 8 and spec.fabric.grow
    assert [topo.link_kind[i] for i in topo.path_ids(0, 8)] == ["pcie", "nic", "nic", "pcie"]


def test_the_unit_is_at_most_32_nodes_and_the_fleet_may_grow_past_it():
    topo = describe_topology(H100, 8, "nvswitch", 8, 400, n_gpus=8 * 40)
    assert topo.spec.fabric.nodes_per_unit == 32 and topo.n_units == 2


def test_a_mesh_description_of_mi300x_uses_its_xgmi_total():
    topo = describe_topology(MI300X, 8, "mesh", 8, 400, "roce", n_gpus=16, nvlink_links=7)
    assert float(topo.bandwidth_Bps[topo.path_ids(0, 1)[0]]) == pytest.approx(64e9)
    assert topo.spec.node.transport == "roce" and topo.spec.node.scale_up.nvlink_links == 7


def test_optional_nccl_fields_are_passed_through_and_unstated_ones_stay_unset():
    spec = describe_topology_file(H100, 8, "nvswitch", 8, 400, "efa", 16, net_plugin_latency_us=75,
                                  multicast=True, cpu="amd")
    assert (spec.node.transport, spec.node.net_plugin_latency_us, spec.node.cpu) == ("efa", 75.0, "amd")
    assert spec.node.nic_latency_us == 5.0  # the EFA estimate
    plain = describe_topology_file(H100, 8, "nvswitch", 8, 400, n_gpus=16)
    assert "transport" not in plain.node.model_fields_set
    assert "nvlink_links" not in plain.node.scale_up.model_fields_set


def test_no_fleet_size_builds_one_node_and_a_smaller_fleet_a_partial_node():
    assert describe_topology("a100-80gb", 8, "nvswitch", 8, 200, bandwidth_GBps=300).n_gpus == 8
    assert describe_topology("a100-80gb", 8, "nvswitch", 8, 200, n_gpus=4, bandwidth_GBps=300).gpus_per_node == 4


def test_a_bridged_description_needs_the_bridge_bandwidth():
    with pytest.raises(InputError) as info:
        describe_topology(load_catalog().get("h100-pcie"), 8, "nvlink_bridge", 4, 400, n_gpus=16,
                          pcie_bandwidth_GBps=64)
    assert info.value.field == "bandwidth_GBps"
    topo = describe_topology("h100-pcie", 8, "nvlink_bridge", 4, 400, n_gpus=16, bandwidth_GBps=300,
                             pcie_bandwidth_GBps=64, bridge_links=12)
    assert [topo.link_kind[i] for i in topo.path_ids(0, 1)] == ["nvlink"]


@pytest.mark.parametrize(
    ("args", "kwargs", "field", "says"),
    [
        ((H100, 8, "nvlink", 8, 400), {}, "scale_up", "nvswitch, mesh, nvlink_bridge, pcie"),
        ((H100, 8, "nvswitch", 8, 400, "infiniband"), {}, "transport", "ib, roce, efa, tcpxo, tcpx, socket"),
        ((H100, 8, "nvswitch", 3, 400), {"n_gpus": 16}, "node.nics", "nics must divide gpus"),
        ((H100, 8, "nvswitch", 8, 400), {"n_gpus": 12}, "n_gpus", "whole nodes"),
        ((H100, 8, "nvswitch", 8, -1), {}, "node.nic_bandwidth_Gbps", "in (0, 8000000]"),
        ((H100, 8, "pcie", 8, 400), {"nvlink_links": 4}, "node.scale_up.nvlink_links", "no NVLink"),
        (("h100-sxm", 8, "nvswitch", 8, 400), {}, "bandwidth_GBps", "give bandwidth_GBps"),
    ],
)
def test_a_bad_description_names_the_argument_or_field_and_what_is_allowed(args, kwargs, field, says):
    with pytest.raises(InputError) as info:
        describe_topology(*args, **kwargs)
    assert info.value.field == field
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_slug_with_its_bandwidth_needs_no_catalog_and_is_kept_as_the_gpu():
    topo = describe_topology("h100-sxm", 8, "nvswitch", 8, 400, n_gpus=16, bandwidth_GBps=450)
    assert topo.gpu == "h100-sxm" and topo.spec.node.scale_up.bandwidth_GBps == 450
