"""The hardware catalog: packaged figures, lookups, and user files layered on top."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.errors import InputError
from simulator.core.units import PRECISIONS
from simulator.hardware.catalog import Catalog, GPUSpec, load_catalog

REQUIRED = ("h100-sxm", "h100-pcie", "h200", "b200", "gb200", "mi250x", "mi300x", "l40s")
REQUIRED += ("v100-32gb", "v100-16gb", "a100-40gb", "a100-80gb")


def write(tmp_path: Path, text: str, name: str = "gpus.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


FULL_ENTRY = """
    toy-1:
      aliases: [Toy One]
      vendor: Acme
      architecture: toy
      peak_tflops: {fp32: 10, bf16: 100}
      hbm_GB: 24
      hbm_bandwidth_TBps: 1.5
      tdp_W: 300
      idle_W: 40
      intra_node_bandwidth_GBps: 100
      source: "made up for a test"
"""


# --- the packaged catalog -----------------------------------------------------------------------


def test_packaged_catalog_has_the_required_gpus_with_sources_and_positive_figures():
    catalog = load_catalog()
    for slug in REQUIRED:
        assert slug in catalog, slug
    for spec in catalog:
        assert spec.source.strip(), spec.name
        assert spec.vendor.strip(), spec.name
        numbers = [spec.hbm_bytes, spec.hbm_bandwidth_Bps, spec.tdp_W, spec.intra_node_bandwidth_Bps]
        numbers += list(spec.peak_flops.values())
        assert all(math.isfinite(x) and x > 0 for x in numbers), spec.name
        assert 0 < spec.idle_W < spec.tdp_W, spec.name
        assert set(spec.peak_flops) <= set(PRECISIONS)
        assert "estimate" in spec.source.lower(), f"{spec.name}: idle_W must be labelled as an estimate"


def test_known_figures_convert_to_si():
    catalog = load_catalog()
    assert catalog.get("a100-80gb").peak_flops_for("bf16") == 312e12
    assert catalog.get("a100-40gb").peak_flops_for("bf16") == 312e12
    assert catalog.get("h100-sxm").peak_flops_for("bf16") == 989e12
    assert catalog.get("h100-sxm").peak_flops_for("fp8") == 1979e12
    assert catalog.get("a100-80gb").hbm_bytes == 80e9
    assert catalog.get("h100-sxm").hbm_bandwidth_Bps == pytest.approx(3.35e12, rel=1e-12)
    assert catalog.get("a100-40gb").intra_node_bandwidth_Bps == 300e9  # NVLink 3, one direction
    assert catalog.get("h100-sxm").intra_node_bandwidth_Bps == 450e9  # NVLink 4, one direction
    assert catalog.get("v100-32gb").peak_flops_for("fp16") == 125e12
    assert catalog.get("h100-sxm").tdp_W == 700


def test_mi250x_is_modelled_per_gcd():
    # The reference lists 383 TFLOP/s bf16 and 128 GB for the two-GCD package.
    gcd = load_catalog().get("mi250x")
    assert gcd.peak_flops_for("bf16") * 2 == pytest.approx(383e12)
    assert gcd.hbm_bytes * 2 == 128e9


def test_packaged_catalog_is_cached():
    assert load_catalog() is load_catalog()


# --- lookups ------------------------------------------------------------------------------------


def test_aliases_and_case_resolve_to_the_slug():
    catalog = load_catalog()
    assert catalog.get("A100-SXM4-80GB").name == "a100-80gb"
    assert catalog.get("a100").name == "a100-40gb"  # memory size unstated -> 40 GB (DGX A100, 2020)
    assert catalog.get("V100").name == "v100-32gb"
    assert catalog.get("  H100-SXM  ").name == "h100-sxm"
    assert "a100-sxm4-40gb" in catalog
    assert "tpu-v9" not in catalog
    assert 42 not in catalog


def test_unknown_gpu_lists_known_slugs():
    catalog = load_catalog()
    with pytest.raises(InputError) as err:
        catalog.get("h100-sxn")
    assert err.value.field == "gpu"
    message = str(err.value)
    for slug in catalog.names():
        assert slug in message
    assert "did you mean 'h100-sxm'" in message


def test_names_are_sorted_slugs():
    names = load_catalog().names()
    assert names == sorted(names)
    assert "a100" not in names  # an alias, not a slug


# --- precisions ---------------------------------------------------------------------------------


def test_v100_cannot_run_bf16_and_the_message_says_what_it_can():
    v100 = load_catalog().get("v100")
    with pytest.raises(InputError) as err:
        v100.peak_flops_for("bf16")
    message = str(err.value)
    assert "v100-32gb" in message and "bf16" in message and "fp16" in message
    assert err.value.field == "precision"


def test_fp8_on_a100_raises():
    with pytest.raises(InputError, match="a100-80gb does not support fp8"):
        load_catalog().get("a100-80gb").peak_flops_for("fp8")


def test_tf32_falls_back_to_fp32_only_when_absent():
    catalog = load_catalog()
    assert catalog.get("v100-32gb").peak_flops_for("tf32") == catalog.get("v100-32gb").peak_flops_for("fp32")
    assert catalog.get("a100-80gb").peak_flops_for("tf32") == 156e12


def test_unknown_precision_is_an_input_error():
    with pytest.raises(InputError, match="unknown precision 'int4'"):
        load_catalog().get("h100-sxm").peak_flops_for("int4")


@given(precision=st.sampled_from(PRECISIONS))
def test_every_packaged_gpu_answers_or_refuses_each_precision(precision):
    # Invariant: a precision is either a positive rate no faster than the part's fastest one, or an
    # InputError; never a silent zero.
    for spec in load_catalog():
        try:
            rate = spec.peak_flops_for(precision)
        except InputError:
            assert precision not in spec.precisions
        else:
            assert 0 < rate <= max(spec.peak_flops.values())
            assert precision in spec.precisions


# --- user files ---------------------------------------------------------------------------------


def test_user_file_adds_a_gpu(tmp_path):
    catalog = load_catalog(write(tmp_path, FULL_ENTRY))
    toy = catalog.get("toy one")
    assert toy.name == "toy-1"
    assert toy.peak_flops == {"fp32": 10e12, "bf16": 100e12}
    assert toy.hbm_bytes == 24e9
    assert toy.intra_node_bandwidth_Bps == 100e9
    assert "h100-sxm" in catalog  # packaged entries remain
    assert "toy-1" not in load_catalog()  # the cached packaged catalog is untouched


def test_user_file_derives_a_power_capped_part_with_base(tmp_path):
    path = write(
        tmp_path,
        """
        h100-500w:
          base: h100-sxm
          tdp_W: 500
          peak_tflops: {bf16: 800}
        """,
    )
    catalog = load_catalog(path)
    capped, stock = catalog.get("h100-500w"), catalog.get("h100-sxm")
    assert capped.tdp_W == 500
    assert capped.peak_flops_for("bf16") == 800e12
    assert capped.peak_flops_for("fp8") == stock.peak_flops_for("fp8")  # merged key by key
    assert capped.hbm_bandwidth_Bps == stock.hbm_bandwidth_Bps
    assert capped.aliases == ()  # a new slug does not take its base's aliases
    assert "tdp_W" in capped.source and stock.source in capped.source
    assert stock.tdp_W == 700


def test_user_file_overrides_a_packaged_gpu_in_place(tmp_path):
    path = write(tmp_path, "h100-sxm: {base: h100-sxm, idle_W: 90}\n")
    catalog = load_catalog(path)
    h100 = catalog.get("H100-SXM5-80GB")  # aliases kept when the slug is kept
    assert h100.name == "h100-sxm" and h100.idle_W == 90
    assert h100.peak_flops_for("bf16") == 989e12


def test_base_may_name_another_entry_of_the_same_file(tmp_path):
    path = write(tmp_path, FULL_ENTRY + "    toy-2: {base: toy-1, hbm_GB: 48}\n")
    catalog = load_catalog(path)
    assert catalog.get("toy-2").hbm_bytes == 48e9
    assert catalog.get("toy-2").peak_flops == catalog.get("toy-1").peak_flops


def test_full_override_without_base_replaces_the_entry(tmp_path):
    catalog = load_catalog(write(tmp_path, FULL_ENTRY.replace("toy-1:", "a100-40gb:")))
    assert catalog.get("a100-40gb").vendor == "Acme"
    assert "a100" not in catalog  # its aliases went with the replaced entry


# --- bad user files: each names the file and the field ------------------------------------------

BAD_ENTRIES = [
    ("unknown field", "x: {base: h100-sxm, tdp_watts: 5}", "x.tdp_watts", "allowed here: aliases"),
    ("missing field", "x: {vendor: Acme, source: s}", "x.architecture", "required"),
    ("wrong type", "x: {base: h100-sxm, tdp_W: lots}", "x.tdp_W", "finite number in (0, 100000]"),
    ("string number", "x: {base: h100-sxm, tdp_W: '500'}", "x.tdp_W", "finite number in (0, 100000]"),
    ("negative value", "x: {base: h100-sxm, hbm_GB: -80}", "x.hbm_GB", "in (0, 100000]"),
    ("zero bandwidth", "x: {base: h100-sxm, intra_node_bandwidth_GBps: 0}", "x.intra_node_bandwidth_GBps", "in (0, 1000000]"),
    ("unknown precision", "x: {base: h100-sxm, peak_tflops: {fp4: 9000}}", "x.peak_tflops.fp4", "'fp8'"),
    ("negative tflops", "x: {base: h100-sxm, peak_tflops: {bf16: -1}}", "x.peak_tflops.bf16", "in (0, 100000]"),
    ("idle above tdp", "x: {base: h100-sxm, idle_W: 900}", "x.idle_W", "exceeds tdp_W"),
    ("unknown base", "x: {base: h900, tdp_W: 5}", "x.base", "h100-sxm"),
    ("base not a string", "x: {base: [h100-sxm]}", "x.base", "slug or alias"),
    ("entry not a mapping", "x: 12", "x", "mapping of fields"),
    ("bad slug", "H100 Custom: {base: h100-sxm}", "H100 Custom", "lowercase"),
    ("alias clash", "x: {base: h100-sxm, aliases: [a100]}", "x.aliases", "a100-40gb"),
    ("slug clash with alias", "h100: {base: h100-sxm}", "h100", "h100-sxm"),
    ("base cycle", "x: {base: y}\ny: {base: x}", "y.base", "cycle"),
]


@pytest.mark.parametrize(("case", "text", "field", "says"), BAD_ENTRIES, ids=[c[0] for c in BAD_ENTRIES])
def test_bad_entry_names_file_and_field(tmp_path, case, text, field, says):
    path = write(tmp_path, text + "\n")
    with pytest.raises(InputError) as err:
        load_catalog(path)
    assert err.value.file == str(path)
    assert err.value.field == field
    assert says in str(err.value)
    assert str(path) in str(err.value)


BAD_FILES = [
    ("not yaml", "x: {base: h100-sxm\n", "not valid YAML"),
    ("not a mapping", "- h100-sxm\n- a100\n", "mapping of GPU slug"),
    ("empty", "", "empty"),
    ("duplicate slug", "x: {base: h100-sxm}\nx: {base: a100}\n", "appears twice"),
]


@pytest.mark.parametrize(("case", "text", "says"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_names_the_file(tmp_path, case, text, says):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_catalog(path)
    assert err.value.file == str(path)
    assert says in str(err.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="file not found") as err:
        load_catalog(path)
    assert err.value.file == str(path)


def test_yaml_error_gives_a_line_number(tmp_path):
    path = write(tmp_path, "x:\n  tdp_W: 5\n bad indent: 1\n")
    with pytest.raises(InputError, match=r"line \d+"):
        load_catalog(path)


def test_several_problems_are_all_reported(tmp_path):
    path = write(tmp_path, "x: {base: h100-sxm, tdp_W: -1, hbm_GB: -2}\n")
    with pytest.raises(InputError) as err:
        load_catalog(path)
    assert "x.tdp_W" in str(err.value) and "x.hbm_GB" in str(err.value)


# --- Catalog built directly ---------------------------------------------------------------------


def test_catalog_rejects_a_name_shared_by_two_gpus():
    h100 = load_catalog().get("h100-sxm")
    twin = h100.model_copy(update={"name": "h100-twin"})  # still carries h100-sxm's aliases
    with pytest.raises(InputError, match="already names GPU 'h100-sxm'") as err:
        Catalog([h100, twin])
    assert err.value.field == "h100-twin.aliases"


def test_gpuspec_is_frozen():
    spec = load_catalog().get("a100-80gb")
    assert isinstance(spec, GPUSpec)
    with pytest.raises(Exception):
        spec.tdp_W = 1  # type: ignore[misc]
