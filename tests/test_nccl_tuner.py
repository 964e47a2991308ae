"""NCCL's tuner, specified by known answers (``nccl-model.md`` §4.3, §8, §11).

The §8 table is NCCL 2.27.5's own tuning log for H100 nodes with 8 x 400 Gb/s NICs; a faithful
model reproduces every entry to 0.1 from 8 x 48 ring/tree channels, 8 x 40 (48) NVLSTree
channels, an Intel CPU and a network latency of 0.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.network.nccl import p2p, tables, tuner
from simulator.network.nccl.search import Graph, runtime_channels, search
from simulator.network.nccl.system import NcclSystem


def h100(nodes: int, version: str = "2.27", multicast: bool = True, **kw) -> NcclSystem:
    """DGX-H100-like: 18 NVLinks (370.8), PCIe Gen5 x16 (48), 8 x 400 Gb/s NICs (50)."""
    nics = 8 if nodes > 1 else 0
    return NcclSystem(90, nodes, 8, "nvswitch", 370.8, 48.0, nics, 50.0 if nics else 0.0,
                      multicast=multicast, version=version, **kw)


def a100(nodes: int = 1, nics: int = 8, nic: float = 25.0, **kw) -> NcclSystem:
    n = nics if nodes > 1 else 0
    return NcclSystem(80, nodes, 8, "nvswitch", 240.0, 24.0, n, nic if n else 0.0, version="2.27", **kw)


def b200(version: str) -> NcclSystem:
    return NcclSystem(100, 1, 8, "nvswitch", 721.8, 48.0, 0, 0.0, multicast=True, version=version)


def entry(system: NcclSystem, kind: str, algorithm: str, protocol: str) -> tuner.Entry:
    [found] = [e for e in tuner.entries(system, kind) if (e.algorithm, e.protocol) == (algorithm, protocol)]
    return found


def graphs(system: NcclSystem) -> dict[str, tuple[int, float, float]]:
    return {k: (g.channels, g.bw_intra_GBps, g.bw_inter_GBps) for k, g in search(system).items()}


# (nodes, kind, algorithm, {protocol: (latency µs, algbw GB/s)}) from nccl-model.md §8.
SECTION_8 = [
    (2, "all_reduce", "ring", {"LL": (40.0, 20.8), "LL128": (75.2, 156.6), "Simple": (131.6, 204.8)}),
    (2, "all_reduce", "tree", {"LL": (25.2, 16.6), "LL128": (48.5, 124.8), "Simple": (92.4, 140.8)}),
    (2, "all_reduce", "nvls_tree", {"Simple": (53.0, 266.7)}),
    (2, "all_gather", "ring", {"LL": (23.3, 41.6), "LL128": (44.6, 313.2), "Simple": (70.0, 409.6)}),
    (4, "all_reduce", "ring", {"LL": (78.8, 10.5), "LL128": (144.4, 151.5), "Simple": (282.8, 198.2)}),
    (4, "all_reduce", "tree", {"LL": (35.2, 8.7), "LL128": (65.5, 98.6), "Simple": (120.4, 122.4)}),
    (4, "all_reduce", "nvls_tree", {"Simple": (81.0, 160.0)}),
    (4, "all_gather", "ring", {"LL": (42.7, 21.1), "LL128": (79.2, 303.1), "Simple": (145.6, 396.4)}),
    (8, "all_reduce", "ring", {"LL": (156.4, 10.4), "LL128": (282.8, 149.1), "Simple": (585.2, 195.0)}),
    (8, "all_reduce", "tree", {"LL": (45.2, 8.7), "LL128": (82.5, 98.6), "Simple": (148.4, 122.4)}),
    (8, "all_reduce", "nvls_tree", {"Simple": (109.0, 160.0)}),
    (8, "all_gather", "ring", {"LL": (81.5, 20.7), "LL128": (148.4, 298.3), "Simple": (296.8, 390.1)}),
]
CASES_8 = [
    (nodes, kind, algorithm, protocol, lat, bw)
    for nodes, kind, algorithm, row in SECTION_8
    for protocol, (lat, bw) in row.items()
    for kind in ((kind,) if kind == "all_reduce" else ("all_gather", "reduce_scatter"))
]


@pytest.mark.parametrize("nodes, kind, algorithm, protocol, lat, bw", CASES_8)
def test_section_8_tuning_log_is_reproduced(nodes, kind, algorithm, protocol, lat, bw):
    """Every cell of NCCL 2.27.5's tuning log on H100 x 8 NICs, to 0.1."""
    e = entry(h100(nodes), kind, algorithm, protocol)
    assert e.latency_us == pytest.approx(lat, abs=0.06)
    assert e.bandwidth_GBps == pytest.approx(bw, abs=0.06)


