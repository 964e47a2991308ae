"""Scale-up kinds beyond NVSwitch and PCIe: a mesh links every GPU pair directly, an
NVLink-bridge node links GPU pairs (2k, 2k+1) and sends the rest over its host PCIe switch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator.network.cabling import LINK_KINDS
from simulator.network.topology import Topology, build_topology
from simulator.network.topology_file import TopologyFile


def spec(kind: str, *, gpus: int = 8, nics: int = 8, bandwidth_GBps: float = 448.0,
         pcie_GBps: float | None = 64.0, **scale_up) -> TopologyFile:
    return TopologyFile.model_validate(dict(
        name=f"test {kind}", source="test", gpu=None,
        node=dict(gpus=gpus, scale_up=dict(kind=kind, bandwidth_GBps=bandwidth_GBps, latency_us=2.0, **scale_up),
                  nics=nics, nic_bandwidth_Gbps=400, nic_latency_us=1.5, pcie_bandwidth_GBps=pcie_GBps,
                  power_W=1000, power_source="test"),
        fabric=dict(kind="rail_optimized", tiers=2, nodes_per_unit=4, switch_latency_us=0.3, switch_ports=64,
                    switch_power_W=1000, switch_power_source="test", max_nodes=8, grow=True),
    ))


def built(kind: str, n_gpus: int, **kw) -> Topology:
    return build_topology(spec(kind, **kw), n_gpus, path="(test)")


def verts(topo: Topology, a: int, b: int) -> list:
    path = topo.path(a, b)
    return [path[0][0], *(v for _, v in path)]


def kinds(topo: Topology, a: int, b: int) -> list[str]:
    return [topo.link_kind[i] for i in topo.path_ids(a, b)]


def gbps(topo: Topology, a: int, b: int) -> list[float]:
    return [round(float(topo.bandwidth_Bps[i]) / 1e9, 6) for i in topo.path_ids(a, b)]


# ----------------------------------------------------------------------------- mesh


def test_a_mesh_node_links_every_gpu_pair_directly_with_a_seventh_of_its_bandwidth():
    topo = built("mesh", 8)
    direct = [(u, v) for u, v in topo.links if u[0] == "gpu" and v[0] == "gpu"]
    assert len(direct) == 8 * 7  # 28 cables, two directions each
    for a, b in itertools.permutations(range(8), 2):
        assert verts(topo, a, b) == [("gpu", a), ("gpu", b)]
        assert kinds(topo, a, b) == ["nvlink"]
        assert gbps(topo, a, b) == [64.0]  # 448 / 7
        assert topo.path_latency_s(a, b) == pytest.approx(2e-6)
    assert not any(v[0] in ("nvswitch", "pcie") for v in topo.graph)


def test_a_mesh_gpu_reaches_its_rail_nic_directly_over_pcie():
    topo = built("mesh", 16)
    assert verts(topo, 3, 11)[:3] == [("gpu", 3), ("nic", 0, 3), ("leaf", 3)]
    assert kinds(topo, 3, 11) == ["pcie", "nic", "nic", "pcie"]


def test_a_fleet_smaller_than_a_mesh_node_keeps_the_node_s_pair_links():
    topo = built("mesh", 2)
    assert gbps(topo, 0, 1) == [64.0]


# --------------------------------------------------------------------- nvlink bridge


def test_bridged_partners_talk_over_their_bridge_and_others_over_the_host_pcie_switch():
    topo = built("nvlink_bridge", 8, bandwidth_GBps=300.0, bridge_links=12)
    assert verts(topo, 2, 3) == [("gpu", 2), ("gpu", 3)]
    assert kinds(topo, 3, 2) == ["nvlink"] and gbps(topo, 3, 2) == [300.0]
    assert verts(topo, 1, 2) == [("gpu", 1), ("pcie", 0), ("gpu", 2)]
    assert kinds(topo, 1, 2) == ["pcie", "pcie"] and gbps(topo, 1, 2) == [64.0, 64.0]
    assert topo.path_latency_s(2, 3) == pytest.approx(2e-6) == topo.path_latency_s(1, 2)
    nvlink = [e for e, k in zip(topo.links, topo.link_kind) if k == "nvlink"]
    assert len(nvlink) == 2 * 4  # 4 pairs, both directions


def test_a_bridged_gpu_sends_to_its_nic_through_the_host_pcie_switch():
    topo = built("nvlink_bridge", 16, bandwidth_GBps=300.0, nics=4)
    assert verts(topo, 5, 13) == [("gpu", 5), ("pcie", 0), ("nic", 0, 2), ("leaf", 2), ("nic", 1, 2),
                                  ("pcie", 1), ("gpu", 13)]


def test_a_partial_bridged_node_of_odd_size_leaves_the_last_gpu_unbridged():
    topo = built("nvlink_bridge", 3, bandwidth_GBps=300.0)
    assert kinds(topo, 0, 1) == ["nvlink"]
    assert kinds(topo, 1, 2) == ["pcie", "pcie"]
    assert kinds(topo, 2, 1) == ["pcie", "pcie"]


# ------------------------------------------------------------------ both, and routing


@pytest.mark.parametrize("kind", ["mesh", "nvlink_bridge", "nvswitch", "pcie"])
def test_the_array_routes_are_the_same_edges_as_the_per_pair_paths(kind):
    topo = built(kind, 64, bandwidth_GBps=300.0)
    src, dst = (a.ravel() for a in np.meshgrid(np.arange(64), np.arange(64), indexing="ij"))
    ids, pair = topo.path_ids_many(src, dst)
    for k in range(src.size):
        assert sorted(ids[pair == k].tolist()) == sorted(topo.path_ids(int(src[k]), int(dst[k])))


@pytest.mark.parametrize("kind", ["mesh", "nvlink_bridge"])
def test_routes_are_symmetric_deterministic_and_of_known_kinds(kind):
    a, b = built(kind, 32, bandwidth_GBps=300.0), built(kind, 32, bandwidth_GBps=300.0)
    assert a.links == b.links and a.link_kind == b.link_kind
    assert set(a.link_kind) <= set(LINK_KINDS)
    for s, d in itertools.combinations(range(32), 2):
        assert a.path(s, d) == b.path(s, d)
        assert [(v, u) for u, v in reversed(a.path(d, s))] == list(a.path(s, d))
        assert a.path_latency_s(s, d) == a.path_latency_s(d, s)
