"""Topologies: bundled files build, routes follow the fabric, bad files fail loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.network.topology import Topology, bundled_topologies, load_topology

A100 = "dgx-a100-superpod"
H100 = "dgx-h100-superpod"
PCIE = "pcie-ethernet-small"
REPO_TOPOLOGIES = Path(__file__).resolve().parents[1] / "topologies"


def edge_kinds(topo: Topology, a: int, b: int) -> list[str]:
    return [topo.link_kind[i] for i in topo.path_ids(a, b)]


def vertices(topo: Topology, a: int, b: int) -> list:
    path = topo.path(a, b)
    return [path[0][0], *(v for _, v in path)]


def edge_bandwidths(topo: Topology, a: int, b: int) -> list[float]:
    return [float(topo.bandwidth_Bps[i]) for i in topo.path_ids(a, b)]


# ----------------------------------------------------------------- bundled files


def test_the_three_required_files_are_bundled():
    assert {A100, H100, PCIE} <= set(bundled_topologies())


@pytest.mark.parametrize("name", bundled_topologies())
def test_each_bundled_file_loads_and_builds_what_it_describes(name):
    topo = load_topology(name)
    spec = topo.spec
    assert topo.n_nodes == spec.fabric.max_nodes
    assert topo.gpus_per_node == spec.node.gpus
    assert topo.n_gpus == topo.n_nodes * topo.gpus_per_node
    gpu_vertices = [v for v in topo.graph if v[0] == "gpu"]
    nic_vertices = [v for v in topo.graph if v[0] == "nic"]
    assert len(gpu_vertices) == topo.n_gpus
    assert len(nic_vertices) == topo.n_nodes * spec.node.nics
    assert topo.power.total_W > 0 and topo.power.n_switches >= 1
    assert spec.source and spec.node.power_source and spec.fabric.switch_power_source


@pytest.mark.parametrize(
    ("name", "n_gpus", "nodes", "gpu"),
    [(A100, 1120, 140, "a100-80gb"), (H100, 1016, 127, "h100-sxm"), (PCIE, 32, 4, "l40s")],
)
def test_node_and_gpu_counts_of_the_shipped_systems(name, n_gpus, nodes, gpu):
    topo = load_topology(name)
    assert (topo.n_gpus, topo.n_nodes, topo.gpu) == (n_gpus, nodes, gpu)


def test_physical_switch_counts_follow_from_ports():
    # A100 SuperPOD: 56 rail leaves (20 down + 20 up = 40 ports each), 8 spine groups of
    # 7 x 40-port switches (140 down + 140 up), core 1120 ports / 40 = 28.
    assert load_topology(A100).power.n_switches == 56 + 56 + 28
    # H100 SuperPOD: 32 leaves of 64 ports, spine 32 x 32 uplinks / 64 = 16.
    assert load_topology(H100).power.n_switches == 32 + 16
    assert load_topology(PCIE).power.n_switches == 1


def test_power_total_is_nodes_plus_switches():
    p = load_topology(H100).power
    assert p.total_W == pytest.approx(127 * 4600 + 48 * 1300)


def test_bundled_name_and_path_give_the_same_topology():
    by_name = load_topology(PCIE)
    by_path = load_topology(REPO_TOPOLOGIES / f"{PCIE}.yaml")
    assert by_name.links == by_path.links
    assert list(by_name.bandwidth_Bps) == list(by_path.bandwidth_Bps)


# ----------------------------------------------------------------- graph invariants


@pytest.mark.parametrize("name", [A100, H100, PCIE])
def test_edge_ids_are_dense_and_match_the_arrays(name):
    topo = load_topology(name, 64 if name != PCIE else 32)
    ids = sorted(d["id"] for _, _, d in topo.graph.edges(data=True))
    assert ids == list(range(topo.graph.number_of_edges()))
    assert topo.n_edges == len(topo.bandwidth_Bps) == len(topo.link_kind) == len(topo.links)
    for u, v, d in topo.graph.edges(data=True):
        assert topo.links[d["id"]] == (u, v)
        assert topo.bandwidth_Bps[d["id"]] == d["bandwidth_Bps"] > 0
        assert topo.link_kind[d["id"]] == d["kind"]
        assert topo.graph.has_edge(v, u), "every cable has both directions"
        assert topo.graph[v][u]["bandwidth_Bps"] == d["bandwidth_Bps"]
        assert d["latency_s"] >= 0
    assert set(topo.link_kind) <= {"nvlink", "pcie", "nic", "fabric"}


def test_ids_are_the_same_on_every_build():
    a, b = load_topology(A100, 256), load_topology(A100, 256)
    assert a.links == b.links
    assert a.path_ids(3, 250) == b.path_ids(3, 250)


def test_graph_grows_with_the_fleet():
    small, large = load_topology(A100, 16), load_topology(A100, 640)
    assert small.n_nodes == 2 and large.n_nodes == 80
    assert small.graph.number_of_nodes() < large.graph.number_of_nodes()
    assert small.n_edges < large.n_edges


def test_a_fleet_smaller_than_a_node_builds_one_partial_node():
    topo = load_topology(A100, 4)
    assert (topo.n_nodes, topo.gpus_per_node, topo.n_gpus) == (1, 4, 4)
    assert [topo.nic_of(g) for g in range(4)] == [0, 1, 2, 3]


# ----------------------------------------------------------------- routes


def test_intra_node_path_is_gpu_switch_gpu_at_nvswitch_bandwidth():
    topo = load_topology(A100, 16)
    path = topo.path(0, 5)
    assert path == ((("gpu", 0), ("nvswitch", 0)), (("nvswitch", 0), ("gpu", 5)))
    assert edge_kinds(topo, 0, 5) == ["nvlink", "nvlink"]
    assert edge_bandwidths(topo, 0, 5) == [300e9, 300e9]
    assert topo.path_latency_s(0, 5) == pytest.approx(2.0e-6)  # scale_up.latency_us


def test_h100_intra_node_bandwidth_is_450_GBps():
    topo = load_topology(H100, 8)
    assert edge_bandwidths(topo, 2, 7) == [450e9, 450e9]


def test_pcie_intra_node_path_goes_through_the_pcie_switch():
    topo = load_topology(PCIE)
    assert topo.path(9, 14) == ((("gpu", 9), ("pcie", 1)), (("pcie", 1), ("gpu", 14)))
    assert edge_kinds(topo, 9, 14) == ["pcie", "pcie"]
    assert edge_bandwidths(topo, 9, 14) == [32e9, 32e9]


@pytest.mark.parametrize(("name", "nic_Bps"), [(A100, 25e9), (H100, 50e9), (PCIE, 12.5e9)])
def test_inter_node_path_leaves_through_the_senders_rail_nic_and_is_nic_limited(name, nic_Bps):
    topo = load_topology(name, 32)
    for src, dst in [(0, 8), (3, 12), (5, 30), (31, 2)]:
        path = topo.path(src, dst)
        nic = ("nic", topo.node_of(src), topo.nic_of(src))
        assert nic in [v for edge in path for v in edge], "sender's rail NIC is on the path"
        assert ("nic", topo.node_of(dst), topo.nic_of(dst)) in [v for edge in path for v in edge]
        bws = edge_bandwidths(topo, src, dst)
        assert min(bws) == nic_Bps
        assert topo.link_kind[topo.path_ids(src, dst)[bws.index(min(bws))]] == "nic"


def test_rails_map_gpu_k_to_nic_k_on_dgx_and_halves_on_two_nic_nodes():
    assert [load_topology(H100, 16).nic_of(g) for g in range(8, 16)] == list(range(8))
    assert [load_topology(PCIE).nic_of(g) for g in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_same_rail_paths_in_one_unit_stay_under_one_leaf():
    topo = load_topology(A100, 160)  # one full unit of 20 nodes
    for src, dst in [(0, 8), (3, 19 * 8 + 3), (7, 10 * 8 + 7)]:
        verts = [v for edge in topo.path(src, dst) for v in edge]
        switches = {v for v in verts if v[0] in ("leaf", "spine", "core")}
        assert switches == {("leaf", topo.nic_of(src))}
        assert len(topo.path(src, dst)) == 4  # gpu-nic, nic-leaf, leaf-nic, nic-gpu


def test_same_rail_across_units_turns_at_the_rail_spine_group_cross_rail_at_the_core():
    topo = load_topology(A100, 320)  # two units of 20 nodes
    other_unit = 20 * 8
    same_rail = [v for e in topo.path(2, other_unit + 2) for v in e]
    assert ("spine", 2) in same_rail and ("core", 0) not in same_rail
    cross_rail = [v for e in topo.path(2, other_unit + 5) for v in e]
    assert ("core", 0) in cross_rail and ("spine", 5) in cross_rail


def test_two_tier_rail_fabric_turns_at_the_spine():
    topo = load_topology(H100, 512)  # two units of 32 nodes
    verts = vertices(topo, 1, 32 * 8 + 6)
    assert [v for v in verts if v[0] in ("leaf", "spine", "core")] == [("leaf", 1), ("spine", 0), ("leaf", 8 + 6)]


def test_inter_node_latency_adds_nics_and_switches():
    topo = load_topology(A100, 32)
    # Same leaf: 2 NIC traversals (1.5 us) + 1 switch (0.3 us).
    assert topo.path_latency_s(0, 8) == pytest.approx(2 * 1.5e-6 + 0.3e-6)
    # Cross rail: leaf, spine group, core, spine group, leaf = 5 switches.
    assert topo.path_latency_s(0, 9) == pytest.approx(2 * 1.5e-6 + 5 * 0.3e-6)


def test_path_to_self_is_empty_and_unknown_gpus_raise():
    topo = load_topology(A100, 16)
    assert topo.path(3, 3) == () and topo.path_ids(3, 3) == () and topo.path_latency_s(3, 3) == 0.0
    with pytest.raises(ValueError, match="not in this topology"):
        topo.path(0, 16)
    with pytest.raises(ValueError):
        topo.node_of(-1)


def test_paths_are_cached():
    topo = load_topology(A100, 64)
    assert topo.path(1, 60) is topo.path(1, 60)
    assert topo.path_ids(1, 60) is topo.path_ids(1, 60)


@pytest.fixture(scope="module")
def grown_a100() -> Topology:
    return load_topology(A100, 8 * 300)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_path_is_a_simple_walk_of_graph_edges_and_symmetric(grown_a100, data):
    topo = grown_a100
    a = data.draw(st.integers(0, topo.n_gpus - 1))
    b = data.draw(st.integers(0, topo.n_gpus - 1))
    path, ids = topo.path(a, b), topo.path_ids(a, b)
    if a == b:
        assert path == ()
        return
    assert path[0][0] == ("gpu", a) and path[-1][1] == ("gpu", b)
    for (u, v), (u2, _), i in zip(path, path[1:] + ((path[-1][1], None),), ids):
        assert topo.graph[u][v]["id"] == i
        assert v == u2, "consecutive edges share a vertex"
    verts = [path[0][0]] + [v for _, v in path]
    assert len(verts) == len(set(verts)), "no vertex visited twice"
    assert len(topo.path(b, a)) == len(path)
    assert topo.path_latency_s(b, a) == topo.path_latency_s(a, b)
    assert sorted(topo.link_kind[i] for i in topo.path_ids(b, a)) == sorted(topo.link_kind[i] for i in ids)


@pytest.fixture(scope="module")
def grown_h100() -> Topology:
    return load_topology(H100, 2400)


@settings(max_examples=60, deadline=None)
@given(src=st.integers(0, 2399), dst=st.integers(0, 2399))
def test_paths_are_no_longer_than_the_fabric_allows(grown_h100, src, dst):
    n = len(grown_h100.path(src, dst))
    if src == dst:
        assert n == 0
    elif src // 8 == dst // 8:
        assert n == 2
    else:
        assert n in (4, 6)  # same leaf, or leaf-spine-leaf in a 2-tier fabric


# ----------------------------------------------------------------- growth


def test_a_fleet_larger_than_the_file_grows_by_units_and_keeps_oversubscription():
    topo = load_topology(A100, 3072)  # 384 nodes > 140
    assert (topo.n_nodes, topo.n_gpus, topo.n_units) == (384, 3072, 20)
    leaves = {v for v in topo.graph if v[0] == "leaf"}
    assert len(leaves) == 20 * 8
    # Leaf uplink = 20 nodes x 25 GB/s / oversubscription 1.0.
    assert topo.graph[("leaf", 0)][("spine", 0)]["bandwidth_Bps"] == 20 * 25e9
    assert topo.graph[("leaf", 159)][("spine", 7)]["bandwidth_Bps"] == 20 * 25e9
    # Each rail spine group now has 20 leaves below it; its core uplink grew with them.
    assert topo.graph.in_degree(("spine", 3)) == 20 + 1
    assert topo.graph[("spine", 3)][("core", 0)]["bandwidth_Bps"] == 20 * 20 * 25e9


def test_growth_is_refused_when_grow_is_false():
    with pytest.raises(InputError) as err:
        load_topology(PCIE, 40)
    assert err.value.field == "fabric.max_nodes"
    assert err.value.file.endswith(f"{PCIE}.yaml")
    assert "32 GPUs" in str(err.value) and "4 nodes" in str(err.value)


@pytest.mark.parametrize("n_gpus", [12, 1025, 9])
def test_a_fleet_of_partial_nodes_is_refused(n_gpus):
    with pytest.raises(InputError) as err:
        load_topology(A100, n_gpus)
    assert err.value.field == "n_gpus"
    assert "multiple of 8" in str(err.value)


@pytest.mark.parametrize("n_gpus", [0, -8, 2.5, True])
def test_a_fleet_size_must_be_a_positive_integer(n_gpus):
    with pytest.raises(InputError, match="positive whole number"):
        load_topology(A100, n_gpus)


def test_3072_gpus_build():
    # build time: benchmarks/hot_paths.py
    for name in (A100, H100):
        topo = load_topology(name, 3072)
        assert topo.n_gpus == 3072


def test_path_lookups_across_a_large_fleet_are_cached_and_connect_their_gpus():
    # lookup time: benchmarks/hot_paths.py
    topo = load_topology(A100, 3072)
    for src in range(0, 3072, 3):
        dst = 3071 - src
        ids = topo.path_ids(src, dst)
        assert topo.path_ids(src, dst) is ids
        assert sorted(ids) == sorted(topo.path_ids_many([src], [dst])[0].tolist())
        verts = vertices(topo, src, dst)
        assert verts[0] == ("gpu", src) and verts[-1] == ("gpu", dst)


# ----------------------------------------------------------------- bad files


def base_spec() -> dict:
    return yaml.safe_load((REPO_TOPOLOGIES / f"{A100}.yaml").read_text())


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "topo.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def error_of(path: Path, n_gpus: int | None = None) -> InputError:
    with pytest.raises(InputError) as err:
        load_topology(path, n_gpus)
    assert err.value.file == str(path)
    return err.value


def test_a_written_copy_of_a_bundled_file_loads(tmp_path):
    topo = load_topology(write(tmp_path, base_spec()), 64)
    assert topo.n_gpus == 64


def test_unknown_bundled_name_lists_the_bundled_names():
    with pytest.raises(InputError) as err:
        load_topology("dgx-z100", file="scenarios/x.yaml")
    assert (err.value.file, err.value.field) == ("scenarios/x.yaml", "topology")
    for name in bundled_topologies():
        assert name in str(err.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="not found") as err:
        load_topology(path)
    assert err.value.file == str(path)


def test_not_yaml(tmp_path):
    err = error_of(write(tmp_path, "name: [unclosed\nnode: {"))
    assert "not valid YAML" in str(err) and "line" in str(err)


@pytest.mark.parametrize("text", ["- a\n- b\n", "", "just a string\n"])
def test_not_a_mapping(tmp_path, text):
    err = error_of(write(tmp_path, text))
    assert "expected a mapping" in str(err) and "fabric" in str(err)


def mutate(path_keys: str, value=None, *, delete: bool = False) -> dict:
    data = base_spec()
    *parents, last = path_keys.split(".")
    target = data
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("keys", "value", "field", "says"),
    [
        ("node.gpuz", 8, "node.gpuz", "allowed here: gpus, scale_up, nics"),
        ("colour", "red", "colour", "allowed here: name, source, gpu, node, fabric"),
        ("node.scale_up.speed", 1, "node.scale_up.speed", "allowed here: kind, bandwidth_GBps, latency_us"),
        ("node.gpus", "eight", "node.gpus", "expected an integer in [1, 65536]"),
        ("node.nic_bandwidth_Gbps", 0, "node.nic_bandwidth_Gbps", "in (0, 8000000]"),
        ("node.scale_up.bandwidth_GBps", -300, "node.scale_up.bandwidth_GBps", "in (0, 1000000]"),
        ("node.pcie_bandwidth_GBps", 0, "node.pcie_bandwidth_GBps", "in (0, 1000000]"),
        ("fabric.oversubscription", 0, "fabric.oversubscription", "in (0, 1000]"),
        ("fabric.kind", "torus", "fabric.kind", "'rail_optimized' or 'fat_tree'"),
        ("fabric.tiers", 4, "fabric.tiers", "in [1, 3]"),
        ("node.scale_up.kind", "nvlink", "node.scale_up.kind", "'nvswitch', 'mesh', 'nvlink_bridge' or 'pcie'"),
        ("fabric.grow", "maybe", "fabric.grow", "true or false"),
        ("node.nic_latency_us", -1, "node.nic_latency_us", "in [0, 1000000]"),
        ("node.scale_up", 300, "node.scale_up", "valid dictionary"),
    ],
)
def test_bad_field_names_file_field_and_what_is_allowed(tmp_path, keys, value, field, says):
    err = error_of(write(tmp_path, mutate(keys, value)))
    assert err.field == field
    assert says in str(err)


@pytest.mark.parametrize("keys", ["fabric.max_nodes", "node.nics", "name", "node.scale_up.latency_us"])
def test_missing_field(tmp_path, keys):
    err = error_of(write(tmp_path, mutate(keys, delete=True)))
    assert err.field == keys
    assert "required field is missing" in str(err)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"node.nics": 3}, "node.nics", "nics must divide gpus"),
        ({"node.nics": 16}, "node.nics", "nics must divide gpus"),
        ({"fabric.tiers": 1}, "fabric.tiers", "rail_optimized needs 2 or 3 tiers"),
        ({"fabric.kind": "fat_tree"}, "fabric.units_per_group", "needs units_per_group"),
        ({"fabric.units_per_group": 2}, "fabric.units_per_group", "only by fat_tree with 3 tiers"),
        ({"fabric.kind": "fat_tree", "fabric.tiers": 1}, "fabric.max_nodes", "one switch"),
        (
            {"fabric.kind": "fat_tree", "fabric.tiers": 1, "fabric.max_nodes": 20},
            "fabric.grow",
            "cannot grow",
        ),
    ],
)
def test_inconsistent_fabric(tmp_path, changes, field, says):
    data = base_spec()
    for keys, value in changes.items():
        section, key = keys.split(".")
        data[section][key] = value
    err = error_of(write(tmp_path, data))
    assert err.field == field
    assert says in str(err)


def test_fat_tree_with_three_tiers_routes_through_spine_groups_and_core(tmp_path):
    data = base_spec()
    data["fabric"].update(kind="fat_tree", units_per_group=2, nodes_per_unit=4, oversubscription=2.0)
    topo = load_topology(write(tmp_path, data), 8 * 4 * 5)  # 5 units -> spine groups 0, 0, 1, 1, 2
    assert {v for v in topo.graph if v[0] == "spine"} == {("spine", 0), ("spine", 1), ("spine", 2)}
    # Every NIC of a node goes to the node's unit leaf.
    assert {topo.path(g, 8)[1][1] for g in range(8)} == {("leaf", 0)}
    same_group = [v for e in topo.path(0, 4 * 8) for v in e]  # unit 0 -> unit 1
    assert ("spine", 0) in same_group and ("core", 0) not in same_group
    other_group = [v for e in topo.path(0, 4 * 8 * 4) for v in e]  # unit 0 -> unit 4
    assert ("core", 0) in other_group and ("spine", 2) in other_group
    # Leaf uplink: 4 nodes x 8 NICs x 25 GB/s / 2.
    assert topo.graph[("leaf", 0)][("spine", 0)]["bandwidth_Bps"] == 4 * 8 * 25e9 / 2


@pytest.mark.parametrize("name,n_gpus", [("dgx-a100-superpod", 3072), ("dgx-h100-superpod", 512), ("pcie-ethernet-small", 32)])
def test_vectorised_routes_cross_the_same_links_as_single_paths(name, n_gpus):
    topo = load_topology(name, n_gpus)
    rng = np.random.default_rng(3)
    src = rng.integers(0, n_gpus, 500)
    dst = np.where(rng.random(500) < 0.3, (src // topo.gpus_per_node) * topo.gpus_per_node, rng.integers(0, n_gpus, 500))
    ids, pair = topo.path_ids_many(src, dst)
    for k in range(500):
        assert sorted(ids[pair == k].tolist()) == sorted(topo.path_ids(int(src[k]), int(dst[k])))


def test_the_networkx_graph_holds_every_edge_with_its_attributes():
    topo = load_topology("dgx-a100-superpod", 64)
    g = topo.graph
    assert g.number_of_edges() == topo.n_edges
    u, v = topo.links[5]
    assert g.edges[u, v]["id"] == 5
    assert g.edges[u, v]["bandwidth_Bps"] == topo.bandwidth_Bps[5]
