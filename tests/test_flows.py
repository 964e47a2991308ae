"""Flow-level link sharing: known answers, max-min fairness, collectives, properties, speed."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.hardware.catalog import load_catalog
from simulator.core.errors import InputError, SimulationError
from simulator.network.collectives import nccl_choice, plan_collective
from simulator.network.efficiency import NetworkEfficiency
from simulator.network.flows import FlowNetwork, max_min_speeds
from simulator.network.nccl.correction import corrected_time_s
from simulator.network.topology import load_topology

def planned(topology, *args, **kwargs):
    """plan_collective on the GPUs of the topology's catalog entry (the simulation passes its device's)."""
    kwargs.setdefault("generation", load_catalog().get(topology.gpu).generation)
    return plan_collective(topology, *args, **kwargs)



def simulate(bandwidth, flows):
    """Run flows ``(start_s, link_ids, link_bytes, latency_s)``; return (finish times, network)."""
    env = simpy.Environment()
    net = FlowNetwork(env, np.asarray(bandwidth, dtype=float))
    ends = [None] * len(flows)

    def one(i, start, links, nbytes, latency):
        yield env.timeout(start)
        yield net.transfer(links, nbytes, latency, tag=i)
        ends[i] = env.now

    for i, f in enumerate(flows):
        env.process(one(i, *f))
    env.run()
    return ends, net


# --------------------------------------------------------------------------- known answers


def test_a_single_flow_takes_its_standalone_time():
    # 3 links; the 2nd is the bottleneck: 4e9 B / 1e9 B/s = 4 s
    ends, net = simulate([2e9, 1e9, 8e9], [(0.5, [0, 1, 2], [2e9, 4e9, 4e9], 0.0)])
    assert ends == [pytest.approx(4.5, rel=1e-12)]
    (rec,) = net.records()
    assert rec.slowdown == pytest.approx(1.0)


def test_latency_adds_exactly():
    ends, _ = simulate([1e9], [(0.0, [0], [1e9], 3e-6)])
    assert ends == [pytest.approx(1.0 + 3e-6, rel=1e-12)]
    ends, _ = simulate([1e9], [(0.0, [0], [0.0], 3e-6)])  # no bytes: latency only
    assert ends == [pytest.approx(3e-6, rel=1e-12)]


def test_two_identical_flows_on_one_link_each_take_twice_as_long():
    ends, net = simulate([1e9], [(0.0, [0], [1e9], 0.0), (0.0, [0], [1e9], 0.0)])
    assert ends == [pytest.approx(2.0), pytest.approx(2.0)]
    assert [r.slowdown for r in net.records()] == [pytest.approx(2.0)] * 2


def test_a_late_flow_shares_only_while_both_run():
    # A alone for 0.5 s (half done), then both at half speed: A's rest takes 1 s, B has 0.5 left
    ends, _ = simulate([1.0], [(0.0, [0], [1.0], 0.0), (0.5, [0], [1.0], 0.0)])
    assert ends == [pytest.approx(1.5), pytest.approx(2.0)]


def test_a_flow_sharing_only_a_non_bottleneck_link_is_not_slowed():
    # link 2 is shared but has room for both (0.5 + 0.5 B/s of 10 B/s)
    ends, net = simulate(
        [1.0, 1.0, 10.0],
        [(0.0, [0, 2], [1.0, 0.5], 0.0), (0.0, [1, 2], [1.0, 0.5], 0.0)],
    )
    assert ends == [pytest.approx(1.0), pytest.approx(1.0)]
    assert net.n_recomputes == 0  # the fast path took both


def test_max_min_a_flow_throttled_elsewhere_does_not_steal():
    """Link P (1 B/s): A and B. Link Q (2 B/s): B and C.

    P saturates first: A and B at speed 0.5 (0.5 B/s each). B uses only 0.5 B/s of Q,
    so C gets the other 1.5 B/s (speed 0.75), not an equal half: its 2 B take 4/3 s.
    """
    ends, _ = simulate(
        [1.0, 2.0],
        [
            (0.0, [0], [1.0], 0.0),  # A: P only, T=1
            (0.0, [0, 1], [1.0, 1.0], 0.0),  # B: P and Q, T=1 (P)
            (0.0, [1], [2.0], 0.0),  # C: Q only, T=1
        ],
    )
    assert ends == [pytest.approx(2.0), pytest.approx(2.0), pytest.approx(4 / 3)]


def test_max_min_speeds_direct():
    speeds = max_min_speeds(
        [np.array([0]), np.array([0, 1]), np.array([1])],
        [np.array([1.0]), np.array([1.0, 1.0]), np.array([2.0])],
        np.array([1.0, 2.0]),
    )
    assert speeds == pytest.approx([0.5, 0.5, 0.75])


def test_more_bandwidth_can_delay_another_flow_under_max_min():
    """Documented limitation (module docstring): max-min is not monotone for other flows.

    A crosses L and M (1 B each), B crosses M (1 B). M = 2 B/s.
    L = 0.5 B/s: T_A = 2, both at speed 0.8 (M full); B ends at 0.625, A at 2.125.
    L = 2 B/s:   T_A = 0.5, both at speed 0.5 (M full); both end at 1.0.
    """
    flows = [(0.0, [0, 1], [1.0, 1.0], 0.0), (0.0, [1], [1.0], 0.0)]
    slow_l, _ = simulate([0.5, 2.0], flows)
    fast_l, _ = simulate([2.0, 2.0], flows)
    assert slow_l == [pytest.approx(2.125), pytest.approx(0.625)]
    assert fast_l == [pytest.approx(1.0), pytest.approx(1.0)]


# --------------------------------------------------------------------------- collectives


@pytest.fixture(scope="module")
def a100_32():
    return load_topology("dgx-a100-superpod", 32)


@pytest.mark.parametrize(
    ("kind", "groups", "algo"),
    [
        ("all_reduce", [list(range(32))], "ring"),
        ("all_reduce", [list(range(32))], "tree"),
        ("all_gather", [list(range(8)), list(range(8, 16))], "auto"),
        ("reduce_scatter", [list(range(32))], "auto"),
        ("broadcast", [list(range(16))], "auto"),
        ("all_to_all", [list(range(8))], "auto"),
        ("send_recv", [(0, 8), (1, 9)], "auto"),
    ],
)
def test_a_collective_alone_takes_exactly_its_corrected_nccl_time(a100_32, kind, groups, algo):
    eff = NetworkEfficiency(node_efficiency=0.8, inter_efficiency=0.9, inter_latency_s=7e-6)
    plan = planned(a100_32, kind, groups, 3e8, algo, eff)
    env = simpy.Environment()
    net = FlowNetwork.for_topology(env, a100_32)
    env.process(net.run(plan))
    env.run()
    assert env.now == pytest.approx(plan.standalone_time_s(), rel=1e-12)
    choice = nccl_choice(plan.system, kind, 3e8, None if algo == "auto" else algo)
    assert env.now == pytest.approx(corrected_time_s(plan.system, choice, 3e8, eff), rel=1e-12)
    moved = net.bytes_by_link
    expected = np.zeros(a100_32.n_edges)
    for p in plan.phases:
        expected[p.link_ids] += p.link_bytes
    assert np.allclose(moved, expected)
    by_kind = net.bytes_by_kind()
    assert sum(by_kind.values()) == pytest.approx(expected.sum())


def test_two_copies_of_a_collective_share_its_links(a100_32):
    plan = planned(a100_32, "all_reduce", [list(range(32))], 1e9, "ring")
    (phase,) = plan.phases
    env = simpy.Environment()
    net = FlowNetwork.for_topology(env, a100_32)
    env.process(net.run(plan))
    env.process(net.run(plan))
    env.run()
    bw_time = plan.standalone_time_s() - phase.latency_s
    assert env.now == pytest.approx(phase.latency_s + 2 * bw_time, rel=1e-12)
    assert env.now > plan.standalone_time_s()
    on_nic = np.array(a100_32.link_kind)[phase.link_ids] == "nic"
    assert net.bytes_by_kind()["nic"] == pytest.approx(2 * phase.link_bytes[on_nic].sum())
    assert [r.slowdown for r in net.records()] == [pytest.approx(2 - phase.latency_s / plan.standalone_time_s())] * 2


def test_two_different_plans_on_the_same_links_take_longer_than_one(a100_32):
    """A DP all-reduce and an all-gather over the same 32 GPUs: each alone takes its NCCL time;
    started together they share the NICs, so the last ends after the longer one alone."""
    ar = planned(a100_32, "all_reduce", [list(range(32))], 1e9)
    ag = planned(a100_32, "all_gather", [list(range(32))], 1e9)
    env = simpy.Environment()
    net = FlowNetwork.for_topology(env, a100_32)
    ends = {}
    for name, plan in (("ar", ar), ("ag", ag)):
        net.collective(plan, on_done=lambda name=name: ends.setdefault(name, env.now))
    env.run()
    assert max(ends.values()) > max(ar.standalone_time_s(), ag.standalone_time_s()) * (1 + 1e-6)
    assert ends["ag"] > ag.standalone_time_s() * (1 + 1e-6)


# --------------------------------------------------------------------------- properties


flow_st = st.tuples(
    st.floats(0.0, 2.0),  # start
    st.sets(st.integers(0, 3), min_size=1, max_size=4),  # links
    st.floats(0.01, 5.0),  # bytes per link scale
    st.floats(0.0, 0.5),  # latency
    st.lists(st.floats(0.1, 1.0), min_size=4, max_size=4),  # per-link byte shares
)


def _flows(raw):
    out = []
    for start, links, scale, lat, shares in raw:
        ids = sorted(links)
        out.append((start, ids, [scale * shares[i] for i in ids], lat))
    return out


@settings(max_examples=150, deadline=None)
@given(raw=st.lists(flow_st, min_size=1, max_size=6), bw=st.lists(st.floats(0.2, 5.0), min_size=4, max_size=4))
def test_flows_always_finish_never_faster_than_alone_and_never_overfill_a_link(raw, bw):
    flows = _flows(raw)
    env = simpy.Environment()
    net = FlowNetwork(env, np.array(bw))
    over = []

    def watch(_ev):
        over.append(float(np.max(net.link_load_Bps / net.bandwidth_Bps)))

    def one(i, start, links, nbytes, latency):
        yield env.timeout(start)
        ev = net.transfer(links, nbytes, latency, tag=i)
        ev.callbacks.append(watch)
        yield ev

    for i, f in enumerate(flows):
        env.process(one(i, *f))
    env.run()
    net.check_idle()
    records = net.records()
    assert net.pending == 0 and len(records) == len(flows)
    for rec in records:
        assert rec.actual_s >= rec.standalone_s * (1 - 1e-9)
    assert max(over) <= 1 + 1e-6


@settings(max_examples=150, deadline=None)
@given(
    raw=st.lists(
        st.tuples(st.floats(0.0, 2.0), st.integers(0, 2), st.floats(0.01, 5.0), st.floats(0.0, 0.3)),
        min_size=1,
        max_size=6,
    ),
    bw=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3),
    which=st.integers(0, 2),
    factor=st.floats(1.0, 4.0),
)
def test_more_bandwidth_never_delays_a_flow_when_each_flow_crosses_one_link(raw, bw, which, factor):
    """Per-link processor sharing is monotone (unlike multi-link max-min, see above)."""
    flows = [(start, [link], [b], lat) for start, link, b, lat in raw]
    base, _ = simulate(bw, flows)
    more = list(bw)
    more[which] *= factor
    faster, _ = simulate(more, flows)
    for a, b in zip(base, faster):
        assert b <= a * (1 + 1e-9) + 1e-12


# --------------------------------------------------------------------------- speed, errors


def test_non_contending_flows_take_the_fast_path():
    """Two overlapping streams of 50-link flows: each has a private bottleneck link and
    uses 40% of 49 links drawn from a shared pool, so shared links always have room, so no
    flow start or end recomputes the shares (wall time: benchmarks/hot_paths.py)."""
    n_links, n_flows = 2000, 20_000
    rng = np.random.default_rng(1)
    shared = [rng.choice(np.arange(2, n_links), 49, replace=False) for _ in range(64)]
    links = [[np.sort(np.concatenate(([s], sh))) for sh in shared] for s in (0, 1)]
    nbytes = np.full(50, 4e5)
    nbytes[0] = 1e6  # the private link (id 0 or 1) sorts first
    env = simpy.Environment()
    net = FlowNetwork(env, np.full(n_links, 1e12))

    def stream(s):
        for i in range(n_flows // 2):
            yield net.transfer(links[s][(i + 7 * s) % 64], nbytes)

    env.process(stream(0))
    env.process(stream(1))
    env.run()
    assert net.n_recomputes == 0
    assert env.now == pytest.approx(n_flows // 2 * 1e-6, rel=1e-9)


def test_unfinished_flows_are_reported():
    env = simpy.Environment()
    net = FlowNetwork(env, np.array([1.0]))
    net.transfer([0], [10.0])
    env.run(until=1.0)
    with pytest.raises(SimulationError, match="1 flows never finished"):
        net.check_idle()


def test_bad_inputs_raise_input_error():
    env = simpy.Environment()
    with pytest.raises(InputError):
        FlowNetwork(env, np.array([1.0, 0.0]))
    net = FlowNetwork(env, np.array([1.0, 2.0]))
    with pytest.raises(InputError):
        net.transfer([0, 1], [1.0])
    with pytest.raises(InputError):
        net.transfer([0], [1.0], latency_s=-1.0)


def test_collective_with_a_callback_completes_at_the_same_time_as_its_event():
    topo = load_topology("dgx-a100-superpod", 16)
    eff = NetworkEfficiency(inter_efficiency=0.9, inter_latency_s=5e-6)
    plan = planned(topo, "send_recv", [(0, 8)], 64e6, efficiency=eff)
    times = {}
    env = simpy.Environment()
    net = FlowNetwork(env, topo.bandwidth_Bps)
    ev = net.collective(plan)
    ev.callbacks.append(lambda _e: times.setdefault("event", env.now))
    assert net.collective(plan, on_done=lambda: times.setdefault("callback", env.now)) is None
    env.run()
    alone = plan.standalone_time_s()
    assert times["event"] == pytest.approx(times["callback"], rel=1e-12)
    assert times["event"] > alone  # the two copies shared the links
    env2 = simpy.Environment()
    net2 = FlowNetwork(env2, topo.bandwidth_Bps)
    net2.collective(plan, on_done=lambda: times.setdefault("single", env2.now))
    env2.run()
    assert times["single"] == pytest.approx(alone, rel=1e-12)


# --------------------------------------------------------------------------- max-min fairness, as defined

# flows inside one of three groups of 4 links (separate components), some also crossing a shared link 12
group_flow_st = st.tuples(
    st.integers(0, 2),  # group
    st.sets(st.integers(0, 3), min_size=1, max_size=4),  # links within the group
    st.booleans(),  # also crosses the shared link
    st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 0.3, 0.7]), min_size=5, max_size=5),  # demand (ties likely)
)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(group_flow_st, min_size=1, max_size=12),
    bw=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 0.8]), min_size=13, max_size=13),
)
def test_the_speeds_are_max_min_fair(raw, bw):
    """Several components (three link groups), links shared within and across them (link 12), many ties:
    no link is over its capacity, and every flow below full speed has a full link on which no flow
    runs faster (so no flow could go faster without slowing one that is no faster: max-min fair)."""
    links, demand = [], []
    for group, within, shared, nbytes in raw:
        ids = sorted(4 * group + k for k in within) + ([12] if shared else [])
        links.append(np.array(ids, dtype=np.intp))
        demand.append(np.array(nbytes[:len(ids)]))
    bandwidth = np.array(bw)
    speeds = max_min_speeds(links, demand, bandwidth)
    load = np.zeros(bandwidth.size)
    for ids, d, s in zip(links, demand, speeds):
        np.add.at(load, ids, s * d)
    assert ((speeds > 0) & (speeds <= 1.0)).all()
    assert (load <= bandwidth * (1 + 1e-9)).all()
    full = load >= bandwidth * (1 - 1e-9)
    for i, (ids, s) in enumerate(zip(links, speeds)):
        if s < 1.0 - 1e-9:
            on = [k for k in ids if full[k]]
            assert on, f"flow {i} at speed {s} crosses no full link"
            assert any(all(speeds[j] <= s * (1 + 1e-9) for j, other in enumerate(links) if k in other)
                       for k in on), f"flow {i} at speed {s} is not held back by a full link"