def test_section_8_search_feeds_the_tuning_log():
    """The tuning log's inputs: 8 x 48 ring and tree, 8 x 40 (48) NVLSTree, 16 runtime channels."""
    s = h100(2)
    assert graphs(s) == {"ring": (8, 48, 48), "tree": (8, 48, 48), "nvls": (8, 40, 48)}
    assert runtime_channels(s, search(s)) == 16


@pytest.mark.parametrize(
    "system, kind, algorithm, protocol, lat, bw",
    [
        (h100(1), "all_reduce", "ring", "LL", 15.0, 80.6),
        (h100(1), "all_reduce", "ring", "LL128", 40.6, 189.3),
        (h100(1), "all_reduce", "ring", "Simple", 56.0, 205.7),
        (h100(1), "all_reduce", "nvls", "Simple", 25.0, 266.7),
        (a100(1), "all_reduce", "ring", "Simple", 56.0, 137.1),
    ],
)
def test_one_node_values_below_section_8(system, kind, algorithm, protocol, lat, bw):
    e = entry(system, kind, algorithm, protocol)
    assert e.latency_us == pytest.approx(lat, abs=0.06)
    assert e.bandwidth_GBps == pytest.approx(bw, abs=0.06)


def test_one_node_nvls_busbw_is_467_on_h100():
    e = entry(h100(1), "all_reduce", "nvls", "Simple")
    assert e.bandwidth_GBps * 2 * 7 / 8 == pytest.approx(466.7, abs=0.1)


@pytest.mark.parametrize(
    "name, system, expected",
    [
        ("8x A100 one node", a100(1), {"ring": (12, 20, 20), "tree": (12, 20, 20)}),
        ("8x H100 one node", h100(1), {"ring": (12, 30, 30), "tree": (12, 30, 30), "nvls": (8, 40, 60)}),
        ("8x B200 one node", b200("2.27"), {"ring": (16, 45, 45), "tree": (16, 45, 45), "nvls": (8, 80, 90)}),
        ("A100 + 8x200G HDR, 2 nodes", a100(2), {"ring": (8, 24, 24), "tree": (8, 30, 24)}),
        ("p4d 4x100G EFA, 2 nodes", a100(2, nics=4, nic=12.5, transport="efa", latency_inter_us=75.0),
         {"ring": (4, 12, 12), "tree": (4, 24, 12)}),
        ("8 PCIe Gen4 GPUs", NcclSystem(80, 1, 8, "pcie", 0.0, 24.0, 0, 0.0, version="2.27"),
         {"ring": (2, 12, 12), "tree": (2, 12, 12)}),
    ],
)
def test_section_4_3_search_outcomes(name, system, expected):
    assert graphs(system) == expected


def test_section_4_3_nvlstree_on_h100_and_a3_mega():
    """H100 with 8x400G: NVLSTree 8 x 40 (48); GCP A3 Mega (8 x 200G TCPXO): ring 8 x 24, NVLSTree 8 x 40 (24)."""
    mega = NcclSystem(90, 2, 8, "nvswitch", 370.8, 48.0, 8, 25.0, transport="tcpxo", multicast=True, version="2.27")
    assert graphs(h100(4))["nvls"] == (8, 40, 48)
    assert graphs(mega)["ring"] == (8, 24, 24)
    assert graphs(mega)["nvls"] == (8, 40, 24)
    assert runtime_channels(mega, search(mega)) == 32, "unpack NICs double the 16 channels"


