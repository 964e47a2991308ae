"""Collectives timed by NCCL's model: link loads of the patterns, NCCL's choice and corrected time,
classes of groups, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.hardware.catalog import load_catalog
from simulator.core.errors import InputError
from simulator.network.collective_algorithms import double_tree_parents, unit_phase
from simulator.network.collectives import (
    ALGORITHMS,
    bus_bandwidth_Bps,
    nccl_choice,
    plan_collective,
)
from simulator.network.efficiency import NOMINAL, NetworkEfficiency
from simulator.network.nccl.correction import corrected_time_s
from simulator.network.nccl.from_topology import system_for
from simulator.network.plan_cache import PlanCache
from simulator.network.topology import load_topology

def planned(topology, *args, **kwargs):
    """plan_collective on the GPUs of the topology's catalog entry (the simulation passes its device's)."""
    kwargs.setdefault("generation", load_catalog().get(topology.gpu).generation)
    return plan_collective(topology, *args, **kwargs)



class UniformRing:
    """A fake topology: n one-GPU nodes on a unidirectional ring of identical links.

    Link i goes from GPU i to GPU i+1 (bandwidth B, latency alpha); a path walks forward.
    """

    def __init__(self, n: int, bandwidth_Bps: float = 1e9, latency_s: float = 1e-6):
        self.gpus_per_node, self.n_nodes, self.n_gpus, self.n_edges = 1, n, n, n
        self.bandwidth_Bps = np.full(n, float(bandwidth_Bps))
        self.latency_s = np.full(n, float(latency_s))
        self.link_kind = ["fabric"] * n
        self.plan_cache = PlanCache()

    def node_of(self, gpu: int) -> int:
        return gpu

    def nic_of(self, gpu: int) -> int:
        return 0

    def path_ids(self, src: int, dst: int) -> tuple[int, ...]:
        return tuple((src + k) % self.n_gpus for k in range((dst - src) % self.n_gpus))

    def path_ids_many(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        paths = [self.path_ids(int(a), int(b)) for a, b in zip(src, dst)]
        ids = np.array([i for path in paths for i in path], dtype=np.intp)
        return ids, np.repeat(np.arange(len(paths)), [len(path) for path in paths])


@pytest.fixture(scope="module")
def a100_32():
    return load_topology("dgx-a100-superpod", 32)


@pytest.fixture(scope="module")
def pcie_32():
    return load_topology("pcie-ethernet-small", 32)


# --------------------------------------------------------------------------- link loads of the patterns


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 24), S=st.floats(1.0, 1e10))
def test_ring_link_loads_on_a_uniform_ring_are_the_textbook_ones(n, S):
    topo = UniformRing(n)
    group = ((*range(n),),)
    ar = unit_phase(topo, "all_reduce", "ring", group).scaled(S)
    assert np.allclose(ar.link_bytes, 2 * (n - 1) / n * S) and ar.link_ids.size == n
    for kind in ("all_gather", "reduce_scatter"):
        assert np.allclose(unit_phase(topo, kind, "ring", group).scaled(S).link_bytes, (n - 1) / n * S)
    bc = unit_phase(topo, "broadcast", "ring", group).scaled(S)
    assert sorted(bc.link_ids.tolist()) == list(range(n - 1)) and np.allclose(bc.link_bytes, S)  # 0 -> 1 -> ... n-1
    rd = unit_phase(topo, "reduce", "ring", group).scaled(S)
    assert sorted(rd.link_ids.tolist()) == list(range(1, n)) and np.allclose(rd.link_bytes, S)  # 1 -> ... -> n-1 -> 0


def test_multi_node_ring_uses_one_channel_per_rail(a100_32):
    """A 32-GPU ring on 4 DGX A100 runs 8 channels, one per HDR NIC, like NCCL."""
    n = 32
    phase = unit_phase(a100_32, "all_reduce", "ring", (tuple(range(32)),))
    nic_bytes = phase.link_bytes[np.array(a100_32.link_kind)[phase.link_ids] == "nic"]
    # 4 nodes x 8 NICs, each NIC cable used out of one leaf and into the other: 64 directed cables
    assert len(nic_bytes) == 64
    assert np.allclose(nic_bytes, 2 * (n - 1) / n / 8)


def test_two_gpus_per_node_give_two_channels(a100_32):
    # a DP group of a TP=4 plan: GPUs 0 and 4 of every node, on rails 0 and 4
    phase = unit_phase(a100_32, "all_reduce", "ring", ((0, 4, 8, 12, 16, 20, 24, 28),))
    on_nic = np.array(a100_32.link_kind)[phase.link_ids] == "nic"
    assert on_nic.sum() == 4 * 2 * 2  # nodes x rails x (out of one leaf, into the next)
    assert np.allclose(phase.link_bytes[on_nic], 2 * 7 / 8 / 2)


def test_direct_all_to_all_sends_one_nth_to_each_peer(a100_32):
    phase = unit_phase(a100_32, "all_to_all", "direct", (tuple(range(8)),))
    assert set(np.array(a100_32.link_kind)[phase.link_ids]) == {"nvlink"}
    assert np.allclose(phase.link_bytes, 7 / 8)  # each GPU's NVLink carries (n-1)/n S out and in


def test_nvls_loads_only_the_rings_nvlink_links(a100_32):
    group = (tuple(range(16)),)
    ring = unit_phase(a100_32, "all_reduce", "ring", group)
    intra = unit_phase(a100_32, "all_reduce", "ring_intra", group)
    kinds = np.array(a100_32.link_kind)
    assert set(kinds[intra.link_ids]) == {"nvlink"} and set(kinds[ring.link_ids]) > {"nvlink"}


@pytest.mark.parametrize("n", list(range(2, 40)) + [64, 127, 128])
def test_double_binary_tree_shape(n):
    trees = double_tree_parents(n)
    inner = []
    for parents in trees:
        assert parents.count(-1) == 1
        for r in range(n):  # every rank reaches the root in <= n steps (no cycle)
            p, steps = r, 0
            while parents[p] >= 0:
                p, steps = parents[p], steps + 1
                assert steps <= n
        children = [parents.count(r) for r in range(n)]
        assert max(children) <= 2
        inner.append({r for r in range(n) if children[r] > 0})
    if n > 2:
        # NCCL's complementary trees: no rank is inner in both (so NIC load stays ~2S)
        assert not (inner[0] & inner[1] - {trees[0].index(-1), trees[1].index(-1)})


def test_tree_all_reduce_nic_loads(a100_32):
    """DP groups with one GPU per node: every tree edge carries S/2 each way in each tree."""
    m = 4
    groups = tuple(tuple(j + 8 * k for k in range(m)) for j in range(8))  # one group per rail
    phase = unit_phase(a100_32, "all_reduce", "tree", groups)
    kinds = np.array(a100_32.link_kind)[phase.link_ids]
    # each group: 2 trees x (m-1) edges x 2 directions x S/2, each crossing 2 NIC cables
    assert phase.link_bytes[kinds == "nic"].sum() == pytest.approx(8 * 2 * (m - 1) * 2 / 2 * 2)
    assert phase.link_bytes[kinds == "nic"].max() <= 2 * (1 + 1e-12)


# --------------------------------------------------------------------------- NCCL's choice and time


@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce",
                                  "all_to_all"])
@pytest.mark.parametrize("group", [list(range(8)), list(range(32)), [0, 8, 16, 24]])
@pytest.mark.parametrize("S", [1e3, 1e6, 1e9])
def test_a_plan_alone_takes_exactly_the_corrected_nccl_time(a100_32, kind, group, S):
    eff = NetworkEfficiency()
    plan = planned(a100_32, kind, [group], S, efficiency=eff)
    system = system_for(a100_32, group, eff.nccl_version, "ampere")
    choice = nccl_choice(system, kind, S, None)
    assert plan.system == system
    assert (plan.algorithm, plan.protocol, plan.channels) == (choice.algorithm, choice.protocol, choice.channels)
    assert plan.standalone_time_s() == pytest.approx(corrected_time_s(system, choice, S, eff), rel=1e-12)
    assert plan.standalone_time_s(eff) == plan.standalone_time_s()
    (phase,) = plan.phases
    assert phase.time_s(a100_32.bandwidth_Bps) == pytest.approx(plan.standalone_time_s(), rel=1e-12)


def test_without_efficiency_a_plan_takes_nccls_own_estimate(a100_32):
    plan = planned(a100_32, "all_reduce", [list(range(16))], 1e8)
    choice = nccl_choice(plan.system, "all_reduce", 1e8, None)
    assert plan.efficiency is NOMINAL
    assert plan.standalone_time_s() == pytest.approx(choice.time_us * 1e-6, rel=1e-9)


def test_send_recv_is_timed_by_nccls_p2p_model(a100_32):
    eff = NetworkEfficiency()
    plan = planned(a100_32, "send_recv", [(0, 8)], 1e8, efficiency=eff)
    assert plan.algorithm == "p2p"
    system = system_for(a100_32, (0, 8), eff.nccl_version, "ampere")
    assert (system.n_nodes, system.gpus_per_node) == (2, 1)
    choice = nccl_choice(system, "send_recv", 1e8, None)
    assert plan.standalone_time_s() == pytest.approx(corrected_time_s(system, choice, 1e8, eff), rel=1e-12)
    assert "nic" in set(np.array(a100_32.link_kind)[plan.phases[0].link_ids])  # rail 0: one leaf, no spine


def test_forced_algorithms_are_nccls(a100_32):
    group = [list(range(32))]
    for name in ("ring", "tree"):
        plan = planned(a100_32, "all_reduce", group, 1e8, name)
        assert plan.algorithm == name
    assert set(ALGORITHMS) == {"tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat", "p2p"}


def test_auto_is_never_slower_than_a_forced_algorithm_under_nccls_own_model(a100_32):
    group = [list(range(32))]
    for S in (1e4, 1e6, 1e9):
        auto = planned(a100_32, "all_reduce", group, S).standalone_time_s()
        for name in ("ring", "tree"):
            assert auto <= planned(a100_32, "all_reduce", group, S, name).standalone_time_s() * (1 + 1e-12)


def test_the_nccl_version_and_generation_reach_the_system(a100_32):
    plan = plan_collective(a100_32, "all_reduce", [list(range(8))], 1e8,
                           efficiency=NetworkEfficiency(nccl_version="2.21"), generation="hopper")
    assert plan.system.version == "2.21" and plan.system.sm == 90
    assert planned(a100_32, "all_reduce", [list(range(8))], 1e8).system.sm == 80  # the topology's A100


def test_choices_are_cached():
    nccl_choice.cache_clear()
    topo = load_topology("dgx-a100-superpod", 64)
    for j in range(8):  # eight DP groups of the same shape: one tuner call
        planned(topo, "all_reduce", [[j + 8 * k for k in range(8)]], 1e8)
    info = nccl_choice.cache_info()
    assert (info.misses, info.hits) == (1, 7)


# --------------------------------------------------------------------------- classes of groups


def test_groups_on_separate_rails_do_not_slow_each_other(a100_32):
    groups = [[j + 8 * k for k in range(4)] for j in range(8)]
    together = planned(a100_32, "all_reduce", groups, 1e9, "ring").standalone_time_s()
    alone = planned(a100_32, "all_reduce", groups[:1], 1e9, "ring").standalone_time_s()
    assert together == pytest.approx(alone, rel=1e-12)


def test_groups_sharing_a_nic_share_its_bandwidth(pcie_32):
    # GPUs 0..3 of a node share NIC 0: two groups through it load it twice.
    one = planned(pcie_32, "all_reduce", [[0, 8]], 1e9, "ring")
    two = planned(pcie_32, "all_reduce", [[0, 8], [1, 9]], 1e9, "ring")
    latency = one.phases[0].latency_s
    assert two.standalone_time_s() - latency == pytest.approx(2 * (one.standalone_time_s() - latency), rel=1e-12)


def test_class_link_loads_are_the_sum_of_its_groups(a100_32):
    groups = [[0, 1, 8, 9], [2, 3, 10, 11]]
    both = planned(a100_32, "all_gather", groups, 1e6, "ring").phases[0]
    total = np.zeros(a100_32.n_edges)
    for g in groups:
        p = planned(a100_32, "all_gather", [g], 1e6, "ring").phases[0]
        np.add.at(total, p.link_ids, p.link_bytes)
    assert np.allclose(total[both.link_ids], both.link_bytes)
    assert total.sum() == pytest.approx(both.link_bytes.sum())


# --------------------------------------------------------------------------- trivial plans, bus bandwidth


def test_a_group_of_one_or_no_bytes_moves_nothing(a100_32):
    eff = NetworkEfficiency()
    plan = planned(a100_32, "all_reduce", [[3], [5]], 1e9, efficiency=eff)
    assert plan.phases == () and plan.standalone_time_s() == 0.0
    empty = planned(a100_32, "all_gather", [list(range(16))], 0.0, efficiency=eff)
    assert empty.phases == () and empty.standalone_time_s() == 0.0


def test_a_plan_timed_with_one_efficiency_refuses_another(a100_32):
    plan = planned(a100_32, "all_reduce", [list(range(8))], 1e6, efficiency=NetworkEfficiency())
    with pytest.raises(ValueError):
        plan.standalone_time_s(NetworkEfficiency(node_efficiency=0.5))


def test_bus_bandwidth_matches_nccl_tests():
    # nccl.csv a100_1n_ar_19: 16 GiB all-reduce on 8 GPUs in 127997 us, algbw 134.22, busbw 234.89 GB/s
    S, t = 17179869184, 127997e-6
    assert bus_bandwidth_Bps("all_reduce", 8, S, t) / 1e9 == pytest.approx(234.89, rel=1e-3)
    assert bus_bandwidth_Bps("all_gather", 8, S, t) == pytest.approx(S / t * 7 / 8)
    assert bus_bandwidth_Bps("broadcast", 8, S, t) == pytest.approx(S / t)
    assert bus_bandwidth_Bps("reduce", 8, S, t) == pytest.approx(S / t)


# --------------------------------------------------------------------------- speed, cache


def test_plans_are_cached():
    # build and cache-hit times of this plan: benchmarks/hot_paths.py
    topo = load_topology("dgx-a100-superpod", 1024)
    groups = [list(range(1024))]
    plan = planned(topo, "all_reduce", groups, 1e9, "ring")
    again = planned(topo, "all_reduce", groups, 1e9, "ring")
    assert again is plan


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "groups", "nbytes", "algo", "field"),
    [
        ("allreduce", [[0, 1]], 1e6, "auto", "kind"),
        ("all_reduce", [[0, 1]], 1e6, "butterfly", "algorithm"),
        ("all_reduce", [[0, 1]], 1e6, "hierarchical", "algorithm"),
        ("all_reduce", [[0, 1]], 1e6, "direct", "algorithm"),
        ("all_reduce", [list(range(8))], 1e6, "nvls", "algorithm"),  # A100: no NVSwitch multicast
        ("all_gather", [list(range(32))], 1e6, "tree", "algorithm"),  # NCCL has no tree all-gather
        ("all_reduce", [[0, 1], [2, 3, 4]], 1e6, "auto", "groups"),
        ("all_reduce", [[0, 99]], 1e6, "auto", "groups"),
        ("all_reduce", [[0, 0]], 1e6, "auto", "groups"),
        ("all_reduce", [[0, 1.5]], 1e6, "auto", "groups"),
        ("all_reduce", [], 1e6, "auto", "groups"),
        ("send_recv", [[0, 1, 2]], 1e6, "auto", "groups"),
        ("all_reduce", [[0, 1]], -1.0, "auto", "bytes"),
        ("all_reduce", [[0, 1]], math.nan, "auto", "bytes"),
    ],
)
def test_bad_requests_raise_input_error_naming_the_field(a100_32, kind, groups, nbytes, algo, field):
    with pytest.raises(InputError) as err:
        planned(a100_32, kind, groups, nbytes, algo)
    assert err.value.field == field
    if algo == "butterfly":
        assert all(name in str(err.value) for name in ALGORITHMS)


def test_unknown_nccl_version_raises():
    with pytest.raises(ValueError, match="2.27"):
        NetworkEfficiency(nccl_version="3.0")


def test_the_generation_is_the_callers_and_must_be_known(a100_32):
    """The network layer does not read the GPU catalog: the simulation passes its device's generation."""
    with pytest.raises(TypeError):
        plan_collective(a100_32, "all_reduce", [list(range(16))], 1e6)  # generation is required
    with pytest.raises(InputError, match="no tables for GPU generation 'tpu'") as err:
        plan_collective(a100_32, "all_reduce", [list(range(16))], 1e6, generation="tpu")
    assert err.value.field == "generation"
