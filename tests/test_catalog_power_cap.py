"""Power-capped parts, measured matmul fractions, and the Blackwell entries (issue 13, item 8).

The sustained-clock model (simulator/hardware/clocks.py) is held to the measurements it cites in
../shared/reference/kernels.csv. The catalog's matmul fractions are held to the same rows, and
the H200, which has the H100's die, must not run an fp8 GEMM faster than an H100 at the same clocks.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from simulator.core.errors import InputError
from simulator.hardware.catalog import load_catalog
from simulator.hardware.clocks import CLOCK_POWER_EXPONENT, clock_ratio, sustained_clock_fraction
from simulator.hardware.compute import ops_time_s
from simulator.inputs.efficiency_file import default_efficiency
from simulator.workload.ops import Op

KERNELS_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "kernels.csv"

# The measurements the model and the catalog cite: kernels.csv case_id -> achieved TFLOP/s.
MAMF_TFLOPS = {
    "mamf-h100-sxm-bf16": 794.5, "mamf-h100-sxm-fp8": 1403.0,  # GH100, 700 W
    "mamf-gh200-bf16": 828.6, "mamf-gh200-fp8": 1535.0,  # GH100, 900 W
}
# Median GEMM clocks (MHz) of AMD's hipBLASLt runs: MI300X at 750 W, MI325X at 1000 W.
AMD_CLOCKS_MHZ = {"bf16": (1207, 1447), "fp16": (1115, 1354), "fp8": (1230, 1464)}

# kernels.csv rows of maximum achievable matmul FLOP/s -> catalog GPUs that carry them.
MAMF_ROWS = {
    "mamf-a100-sxm-bf16": (("a100-40gb", "a100-80gb"), "bf16"),
    "mamf-h100-sxm-bf16": (("h100-sxm", "h200", "h100-96gb-hbm2e-500w"), "bf16"),
    "mamf-h100-sxm-fp8": (("h100-sxm", "h200", "h100-96gb-hbm2e-500w"), "fp8"),
    "mamf-b200-bf16": (("b200",), "bf16"),
    "mamf-b200-fp8": (("b200",), "fp8"),
    "mamf-gb200-bf16": (("gb200",), "bf16"),
    "mamf-gb200-fp8": (("gb200",), "fp8"),
    "mamf-mi300x-bf16": (("mi300x",), "bf16"),
    "mamf-mi325x-bf16": (("mi325x",), "bf16"),
}


@pytest.fixture(scope="module")
def kernels() -> pd.DataFrame:
    if not KERNELS_CSV.exists():
        pytest.skip(f"{KERNELS_CSV} not beside the checkout")
    return pd.read_csv(KERNELS_CSV).set_index("case_id")


# --- the sustained-clock model at its cited points ----------------------------------------------


def test_the_cited_measurements_are_the_rows_of_kernels_csv(kernels):
    for case, tflops in MAMF_TFLOPS.items():
        assert kernels.loc[case, "achieved_tflops"] == pytest.approx(tflops, abs=0.5), case
    for precision, (mi300x, mi325x) in AMD_CLOCKS_MHZ.items():
        assert f"median clock {mi300x} MHz" in kernels.loc[f"amdmaf-mi300x-{precision}", "notes"]
        assert f"median clock {mi325x} MHz" in kernels.loc[f"amdmaf-mi325x-{precision}", "notes"]


def test_the_cube_law_matches_the_same_die_fp8_matmul_at_900_against_700_watts():
    measured = MAMF_TFLOPS["mamf-gh200-fp8"] / MAMF_TFLOPS["mamf-h100-sxm-fp8"]  # 1.094
    assert CLOCK_POWER_EXPONENT == pytest.approx(1 / 3)
    assert clock_ratio(900, 700) == pytest.approx(measured, rel=0.01)


def test_bf16_gains_less_than_the_law_because_it_is_not_power_bound_at_700_watts():
    measured = MAMF_TFLOPS["mamf-gh200-bf16"] / MAMF_TFLOPS["mamf-h100-sxm-bf16"]  # 1.043
    assert 1.0 < measured < clock_ratio(900, 700)


def test_deep_in_the_power_bound_range_clocks_move_more_than_the_law_says():
    # The stated limit of the model: for deep caps its derate is an upper bound on the clock.
    for precision, (low, high) in AMD_CLOCKS_MHZ.items():
        assert high / low > clock_ratio(1000, 750) * 1.05, precision


def test_the_derate_is_the_cube_root_of_the_power_ratio_and_never_a_gain():
    assert sustained_clock_fraction(500, 700) == pytest.approx((5 / 7) ** (1 / 3))
    assert sustained_clock_fraction(500, 700) == pytest.approx(0.8939, abs=1e-4)
    assert sustained_clock_fraction(700, 700) == 1.0
    assert sustained_clock_fraction(900, 700) == 1.0  # a datasheet peak is never raised
    with pytest.raises(ValueError):
        sustained_clock_fraction(0, 700)


# --- the power-capped H100 of torchtitan's runs ---------------------------------------------------


def test_the_grand_teton_h100_is_in_the_catalog_under_the_names_sources_use():
    catalog = load_catalog()
    names = ("h100-96gb-hbm2e-500w", "H100 96GB HBM2e", "H100 (Grand Teton)", "grand-teton-h100")
    assert {catalog.get(n).name for n in names} == {"h100-96gb-hbm2e-500w"}


def test_the_capped_h100_computes_at_its_derated_peak_and_keeps_its_rated_one_for_mfu():
    catalog = load_catalog()
    capped, stock = catalog.get("h100-96gb-hbm2e-500w"), catalog.get("h100-sxm")
    fraction = sustained_clock_fraction(500, 700)
    assert capped.tdp_W == 500 and capped.rated_tdp_W == 700  # energy uses the limit
    assert capped.clock_fraction == pytest.approx(fraction)
    for precision in ("fp32", "tf32", "bf16", "fp16", "fp8"):
        assert capped.peak_flops_for(precision) == pytest.approx(stock.peak_flops_for(precision) * fraction)
        assert capped.rated_peak_flops_for(precision) == stock.peak_flops_for(precision)
    assert capped.peak_flops_for("bf16") == pytest.approx(884.07e12, rel=1e-4)
    assert capped.hbm_bytes == 96e9 and capped.hbm_bandwidth_Bps == 2.4e12  # memory is not derated
    assert capped.intra_node_bandwidth_Bps == stock.intra_node_bandwidth_Bps
    assert (capped.mamf_fraction, capped.mamf_fraction_fp8) == (stock.mamf_fraction, stock.mamf_fraction_fp8)
    assert stock.clock_fraction == 1.0 and stock.rated_peak_flops_for("bf16") == stock.peak_flops_for("bf16")


def test_a_compute_bound_gemm_takes_longer_on_the_capped_h100_by_the_derate():
    catalog = load_catalog()
    capped, stock = catalog.get("h100-96gb-hbm2e-500w"), catalog.get("h100-sxm")
    eff = default_efficiency().compute
    big = Op("g", "gemm", 2.0 * 8192**3, 1.0, (8192, 8192, 8192))
    for precision in ("bf16", "fp8"):
        slower = ops_time_s([big], capped, precision, eff) / ops_time_s([big], stock, precision, eff)
        assert slower == pytest.approx(1 / capped.clock_fraction, rel=1e-3), precision


def test_the_capped_entry_says_what_is_derived_and_what_is_estimated():
    capped = load_catalog().get("h100-96gb-hbm2e-500w")
    text = capped.source.lower()
    assert "issue 13" in text and "torchtitan" in text and "clocks.py" in text
    assert "derived" in text and "estimate" in text and "low trust" in capped.notes.lower()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_user_caps_any_gpu_with_power_limit_w(tmp_path):
    catalog = load_catalog(write(tmp_path, "b200-700w: {base: b200, power_limit_W: 700}\n"))
    capped, stock = catalog.get("b200-700w"), catalog.get("b200")
    assert capped.tdp_W == 700 and capped.rated_tdp_W == 1000
    assert capped.peak_flops_for("fp8") == pytest.approx(stock.peak_flops_for("fp8") * 0.7 ** (1 / 3))
    assert "power_limit_W" in capped.source and stock.source in capped.source


def test_a_limit_at_the_rating_changes_nothing(tmp_path):
    capped = load_catalog(write(tmp_path, "x: {base: h100-sxm, power_limit_W: 700}\n")).get("x")
    assert capped.peak_flops == load_catalog().get("h100-sxm").peak_flops and capped.rated_tdp_W is None


@pytest.mark.parametrize("limit, says", [(800, "exceeds tdp_W=700"), (50, "below idle_W=105"), (-1, "(0, 100000]")])
def test_a_bad_power_limit_names_the_field(tmp_path, limit, says):
    with pytest.raises(InputError) as err:
        load_catalog(write(tmp_path, f"x: {{base: h100-sxm, power_limit_W: {limit}}}\n"))
    assert err.value.field == "x.power_limit_W" and says in str(err.value)
    assert len(str(err.value).splitlines()) == 1


# --- measured matmul fractions ------------------------------------------------------------------


def test_the_h200s_fp8_gemm_is_not_faster_than_the_h100s_at_the_same_clocks():
    catalog = load_catalog()
    h200, h100 = catalog.get("h200"), catalog.get("h100-sxm")
    assert h200.mamf_fraction is not None and h200.mamf_fraction_fp8 is not None
    for precision in ("bf16", "fp8"):
        assert h200.peak_flops_for(precision) == h100.peak_flops_for(precision)  # same die, same clocks
        assert h200.matmul_ratio(precision) <= h100.matmul_ratio(precision)
    eff = default_efficiency().compute
    big = Op("g", "gemm", 2.0 * 8192**3, 1.0, (8192, 8192, 8192))  # compute bound on both
    assert ops_time_s([big], h200, "fp8", eff) >= ops_time_s([big], h100, "fp8", eff)
    assert ops_time_s([big], h200, "fp8", eff) < ops_time_s([big], h200, "bf16", eff)  # fp8 still helps


def test_every_catalog_gpu_that_kernels_csv_measures_carries_its_fraction(kernels):
    catalog = load_catalog()
    for case, (slugs, precision) in MAMF_ROWS.items():
        measured = float(kernels.loc[case, "fraction_of_peak"])
        for slug in slugs:
            gpu = catalog.get(slug)
            value = gpu.mamf_fraction if precision == "bf16" else gpu.mamf_fraction_fp8
            assert value == pytest.approx(measured, abs=5e-4), (case, slug)
    measured_gpus = {s for slugs, _ in MAMF_ROWS.values() for s in slugs}
    unmeasured = {"v100-32gb", "v100-16gb", "h100-pcie", "mi250x", "l40s"}  # no MAMF row in kernels.csv
    assert measured_gpus | unmeasured == set(catalog.names())
    for slug in unmeasured:
        assert catalog.get(slug).mamf_fraction is None, slug


@pytest.mark.parametrize("gpu", ["mi300x", "mi325x"])
def test_amd_fp8_fractions_keep_the_fp8_to_bf16_ratio_of_amds_own_run(kernels, gpu):
    spec = load_catalog().get(gpu)
    own = kernels.loc[f"amdmaf-{gpu}-fp8", "fraction_of_peak"] / kernels.loc[f"amdmaf-{gpu}-bf16", "fraction_of_peak"]
    assert spec.matmul_ratio("fp8") == pytest.approx(own, rel=0.005)
    assert "amdmaf" in spec.source


# --- Blackwell ----------------------------------------------------------------------------------


@pytest.mark.parametrize("slug, fp8_tflops, nvlink_GBps", [("b200", 4500, 900), ("gb200", 5000, 900)])
def test_blackwell_entries_are_complete_with_sources(slug, fp8_tflops, nvlink_GBps):
    gpu = load_catalog().get(slug)
    assert gpu.peak_flops_for("fp8") == fp8_tflops * 1e12
    assert gpu.peak_flops_for("fp8") == 2 * gpu.peak_flops_for("bf16")
    assert gpu.hbm_bytes >= 180e9 and gpu.hbm_bandwidth_Bps == 8.0e12
    assert gpu.intra_node_bandwidth_Bps == nvlink_GBps * 1e9 and "NVLink 5" in gpu.notes
    assert gpu.mamf_fraction and gpu.mamf_fraction_fp8
    assert math.isclose(gpu.matmul_ratio("fp8"), gpu.mamf_fraction_fp8 / gpu.mamf_fraction)
    assert "kernels.csv" in gpu.source and "gpus.csv" in gpu.source
