"""What NCCL sees of a communicator on a trainsim topology (simulator/network/nccl/from_topology.py)."""

from __future__ import annotations

import pytest

from simulator.core.errors import InputError
from simulator.network.nccl.from_topology import group_shape, system_for
from simulator.network.topology import build_topology, load_topology

GEN = "ampere"


@pytest.fixture(scope="module")
def a100_32():
    return load_topology("dgx-a100-superpod", 32)


@pytest.fixture(scope="module")
def h100_32():
    return load_topology("dgx-h100-superpod", 32)


@pytest.fixture(scope="module")
def pcie_32():
    return load_topology("pcie-ethernet-small", 32)


def test_one_dgx_a100_node(a100_32):
    s = system_for(a100_32, range(8), "2.27", GEN)
    assert (s.sm, s.n_nodes, s.gpus_per_node, s.scale_up) == (80, 1, 8, "nvswitch")
    assert s.nvlink_GBps == pytest.approx(12 * 20.0)  # 12 NVLink 3 links x NCCL's sm80 constant (§3)
    assert s.pcie_GBps == pytest.approx(24.0)  # Gen4 x16: 32 GB/s line rate -> NCCL's 16 x 120 / 80
    assert (s.nics_per_node, s.nic_GBps) == (8, 25.0)  # 8 x HDR 200 Gb/s
    assert (s.transport, s.cpu, s.multicast, s.collnet, s.version) == ("ib", "amd", False, False, "2.27")


def test_dgx_h100_nodes(h100_32):
    s = system_for(h100_32, range(32), "2.29", "hopper")
    assert (s.sm, s.n_nodes, s.gpus_per_node) == (90, 4, 8)
    assert s.nvlink_GBps == pytest.approx(18 * 20.6)  # 370.8, NCCL's own dump (§4.3)
    assert s.pcie_GBps == pytest.approx(48.0)  # Gen5 x16
    assert (s.nics_per_node, s.nic_GBps, s.cpu, s.multicast) == (8, 50.0, "intel", True)
    assert s.latency_inter_us == 0.0


def test_pcie_nodes_have_no_nvlink_and_share_nics(pcie_32):
    s = system_for(pcie_32, range(32), "2.29", "ada")
    assert (s.scale_up, s.nvlink_GBps, s.pcie_GBps) == ("pcie", 0.0, 24.0)
    assert (s.nics_per_node, s.nic_GBps, s.transport) == (2, 12.5, "roce")
    # GPUs 0 and 1 hang off the same NIC (2 NICs per 8 GPUs): one rail
    assert system_for(pcie_32, [0, 1, 8, 9], "2.29", "ada").nics_per_node == 1
    assert system_for(pcie_32, [0, 4, 8, 12], "2.29", "ada").nics_per_node == 2


@pytest.mark.parametrize(("group", "shape"), [
    (list(range(8)), (1, 8, 8)),
    ([0, 8, 16, 24], (4, 1, 1)),  # a DP group of a TP 8 plan: one rank, one rail per node
    ([0, 4, 8, 12, 16, 20, 24, 28], (4, 2, 2)),
    ([0, 1, 2, 8], (2, 3, 1)),  # uneven: the fullest node sets ppn, the emptiest the rails
])
def test_group_shapes(a100_32, group, shape):
    assert group_shape(a100_32, group) == shape
    s = system_for(a100_32, group, "2.29", GEN)
    assert (s.n_nodes, s.gpus_per_node, s.nics_per_node) == shape


def test_systems_are_cached_per_shape(a100_32):
    assert system_for(a100_32, [0, 8], "2.29", GEN) is system_for(a100_32, [5, 13], "2.29", GEN)
    assert system_for(a100_32, [0, 8], "2.29", GEN) is not system_for(a100_32, [0, 8], "2.27", GEN)


def test_the_generation_sets_the_sm_and_the_nvlink_constant(a100_32):
    s = system_for(a100_32, range(8), "2.29", "hopper")
    assert s.sm == 90 and s.nvlink_GBps == pytest.approx(12 * 20.6)
    with pytest.raises(InputError, match="no tables for GPU generation 'tpu'") as err:
        system_for(a100_32, range(8), "2.29", "tpu")
    assert err.value.field == "generation"


def test_file_fields_reach_the_system(h100_32):
    spec = h100_32.spec
    node = spec.node.model_copy(update={
        "transport": "efa", "net_plugin_latency_us": 75.0, "cpu": "amd",
        "scale_up": spec.node.scale_up.model_copy(update={"nvlink_links": None, "multicast": None})})
    topo = build_topology(spec.model_copy(update={"node": node}), 16)
    s = system_for(topo, range(16), "2.29", "hopper")
    assert (s.transport, s.latency_inter_us, s.cpu) == ("efa", 75.0, "amd")
    assert s.nvlink_GBps == pytest.approx(18 * 20.6) and s.multicast  # defaults: Hopper 18 links, NVLS


def test_mesh_takes_the_files_bandwidth(h100_32):
    spec = h100_32.spec
    su = spec.node.scale_up.model_copy(update={"kind": "mesh", "bandwidth_GBps": 448.0, "nvlink_links": 7,
                                               "multicast": None})
    topo = build_topology(spec.model_copy(update={"gpu": "mi300x", "node": spec.node.model_copy(
        update={"scale_up": su})}), 8)
    s = system_for(topo, range(8), "2.29", "cdna3")
    assert (s.scale_up, s.nvlink_GBps, s.multicast, s.sm) == ("mesh", 448.0, False, 90)


def test_an_empty_group_is_refused(a100_32):
    with pytest.raises(InputError):
        system_for(a100_32, [], "2.29", GEN)
