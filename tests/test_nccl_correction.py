"""The correction layer on NCCL's estimate (simulator/network/nccl/correction.py)."""

from collections import namedtuple

import pytest

from simulator.network.efficiency import NOMINAL, NetworkEfficiency
from simulator.network.nccl.correction import corrected_time_s
from simulator.network.nccl.system import NcclSystem

# The tuner's Choice fields; a stand-in so the correction is tested on its own.
Choice = namedtuple("Choice", "kind algorithm protocol channels threads latency_us bandwidth_GBps time_us n_inter")

ONE_NODE = NcclSystem(sm=90, n_nodes=1, gpus_per_node=8, scale_up="nvswitch", nvlink_GBps=370.8,
                      pcie_GBps=48, nics_per_node=8, nic_GBps=50)
FOUR_NODES = NcclSystem(sm=90, n_nodes=4, gpus_per_node=8, scale_up="nvswitch", nvlink_GBps=370.8,
                        pcie_GBps=48, nics_per_node=8, nic_GBps=50, transport="tcpxo")


def _choice(kind="all_reduce", lat=56.0, bw=205.7, n_inter=0, nbytes=1 << 20):
    return Choice(kind, "ring", "Simple", 24, 512, lat, bw, lat + nbytes / (1000 * bw), n_inter)


@pytest.mark.parametrize("system,n_inter", [(ONE_NODE, 0), (FOUR_NODES, 6)])
@pytest.mark.parametrize("nbytes", [8, 1 << 20, 1 << 30])
def test_nominal_is_nccl_time(system, n_inter, nbytes):
    choice = _choice(n_inter=n_inter, nbytes=nbytes)
    assert corrected_time_s(system, choice, nbytes, NOMINAL) == pytest.approx(choice.time_us * 1e-6, rel=1e-12)


@pytest.mark.parametrize("system,n_inter", [(ONE_NODE, 0), (FOUR_NODES, 6)])
def test_monotone_in_bytes(system, n_inter):
    eff = NetworkEfficiency()
    times = [corrected_time_s(system, _choice(n_inter=n_inter), 2.0 ** k, eff) for k in range(0, 35)]
    assert all(b > a for a, b in zip(times, times[1:]))


def test_zero_bytes_and_one_rank_cost_nothing():
    one = NcclSystem(sm=90, n_nodes=1, gpus_per_node=1, scale_up="nvswitch", nvlink_GBps=0,
                     pcie_GBps=48, nics_per_node=1, nic_GBps=50)
    assert corrected_time_s(ONE_NODE, _choice(), 0, NetworkEfficiency()) == 0.0
    assert corrected_time_s(one, _choice(), 1 << 20, NetworkEfficiency()) == 0.0


def test_terms_of_the_formula():
    eff = NetworkEfficiency(node_efficiency=0.9, node_drop_gather=0.4, node_latency_s=10e-6,
                            inter_efficiency=0.8, inter_ramp_bytes=1e3, inter_ramp_power=1.0,
                            inter_latency_s=30e-6, step_latency_tcpxo_s=5e-6)
    s = 1 << 24
    one = corrected_time_s(ONE_NODE, _choice("all_gather", lat=20, bw=300), s, eff)
    assert one == pytest.approx(20e-6 + 10e-6 + s / (300e9 * 0.9 * (1 - 0.4 / 8)))
    multi = corrected_time_s(FOUR_NODES, _choice("all_gather", lat=20, bw=300, n_inter=3), s, eff)
    r = 1 / (1 + 1e3 / (s / 32))
    assert multi == pytest.approx(20e-6 + 30e-6 + 3 * 5e-6 + s / (300e9 * 0.8 * r))
