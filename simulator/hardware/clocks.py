"""Sustained clock of a power-capped GPU: the share of its rated clock it holds when its board
power limit is set below the power its datasheet peak is rated at.

The model is the cube law of CMOS dynamic power. Switching power is ``P = a C V^2 f``
(activity ``a``, switched capacitance ``C``, supply voltage ``V``, clock ``f``; Weste & Harris,
*CMOS VLSI Design*, 4th ed., section 5.2). Under dynamic voltage and frequency scaling the
voltage is raised roughly in proportion to the clock, so the power needed to hold a clock grows
as ``f^3``. A compute-bound GPU under a limit ``P_limit`` below its rated power ``P_rated``
settles at the clock where it draws the limit::

    f / f_rated = (P_limit / P_rated) ** CLOCK_POWER_EXPONENT,   CLOCK_POWER_EXPONENT = 1/3

This fraction is 1 when the limit is at or above the rating: a datasheet peak is never raised.
Every rate the SM clock sets (tensor and vector FLOP/s) scales by it. HBM bandwidth (its own
clock) and the links do not.

The model neglects leakage, memory and I/O power, which do not fall with the SM clock. It also
neglects the voltage floor: below some clock the voltage cannot drop further, and power falls only
in proportion to ``f``. Both make real clocks fall faster than the cube law under a deep cap.
There are three checks in ``../shared/reference/kernels.csv`` (tests/test_catalog_power_cap.py
holds the model to them):

* **Same NVIDIA die, fp8, above the rating.** GH200 (GH100 die, 900 W) against H100 SXM (GH100,
  700 W), maximum achievable fp8 matmul (rows ``mamf-gh200-fp8``, ``mamf-h100-sxm-fp8``):
  1535 / 1403 = 1.094 measured; the law gives (900/700)^(1/3) = 1.087 (-0.6 %).
* **Same die, bf16.** 828.6 / 794.5 = 1.043 measured (``mamf-gh200-bf16``,
  ``mamf-h100-sxm-bf16``), below the law. A bf16 GEMM at 700 W already runs near the top of its
  clock range rather than at the power limit, so raising the limit gains less. The same fact makes
  the law conservative for bf16 under a cap below 700 W: it derates bf16 slightly too much.
* **Deep in the power-bound range (AMD, CDNA3 compute dies).** The median clocks of the same
  hipBLASLt GEMM on MI300X (750 W) and MI325X (1000 W) (``amdmaf-mi300x-*``, ``amdmaf-mi325x-*``)
  are 1207 -> 1447 MHz in bf16 (x1.199), 1115 -> 1354 in fp16 (x1.214) and 1230 -> 1464 in fp8
  (x1.190). The law gives x1.100. At these clocks the voltage is near its floor, which is the
  regime where the law understates the change (an exponent of about 0.6 would fit). So for a limit
  far below the rating, read the derate as an upper bound on the clock.
"""

from __future__ import annotations

CLOCK_POWER_EXPONENT = 1.0 / 3.0
"""Exponent of the sustained clock in the power ratio: the cube law (module docstring)."""


def sustained_clock_fraction(power_limit_W: float, rated_power_W: float,
                             exponent: float = CLOCK_POWER_EXPONENT) -> float:
    """Fraction of its rated clock that a compute-bound GPU sustains under a board power limit of
    ``power_limit_W`` watts, when its peak is rated at ``rated_power_W`` watts. The value is
    ``min(1, (power_limit_W / rated_power_W) ** exponent)``. Both powers must be positive
    (ValueError otherwise: the catalog validates them first)."""
    if not (power_limit_W > 0 and rated_power_W > 0):
        raise ValueError(f"powers must be positive, got {power_limit_W} W and {rated_power_W} W")
    return min(1.0, (power_limit_W / rated_power_W) ** exponent)


def clock_ratio(power_W: float, other_power_W: float, exponent: float = CLOCK_POWER_EXPONENT) -> float:
    """Predicted ratio of sustained clocks (and so of compute-bound rates) of one die at two power
    limits, ``(power_W / other_power_W) ** exponent``, with no cap at the rated clock. This is the
    law the checks in the module docstring compare with measurements."""
    if not (power_W > 0 and other_power_W > 0):
        raise ValueError(f"powers must be positive, got {power_W} W and {other_power_W} W")
    return (power_W / other_power_W) ** exponent
