"""Collective algorithms on topologies: known answers, link loads, choice, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.network.collective_algorithms import double_tree_parents
from simulator.network.collectives import bus_bandwidth_Bps, plan_collective
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.plan_cache import PlanCache
from simulator.network.topology import load_topology


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


# --------------------------------------------------------------------------- known answers


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 24), S=st.floats(1.0, 1e10), B=st.floats(1e8, 1e12), alpha=st.floats(0.0, 1e-4))
def test_ring_on_a_uniform_ring_matches_the_textbook_formulas(n, S, B, alpha):
    topo = UniformRing(n, B, alpha)
    group = [list(range(n))]
    ar = plan_collective(topo, "all_reduce", group, S, "ring").standalone_time_s()
    assert ar == pytest.approx(2 * (n - 1) / n * S / B + 2 * (n - 1) * alpha, rel=1e-12)
    for kind in ("all_gather", "reduce_scatter"):
        t = plan_collective(topo, kind, group, S, "ring").standalone_time_s()
        assert t == pytest.approx((n - 1) / n * S / B + (n - 1) * alpha, rel=1e-12)
    bc = plan_collective(topo, "broadcast", group, S, "ring").standalone_time_s()
    assert bc == pytest.approx(S / B + (n - 1) * alpha, rel=1e-12)


def test_single_node_ring_all_reduce_on_nvswitch(a100_32):
    # Each GPU's NVLink (300 GB/s one way) carries 2(n-1)/n S; each step costs 2 us GPU-to-GPU.
    S, n = 1e9, 8
    t = plan_collective(a100_32, "all_reduce", [list(range(8))], S, "ring").standalone_time_s()
    assert t == pytest.approx(2 * (n - 1) / n * S / 300e9 + 2 * (n - 1) * 2e-6, rel=1e-12)


def test_multi_node_ring_uses_one_channel_per_rail(a100_32):
    """A 32-GPU ring on 4 DGX A100 runs 8 channels, one per HDR NIC, like NCCL."""
    S, n = 1e9, 32
    plan = plan_collective(a100_32, "all_reduce", [list(range(32))], S, "ring")
    (phase,) = plan.phases
    kinds = np.array(a100_32.link_kind)[phase.link_ids]
    nic_bytes = phase.link_bytes[kinds == "nic"]
    # 4 nodes x 8 NICs, each NIC cable used out of one leaf and into the other: 64 directed cables
    per_nic = 2 * (n - 1) / n * S / 8
    assert len(nic_bytes) == 64
    assert np.allclose(nic_bytes, per_nic)
    hop_latency = 2e-6 + a100_32.path_latency_s(0, 8)  # NVLink relay to the rail GPU + rail path
    expected = per_nic / 25e9 + 2 * (n - 1) * hop_latency
    assert plan.standalone_time_s() == pytest.approx(expected, rel=1e-12)
    assert bus_bandwidth_Bps("all_reduce", n, S, expected - 2 * (n - 1) * hop_latency) == pytest.approx(200e9)


def test_two_gpus_per_node_give_two_channels(a100_32):
    # a DP group of a TP=4 plan: GPUs 0 and 4 of every node, on rails 0 and 4
    S, group = 1e9, [0, 4, 8, 12, 16, 20, 24, 28]
    (phase,) = plan_collective(a100_32, "all_reduce", [group], S, "ring").phases
    on_nic = np.array(a100_32.link_kind)[phase.link_ids] == "nic"
    assert on_nic.sum() == 4 * 2 * 2  # nodes x rails x (out of one leaf, into the next)
    assert np.allclose(phase.link_bytes[on_nic], 2 * 7 / 8 * S / 2)


def test_hierarchical_all_reduce_three_phases(a100_32):
    S, g, m = 1e9, 8, 4
    plan = plan_collective(a100_32, "all_reduce", [list(range(32))], S, "hierarchical")
    assert len(plan.phases) == 3
    intra = (g - 1) / g * S / 300e9 + (g - 1) * 2e-6
    inter = 2 * (m - 1) / m * (S / g) / 25e9 + 2 * (m - 1) * a100_32.path_latency_s(0, 8)
    assert plan.standalone_time_s() == pytest.approx(2 * intra + inter, rel=1e-12)


def test_hierarchical_all_gather_and_reduce_scatter_are_mirror_images(a100_32):
    ag = plan_collective(a100_32, "all_gather", [list(range(32))], 1e8, "hierarchical")
    rs = plan_collective(a100_32, "reduce_scatter", [list(range(32))], 1e8, "hierarchical")
    assert ag.standalone_time_s() == pytest.approx(rs.standalone_time_s(), rel=1e-12)
    assert np.array_equal(ag.phases[0].link_ids, rs.phases[1].link_ids)


def test_direct_all_to_all_in_one_node(a100_32):
    S, n = 8e8, 8
    t = plan_collective(a100_32, "all_to_all", [list(range(8))], S).standalone_time_s()
    assert t == pytest.approx((n - 1) / n * S / 300e9 + 2e-6, rel=1e-12)


def test_send_recv_takes_the_path(a100_32):
    S = 1e8
    plan = plan_collective(a100_32, "send_recv", [(0, 8)], S)
    assert plan.algorithm == "p2p"
    bottleneck = min(a100_32.bandwidth_Bps[i] for i in a100_32.path_ids(0, 8))
    assert plan.standalone_time_s() == pytest.approx(a100_32.path_latency_s(0, 8) + S / bottleneck, rel=1e-12)


# --------------------------------------------------------------------------- trees


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
    S, m = 1e9, 4
    groups = [[j + 8 * k for k in range(m)] for j in range(8)]  # one group per rail
    plan = plan_collective(a100_32, "all_reduce", groups, S, "tree")
    (phase,) = plan.phases
    kinds = np.array(a100_32.link_kind)[phase.link_ids]
    # each group: 2 trees x (m-1) edges x 2 directions x S/2, each crossing 2 NIC cables
    assert phase.link_bytes[kinds == "nic"].sum() == pytest.approx(8 * 2 * (m - 1) * 2 * S / 2 * 2)
    assert phase.link_bytes[kinds == "nic"].max() <= 2 * S * (1 + 1e-12)


# --------------------------------------------------------------------------- classes of groups


def test_groups_on_separate_rails_do_not_slow_each_other(a100_32):
    groups = [[j + 8 * k for k in range(4)] for j in range(8)]
    together = plan_collective(a100_32, "all_reduce", groups, 1e9, "ring").standalone_time_s()
    alone = plan_collective(a100_32, "all_reduce", groups[:1], 1e9, "ring").standalone_time_s()
    assert together == pytest.approx(alone, rel=1e-12)


def test_groups_sharing_a_nic_share_its_bandwidth(pcie_32):
    # GPUs 0..3 of a node share NIC 0: two groups through it load it twice.
    S = 1e9
    one = plan_collective(pcie_32, "all_reduce", [[0, 8]], S, "ring")
    two = plan_collective(pcie_32, "all_reduce", [[0, 8], [1, 9]], S, "ring")
    nic_bw = 100e9 / 8
    assert one.standalone_time_s() == pytest.approx(S / nic_bw + one.phases[0].latency_s, rel=1e-12)
    assert two.standalone_time_s() == pytest.approx(2 * S / nic_bw + one.phases[0].latency_s, rel=1e-12)


def test_class_link_loads_are_the_sum_of_its_groups(a100_32):
    groups = [[0, 1, 8, 9], [2, 3, 10, 11]]
    both = plan_collective(a100_32, "all_gather", groups, 1e6, "ring").phases[0]
    total = np.zeros(a100_32.n_edges)
    for g in groups:
        p = plan_collective(a100_32, "all_gather", [g], 1e6, "ring").phases[0]
        np.add.at(total, p.link_ids, p.link_bytes)
    assert np.allclose(total[both.link_ids], both.link_bytes)
    assert total.sum() == pytest.approx(both.link_bytes.sum())


# --------------------------------------------------------------------------- choice, efficiency


@pytest.mark.parametrize("S", [1e3, 1e5, 1e7, 1e9])
@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter"])
def test_auto_picks_the_fastest_valid_algorithm(a100_32, kind, S):
    groups = [list(range(32))]
    auto = plan_collective(a100_32, kind, groups, S)
    times = {}
    for algo in ("ring", "tree", "hierarchical"):
        try:
            times[algo] = plan_collective(a100_32, kind, groups, S, algo).standalone_time_s()
        except InputError:
            pass
    assert auto.algorithm in times
    assert auto.standalone_time_s() == pytest.approx(min(times.values()), rel=1e-12)


def test_auto_prefers_tree_for_small_and_ring_for_large_multi_node_all_reduce(a100_32):
    groups = [list(range(32))]
    assert plan_collective(a100_32, "all_reduce", groups, 1e4).algorithm == "tree"
    assert plan_collective(a100_32, "all_reduce", groups, 4e9).algorithm == "ring"
    assert plan_collective(a100_32, "all_reduce", [list(range(8))], 1e3).algorithm == "ring"  # no one-shot in NCCL
    assert plan_collective(a100_32, "all_reduce", [list(range(8))], 1e3, algorithm="direct").algorithm == "direct"


def test_auto_keeps_nccl_algorithms_for_all_gather_in_a_node(a100_32):
    # direct all-gather has the ring's bytes and one latency step: only on request
    group = [list(range(8))]
    assert plan_collective(a100_32, "all_gather", group, 1e3).algorithm == "ring"
    direct = plan_collective(a100_32, "all_gather", group, 1e3, "direct")
    assert direct.standalone_time_s() < plan_collective(a100_32, "all_gather", group, 1e3).standalone_time_s()


def test_efficiency_scales_bandwidth_and_adds_overhead(a100_32):
    S, n = 1e9, 8
    eff = NetworkEfficiency(nvlink=0.5, overhead_s=10e-6)
    plan = plan_collective(a100_32, "all_reduce", [list(range(8))], S, "ring")
    expected = 10e-6 + 2 * (n - 1) / n * S / 150e9 + 2 * (n - 1) * 2e-6
    assert plan.standalone_time_s(eff) == pytest.approx(expected, rel=1e-12)
    assert np.all(eff.effective_bandwidth(a100_32)[np.array(a100_32.link_kind) == "nic"] == 25e9)


def test_a_group_of_one_moves_nothing(a100_32):
    plan = plan_collective(a100_32, "all_reduce", [[3], [5]], 1e9)
    assert plan.phases == () and plan.standalone_time_s(NetworkEfficiency(overhead_s=1e-5)) == 0.0


def test_bus_bandwidth_matches_nccl_tests():
    # nccl.csv a100_1n_ar_19: 16 GiB all-reduce on 8 GPUs in 127997 us, algbw 134.22, busbw 234.89 GB/s
    S, t = 17179869184, 127997e-6
    assert bus_bandwidth_Bps("all_reduce", 8, S, t) / 1e9 == pytest.approx(234.89, rel=1e-3)
    assert bus_bandwidth_Bps("all_gather", 8, S, t) == pytest.approx(S / t * 7 / 8)
    assert bus_bandwidth_Bps("broadcast", 8, S, t) == pytest.approx(S / t)


# --------------------------------------------------------------------------- speed, cache


def test_plans_are_cached():
    # build and cache-hit times of this plan: benchmarks/hot_paths.py
    topo = load_topology("dgx-a100-superpod", 1024)
    groups = [list(range(1024))]
    plan = plan_collective(topo, "all_reduce", groups, 1e9, "ring")
    again = plan_collective(topo, "all_reduce", groups, 1e9, "ring")
    assert again is plan


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "groups", "nbytes", "algo", "field"),
    [
        ("allreduce", [[0, 1]], 1e6, "auto", "kind"),
        ("all_reduce", [[0, 1]], 1e6, "butterfly", "algorithm"),
        ("all_to_all", [[0, 1]], 1e6, "ring", "algorithm"),
        ("all_reduce", [list(range(8))], 1e6, "tree", "algorithm"),
        ("all_reduce", [list(range(8))], 1e6, "hierarchical", "algorithm"),
        ("all_reduce", [[0, 8]], 1e6, "direct", "algorithm"),
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
        plan_collective(a100_32, kind, groups, nbytes, algo)
    assert err.value.field == field


@pytest.mark.parametrize("bad", [{"nvlink": 0.0}, {"nic": 1.5}, {"overhead_s": -1.0}])
def test_bad_efficiency_raises(bad):
    with pytest.raises(InputError) as err:
        NetworkEfficiency(**bad)
    assert err.value.field.startswith("efficiency.")