def test_search_on_other_shapes():
    """One GPU per node rings through its NIC; half a node, bridges and meshes find channels."""
    one_gpu = NcclSystem(90, 4, 1, "nvswitch", 370.8, 48.0, 1, 50.0, version="2.27")
    half = NcclSystem(90, 2, 4, "nvswitch", 370.8, 48.0, 4, 50.0, version="2.27")
    bridge4 = NcclSystem(86, 1, 4, "nvlink_bridge", 56.0, 24.0, 0, 0.0, version="2.27")
    bridge2 = dataclasses.replace(bridge4, gpus_per_node=2)
    mesh = NcclSystem(90, 1, 8, "mesh", 7 * 64.0, 64.0, 0, 0.0, version="2.27")
    assert graphs(one_gpu)["ring"] == (2, 24, 24)
    assert graphs(half)["ring"] == (8, 24, 24)
    assert graphs(bridge4)["ring"] == (2, 12, 12), "a 4-GPU ring crosses PCIe"
    assert graphs(bridge2)["ring"] == (2, 20, 20), "a bridged pair rings over NVLink"
    ring = search(mesh)["ring"]
    assert ring.channels * ring.bw_intra_GBps == pytest.approx(420.0)


def test_tree_correction_factor_lookup():
    t = tables.for_version("2.27")
    assert t.tree_correction("LL", 63) == 1.0
    assert t.tree_correction("LL", 64) == 1.0
    assert t.tree_correction("LL", 64 * 2**12) == 0.4
    assert t.tree_correction("LL128", 64 * 2**9) == 0.7
    assert t.tree_correction("Simple", 64 * 2**11 + 5) == 0.5
    assert t.tree_correction("Simple", 64 * 2**23) == 1.0, "beyond the 23 entries"


def test_tree_choice_carries_the_correction():
    s = h100(2)
    e = entry(s, "all_reduce", "tree", "Simple")
    c = tuner.choose(s, "all_reduce", 64 * 2**11, algorithm="tree", protocol="Simple")
    assert c.bandwidth_GBps == pytest.approx(e.bandwidth_GBps * 0.5)
    assert c.time_us == pytest.approx(c.latency_us + 64 * 2**11 / (1000 * c.bandwidth_GBps))


def test_a_simple_ring_channel_is_used_only_from_32_KiB():
    """512 threads x 64 B: one channel below 64 KiB, threads halved below 32 KiB."""
    s = h100(2)

    def ring_simple(nbytes):
        c = tuner.choose(s, "all_reduce", nbytes, algorithm="ring", protocol="Simple")
        return c.channels, c.threads

    assert ring_simple(32 * 1024) == (1, 512)
    assert ring_simple(32 * 1024 - 1) == (1, 256)
    assert ring_simple(64 * 1024) == (2, 512)
    assert ring_simple(1 << 30) == (16, 512)


def test_ring_plateau_raises_latency_of_large_multi_node_rings():
    s = h100(2)
    small = tuner.choose(s, "all_reduce", 16 * 1024 - 1, algorithm="ring", protocol="Simple")
    large = tuner.choose(s, "all_reduce", 16 * 1024, algorithm="ring", protocol="Simple")
    assert small.latency_us == pytest.approx(131.6)
    assert large.latency_us == pytest.approx(131.6 * 1.4)


def test_protocol_switch_on_two_h100_nodes():
    """LL for small messages, Simple for large ones (no NVLS: multicast off)."""
    s = h100(2, multicast=False)
    assert tuner.choose(s, "all_reduce", 1024).protocol == "LL"
    assert tuner.choose(s, "all_reduce", 1 << 30).protocol == "Simple"
    assert tuner.choose(s, "all_gather", 1024).protocol == "LL"
    assert tuner.choose(s, "all_gather", 1 << 30) .protocol == "Simple"
    assert tuner.choose(s, "all_gather", 1 << 30).algorithm == "ring"


def test_nvls_wins_at_large_sizes_on_one_h100_node():
    s = h100(1)
    big = tuner.choose(s, "all_reduce", 1 << 30)
    assert (big.algorithm, big.protocol) == ("nvls", "Simple")
    assert big.channels == 16
    assert tuner.choose(s, "all_reduce", 1024).algorithm == "ring"
    assert "nvls" not in {c.algorithm for c in tuner.candidates(h100(1, multicast=False), "all_reduce", 1 << 30)}


