"""The NCCL-facing fields of a topology file: optional, with stated defaults, and checked
against the scale-up kind they belong to (one-line errors naming file, field and what is allowed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.core.errors import InputError
from simulator.network.topology_file import parse_topology_file

H100_FILE = Path(__file__).resolve().parents[1] / "topologies" / "dgx-h100-superpod.yaml"
PATH = "t.yaml"


def base() -> dict:
    data = yaml.safe_load(H100_FILE.read_text(encoding="utf-8"))
    for key in ("nvlink_links", "multicast", "bridge_links"):
        data["node"]["scale_up"].pop(key, None)
    for key in ("transport", "net_plugin_latency_us", "cpu"):
        data["node"].pop(key, None)
    data["fabric"].pop("collnet", None)
    return data


def with_changes(changes: dict) -> dict:
    data = base()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for key in parents:
            target = target[key]
        if value is _DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return data


_DELETE = object()


def parse(data: dict):
    return parse_topology_file(yaml.safe_dump(data), PATH)


def error_of(data: dict) -> InputError:
    with pytest.raises(InputError) as info:
        parse(data)
    return info.value


def test_a_file_without_the_new_fields_gets_their_defaults():
    spec = parse(base())
    su, node = spec.node.scale_up, spec.node
    assert (su.nvlink_links, su.multicast, su.bridge_links) == (None, None, None)
    assert (node.transport, node.net_plugin_latency_us, node.cpu) == ("ib", None, "intel")
    assert spec.fabric.collnet is False


def test_every_new_field_can_be_stated():
    spec = parse(with_changes({
        "node.scale_up.nvlink_links": 18, "node.scale_up.multicast": True, "node.transport": "efa",
        "node.net_plugin_latency_us": 75, "node.cpu": "amd",
    }))
    assert spec.node.scale_up.nvlink_links == 18 and spec.node.scale_up.multicast is True
    assert (spec.node.transport, spec.node.net_plugin_latency_us, spec.node.cpu) == ("efa", 75.0, "amd")
    assert parse(with_changes({"fabric.collnet": True})).fabric.collnet is True


def test_a_mesh_node_of_seven_xgmi_links_per_gpu_is_valid():
    spec = parse(with_changes({"node.scale_up.kind": "mesh", "node.scale_up.nvlink_links": 7,
                               "node.scale_up.bandwidth_GBps": 448}))
    assert spec.node.scale_up.kind == "mesh"


def test_a_bridged_node_states_its_bridge_links_and_pcie_bandwidth():
    spec = parse(with_changes({"node.scale_up.kind": "nvlink_bridge", "node.scale_up.bridge_links": 12,
                               "node.scale_up.bandwidth_GBps": 300, "node.pcie_bandwidth_GBps": 64}))
    assert spec.node.scale_up.bridge_links == 12


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"node.scale_up.kind": "torus"}, "node.scale_up.kind", "'nvswitch', 'mesh', 'nvlink_bridge' or 'pcie'"),
        ({"node.transport": "infiniband"}, "node.transport", "'ib', 'roce', 'efa', 'tcpxo', 'tcpx' or 'socket'"),
        ({"node.cpu": "power9"}, "node.cpu", "'intel', 'amd' or 'arm'"),
        ({"node.scale_up.nvlink_links": 0}, "node.scale_up.nvlink_links", "in [1, 1024]"),
        ({"node.scale_up.nvlink_links": 2.5}, "node.scale_up.nvlink_links", "integer"),
        ({"node.net_plugin_latency_us": -1}, "node.net_plugin_latency_us", "in [0, 1000000]"),
        ({"fabric.collnet": "yes"}, "fabric.collnet", "true or false"),
        ({"node.scale_up.multicast": 1}, "node.scale_up.multicast", "true or false"),
    ],
)
def test_a_bad_value_names_the_field_and_what_is_allowed(changes, field, says):
    err = error_of(with_changes(changes))
    assert err.file == PATH and err.field == field
    assert says in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"node.scale_up.bridge_links": 4}, "node.scale_up.bridge_links", "only with kind nvlink_bridge"),
        ({"node.scale_up.kind": "pcie", "node.scale_up.multicast": True}, "node.scale_up.multicast",
         "needs an NVSwitch"),
        ({"node.scale_up.kind": "mesh", "node.scale_up.multicast": True}, "node.scale_up.multicast",
         "allowed values are false or none"),
        ({"node.scale_up.kind": "pcie", "node.scale_up.nvlink_links": 12}, "node.scale_up.nvlink_links",
         "a pcie node has no NVLink"),
        ({"node.scale_up.kind": "mesh", "node.scale_up.nvlink_links": 3}, "node.scale_up.nvlink_links",
         "at least 7"),
        ({"node.scale_up.kind": "nvlink_bridge", "node.pcie_bandwidth_GBps": _DELETE}, "node.pcie_bandwidth_GBps",
         "need pcie_bandwidth_GBps"),
        ({"node.scale_up.kind": "nvlink_bridge", "node.gpus": 3, "node.nics": 1}, "node.gpus", "must be even"),
        ({"node.scale_up.kind": "nvlink_bridge", "node.scale_up.bridge_links": 12, "node.scale_up.nvlink_links": 4},
         "node.scale_up.nvlink_links", "must equal bridge_links"),
        ({"fabric.collnet": True, "node.transport": "roce"}, "fabric.collnet", "needs InfiniBand"),
    ],
)
def test_fields_that_do_not_go_with_the_scale_up_kind_or_transport_are_refused(changes, field, says):
    err = error_of(with_changes(changes))
    assert err.file == PATH and err.field == field
    assert says in str(err)
    assert "\n" not in str(err)


def test_multicast_false_is_allowed_on_any_kind():
    for kind in ("nvswitch", "mesh", "pcie"):
        assert parse(with_changes({"node.scale_up.kind": kind, "node.scale_up.multicast": False}))