def test_hopper_ll_cap_changes_in_2_21():
    """One H100 node: llMaxBw 87.7 up to 2.20, 141 from 2.21."""
    old = entry(h100(1, version="2.20"), "all_reduce", "ring", "LL")
    new = entry(h100(1, version="2.21"), "all_reduce", "ring", "LL")
    assert old.bandwidth_GBps == pytest.approx(87.7 * 8 / 14)
    assert new.bandwidth_GBps == pytest.approx(141.0 * 8 / 14)


def test_tree_simple_latency_changes_in_2_23():
    """<= 2.21: Tree Simple base 0 and hwLat 28 everywhere; 2.23: base 8.4, hwLat 4 / 14."""
    old = entry(h100(2, version="2.21"), "all_reduce", "tree", "Simple")
    new = entry(h100(2, version="2.23"), "all_reduce", "tree", "Simple")
    assert old.latency_us == pytest.approx(2 * (7 * 28 + 28))
    assert new.latency_us == pytest.approx(92.4)


def test_pat_appears_in_2_23_for_one_gpu_per_node():
    def algorithms(version):
        s = NcclSystem(90, 4, 1, "nvswitch", 370.8, 48.0, 1, 50.0, version=version)
        return {c.algorithm for c in tuner.candidates(s, "all_gather", 1 << 20)}

    assert "pat" not in algorithms("2.21")
    assert "pat" in algorithms("2.23")
    assert "pat" not in {c.algorithm for c in tuner.candidates(h100(4), "all_gather", 1 << 20)}


def test_blackwell_nvls_changes_in_2_28():
    """B200 one node: v2.27's NVLS formula gives busbw ~933; 2.28's efficiency 0.74 lowers it (720)."""
    def nvls_busbw(version):
        return entry(b200(version), "all_reduce", "nvls", "Simple").bandwidth_GBps * 2 * 7 / 8

    assert nvls_busbw("2.27") == pytest.approx(933.3, abs=0.1)
    assert nvls_busbw("2.28") == pytest.approx(720.0, abs=0.1)


def test_nvlstree_net_latency_changes_in_2_29():
    assert entry(h100(2, version="2.28"), "all_reduce", "nvls_tree", "Simple").latency_us == pytest.approx(53.0)
    assert entry(h100(2, version="2.29"), "all_reduce", "nvls_tree", "Simple").latency_us == pytest.approx(25 + 2 * 20.9)


@pytest.mark.parametrize("version", ["2.17", "2.31", "3.0", "latest"])
def test_unknown_version_is_an_input_error(version):
    with pytest.raises(InputError) as err:
        tuner.choose(dataclasses.replace(h100(1), version=version), "all_reduce", 1024)
    assert err.value.field == "nccl_version"
    assert "2.18" in str(err.value) and "2.30" in str(err.value)


def test_forcing_an_unavailable_choice_names_the_field():
    with pytest.raises(InputError) as err:
        tuner.choose(h100(2), "all_gather", 1024, algorithm="tree")
    assert err.value.field == "algorithm" and "ring/LL" in str(err.value)
    pcie = NcclSystem(80, 1, 8, "pcie", 0.0, 24.0, 0, 0.0, version="2.27")
    with pytest.raises(InputError) as err:
        tuner.choose(pcie, "all_reduce", 1024, algorithm="ring", protocol="LL128")
    assert err.value.field == "protocol"


def test_broadcast_and_reduce_are_ring_only():
    for kind in ("broadcast", "reduce"):
        options = tuner.candidates(h100(2), kind, 1 << 20)
        assert {c.algorithm for c in options} == {"ring"}
        simple = [c for c in options if c.protocol == "Simple"][0]
        assert simple.bandwidth_GBps == pytest.approx(8 * 48)


def test_all_to_all_inside_a_node_uses_the_ring_bandwidth():
    """§10.1: S (n-1)/n over C_ring b_intra = 360 GB/s on H100; 32 channels per peer."""
    c = tuner.choose(h100(1), "all_to_all", 1 << 30)
    assert (c.algorithm, c.protocol) == ("p2p", "Simple")
    assert c.bandwidth_GBps * 7 / 8 == pytest.approx(360.0)
    assert p2p.channels(h100(1)) == (32, 32)
    assert 7 <= c.latency_us <= 16


def test_all_to_all_across_nodes_is_bound_by_the_nic_share():
    """busbw_max = b_nic,GPU (n-1)/(n-g): 48 x 15/8 on two H100 nodes."""
    c = tuner.choose(h100(2), "all_to_all", 1 << 30)
    assert c.bandwidth_GBps * 15 / 16 == pytest.approx(48 * 15 / 8)
    assert c.n_inter == 1
    assert tuner.choose(h100(2), "all_to_all", 1024).protocol == "LL"


def test_send_recv():
    inside = tuner.choose(NcclSystem(90, 1, 2, "nvswitch", 370.8, 48.0, 0, 0.0, version="2.27"), "send_recv", 1 << 28)
    across = tuner.choose(NcclSystem(90, 2, 1, "nvswitch", 370.8, 48.0, 1, 50.0, version="2.27"), "send_recv", 1 << 28)
    assert inside.bandwidth_GBps == pytest.approx(360.0)
    assert across.bandwidth_GBps == pytest.approx(48.0)
    with pytest.raises(InputError) as err:
        tuner.choose(h100(1), "send_recv", 1024, algorithm="ring")
    assert err.value.field == "algorithm"


def test_n_inter_counts_network_steps():
    s = h100(4, multicast=False)
    assert tuner.choose(s, "all_reduce", 1 << 30, algorithm="ring").n_inter == 6
    assert tuner.choose(s, "all_gather", 1 << 30, algorithm="ring").n_inter == 3
    assert tuner.choose(s, "all_reduce", 1 << 30, algorithm="tree").n_inter == 4
    assert tuner.choose(h100(1), "all_reduce", 1 << 30).n_inter == 0


# Properties ------------------------------------------------------------------------------

GPUS = {80: (240.0, 24.0), 90: (370.8, 48.0), 100: (721.8, 48.0)}
"""NCCL's NVLink and PCIe bandwidths of A100, H100 and B200 (§3)."""

systems = st.builds(
    lambda sm, nodes, gpn, nics, nic, version, mc: NcclSystem(
        sm, nodes, gpn, "nvswitch", GPUS[sm][0], GPUS[sm][1], min(nics, gpn) if nodes > 1 else 0,
        nic if nodes > 1 else 0.0, multicast=mc, version=version,
    ),
    sm=st.sampled_from(sorted(GPUS)),
    nodes=st.sampled_from([1, 2, 3, 4, 8, 16]),
    gpn=st.sampled_from([1, 2, 4, 8]),
    nics=st.sampled_from([1, 2, 4, 8]),
    nic=st.sampled_from([12.5, 25.0, 50.0]),
    version=st.sampled_from(tables.supported_versions()),
    mc=st.booleans(),
)
"""Catalogue-like systems. Over arbitrary bandwidths NCCL's own model is not monotone: the
search maximises C x speed, not C, and the LL128 and tree caps are per channel, so a faster
NIC can yield fewer, faster channels and a lower cap (e.g. sm80, 2 x 2 GPUs, NVLink 50,
one NIC of 90 vs 180 GB/s: ring LL128 6 x 15 vs 4 x 24 channels)."""
kinds = st.sampled_from(tuner.KINDS)
sizes = st.integers(1, 1 << 34)


@settings(max_examples=300, deadline=None)
@given(systems, kinds, sizes, st.sampled_from([2.0, 4.0]))
def test_more_nic_bandwidth_never_slows_the_choice(system, kind, nbytes, factor):
    faster = dataclasses.replace(system, nic_GBps=system.nic_GBps * factor)
    assert tuner.choose(faster, kind, nbytes).time_us <= tuner.choose(system, kind, nbytes).time_us * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(systems, kinds, sizes, st.floats(1.0, 2.0))
def test_more_nvlink_bandwidth_never_slows_the_choice(system, kind, nbytes, factor):
    faster = dataclasses.replace(system, nvlink_GBps=system.nvlink_GBps * factor)
    assert tuner.choose(faster, kind, nbytes).time_us <= tuner.choose(system, kind, nbytes).time_us * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(systems, kinds, sizes, st.integers(0, 1 << 30))
def test_more_bytes_never_take_less_time(system, kind, nbytes, extra):
    """Monotone in S, except where NCCL's own rules are not (see the two tests below): all-reduce
    is compared without Tree (its correction factor steps), p2p at a fixed protocol."""

    def time(size):
        if kind in tuner.P2P_KINDS:
            return tuner.choose(system, kind, size, protocol="Simple").time_us
        options = [c for c in tuner.candidates(system, kind, size) if c.algorithm != "tree"]
        return min(c.time_us for c in options)

    assert time(nbytes + extra) >= time(nbytes) * (1 - 1e-9)


def test_nccls_estimate_drops_where_the_tree_correction_rises():
    """NCCL's estimate itself is not monotone in S: Tree Simple's factor is 0.5 up to 2 MiB and
    0.6 from there, so 2 MiB is estimated faster than 2 MiB - 1 byte."""
    s = NcclSystem(80, 2, 2, "nvswitch", 240.0, 24.0, 1, 12.5, version="2.20")
    below = tuner.choose(s, "all_reduce", (1 << 21) - 1, algorithm="tree", protocol="Simple")
    at = tuner.choose(s, "all_reduce", 1 << 21, algorithm="tree", protocol="Simple")
    assert at.time_us < below.time_us


def test_p2p_switches_protocol_by_threshold_not_by_time():
    """LL while the bytes to one peer are <= channels x 16 KiB, Simple above, as NCCL does."""
    s = h100(2)
    per_peer, _ = p2p.channels(s)
    limit = per_peer * 16384 * s.n_ranks
    assert tuner.choose(s, "all_to_all", limit).protocol == "LL"
    assert tuner.choose(s, "all_to_all", limit + s.n_ranks).protocol == "Simple"


def test_graph_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Graph(1, 1.0, 1.0).channels = 2


def test_amd_hosts_and_a_plugin_latency_enter_the_ring_latency():
    """AMD: netOverhead 2 µs and llMaxBw row 1 (22.5 on 2 nodes); EFA's 75 µs is added once per
    inter-node step, twice for Simple (the flush)."""
    s = dataclasses.replace(h100(2, multicast=False), cpu="amd", transport="efa", latency_inter_us=75.0)
    ll = entry(s, "all_reduce", "ring", "LL")
    simple = entry(s, "all_reduce", "ring", "Simple")
    assert ll.latency_us == pytest.approx(6.6 + 28 * 2.0 + 2 * (2.7 + 75))
    assert ll.bandwidth_GBps == pytest.approx(22.5 * 16 / 30)
    assert simple.latency_us == pytest.approx(8.4 + 28 * 6.0 + 2 * (14 + 150))


def test_collnet_adds_its_algorithms_across_nodes_only():
    s = dataclasses.replace(h100(4), collnet=True)
    across = {c.algorithm for c in tuner.candidates(s, "all_reduce", 1 << 28)}
    assert {"collnet_direct", "collnet_chain", "nvls", "nvls_tree"} <= across
    inside = {c.algorithm for c in tuner.candidates(dataclasses.replace(h100(1), collnet=True), "all_reduce", 1 << 28)}
    assert not {"collnet_direct", "collnet_chain", "nvls_tree"} & inside


def test_one_nvlink_domain_of_72_gpus():
    """GB200 NVL72 as one node: NVLS runs on 24 channels (sm100, one NVLink domain)."""
    s = NcclSystem(100, 1, 72, "nvswitch", 721.8, 48.0, 0, 0.0, multicast=True, cpu="arm", version="2.29")
    big = tuner.choose(s, "all_reduce", 1 << 30)
    assert big.algorithm == "nvls" and big.channels == 24
    assert search(s)["nvls"].channels == 32


def test_a_single_rank_costs_nothing():
    s = NcclSystem(90, 1, 1, "nvswitch", 370.8, 48.0, 0, 0.0, version="2.27")
    assert tuner.choose(s, "all_reduce", 1 << 20).time_us == 0.0


def test_every_table_block_cites_its_source():
    raw = tables._raw()
    for name, section in raw.items():
        if "source" in section:
            continue
        for key, block in section.items():
            assert isinstance(block, dict) and "source" in block, f"{name}.{key} has no source"


@settings(max_examples=200, deadline=None)
@given(systems, st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce"]), sizes)
def test_choose_is_the_fastest_candidate(system, kind, nbytes):
    assert tuner.choose(system, kind, nbytes) == min(tuner.candidates(system, kind, nbytes), key=lambda c: c.time_us)
